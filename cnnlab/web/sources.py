"""What the explorer can show: trained runs (any engine, any dataset: digits, colour photos, scenes to segment),
registered classification models with random weights, and models from the user's own files
(`cnnlab serve --model FILE.py:NAME`).

A source id is `run:<folder name>`, `model:<registered name>` or `file:<FILE.py:NAME>`. Models are built once per source and kept in a
small cache; building and the forward passes are guarded by locks because FastAPI runs plain `def` endpoints on a
thread pool, and hooks registered on a shared module would otherwise see other requests' forward passes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data import DatasetInfo, dataset_info
from cnnlab.data.folders import RECORDED, folder_path, is_folder
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models import list_models
from cnnlab.tasks import Task, task_of
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import build_torch_model
from cnnlab.train.runs import Run, list_runs
from cnnlab.train.user_model import UserModel
from cnnlab.viz.familiarity import Familiarity

RANDOM_SEED = 0  # random-weight models are the same on every load, so their pictures are reproducible


DIGITS = dataset_info(TrainConfig.dataset)  # what a registered model with random weights is shown on: MNIST


def untrained() -> list[str]:
    """The registered models shown with random weights: those of the default dataset's task, which take its
    28x28 digits."""
    return list_models(task=DIGITS.task)


def _modified(run: Run) -> float:
    """When a run last changed: its newest file of those training writes (a run still training is the newest)."""
    files = (run.path / "metrics.jsonl", run.checkpoint("last"), run.path / "config.json")
    times = [path.stat().st_mtime for path in files if path.is_file()]
    return max(times, default=0.0)


class SourceError(CnnlabError):
    """An unknown source id, or a source whose model cannot be built."""


@dataclass
class Loaded:
    """A built model, ready for inference, with the lock every forward pass on it takes."""
    source: str
    model: torch.nn.Module
    info: DatasetInfo
    shape: tuple[int, int, int] = (1, 28, 28)  # the [C, H, W] input the model takes (a run: what it trained on)
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_dir: str | None = None  # where the run found its dataset (None: the default lookup)
    refusal: str | None = None  # why the explorer does not read the images of its dataset (None: it does)
    fields: dict | None = None  # {layer: receptive field}, computed on first use (cnnlab.web.formulas)
    tops: dict = field(default_factory=dict)  # {layer: top activations of its features} (cnnlab.web.attribution)
    progress: dict = field(default_factory=dict)  # {layer: (test images searched, of how many)} while it runs
    links: dict = field(default_factory=dict)  # {conv layer: which input maps each map reads} (cnnlab.web.inspect)
    answers: dict = field(default_factory=dict)  # {(layer, feature): a top-activations answer, once computed}
    test_split: Callable | None = None  # () -> its test split: what an upload is compared with
    familiarity: Familiarity | None = None  # thresholds set on its test images on first use (cnnlab.viz.familiarity)

    @property
    def task(self) -> Task:
        return task_of(self.info)


class Sources:
    """The runs given to `cnnlab serve` (or every run under a runs folder) plus every classification model."""

    def __init__(self, runs: list[str | Path] | None = None, runs_dir: str | Path | None = None,
                 cache_size: int = 4, own: list[UserModel] = (), folders=()):
        self._explicit = [Run.open(r) for r in runs or []]
        for model in own:  # the page draws 28×28 digits (runs on photos or scenes have test images to pick)
            if model.input_shape != (1, 28, 28):
                raise SourceError(f"--model {model.spec}: the explorer draws 1×28×28 digits, and this model takes "
                                  f"{'×'.join(map(str, model.input_shape))} inputs")
        self._own = {f"file:{model.name}": model for model in own}
        # The folders whose images may be read: those the server was started with, and the --model's dataset.
        self._folders = [Path(f).expanduser().resolve() for f in folders] + \
                        [folder_path(m.info.name).resolve() for m in own if is_folder(m.info.name)]
        self._runs_dir = runs_dir
        self._cache: OrderedDict[str, tuple[int, Loaded]] = OrderedDict()  # source -> (version, model)
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.builds = 0  # how many models were built: the cache tests read it

    def runs(self) -> list[Run]:
        # Re-listed on every call so that a run finished while the server is up appears without a restart.
        return self._explicit or list_runs(self._runs_dir)

    def datasets(self) -> set[str]:
        """The datasets of the runs and models shown (the only folders whose images the explorer reads)."""
        return {run.config.dataset for run in self.runs()} | {own.info.name for own in self._own.values()}

    def refusal(self, dataset: str) -> str | None:
        """Why the explorer does not read `dataset`'s images (None: it does). A folder is read only inside a folder
        the server was started with: a run folder's config.json, perhaps someone else's, may name any path, and
        decoding it would list its files, write a cache into it and serve its pictures."""
        if not is_folder(dataset):
            return None  # a registered dataset: files of fixed names, checked against their sha256
        path = folder_path(dataset).resolve()
        if any(path == allowed or allowed in path.parents for allowed in self._folders):
            return None
        return f"{dataset}: not read by this explorer (start it with --allow-folder {path} to show its images)"

    def describe(self) -> list[dict]:
        """Runs first, the newest first (the page opens the first), each with its task's own measure (a
        segmentation's mean IoU: its pixel accuracy is high for a model that finds no digit); then the user's
        models and the registered ones."""
        items = []
        for run in sorted(self.runs(), key=_modified, reverse=True):
            try:
                metrics, damaged = run.metrics(), None
            except CheckpointError as err:  # listed as damaged, with the reason: the other runs stay listable
                metrics, damaged = [], str(err)
            last = metrics[-1] if metrics else {}
            task = task_of(run.info)
            items.append({"id": f"run:{run.name}", "kind": "run", "name": run.name, "model": run.config.model,
                          "dataset": run.config.dataset, "task": run.info.task, "engine": run.config.engine,
                          "epochs": len(metrics), "test_acc": last.get("test_acc"), "random_weights": False,
                          "measure": {"name": task.metric.name, "value": last.get(task.metric.key),
                                      "text": task.metric.format(last[task.metric.key]) + task.metric.unit
                                      if isinstance(last.get(task.metric.key), (int, float)) else None},
                          "damaged": damaged, "dataset_note": self.refusal(run.config.dataset),
                          "input_shape": run.meta().get("input_shape")})
        for source, own in self._own.items():
            items.append({"id": source, "kind": "file", "name": own.name, "model": own.spec,
                          "dataset": own.info.name, "task": own.info.task, "engine": "torch", "epochs": 0,
                          "test_acc": None, "random_weights": own.weights is None, "damaged": None,
                          "input_shape": list(own.input_shape), "dataset_note": None})
        for name in untrained():
            items.append({"id": f"model:{name}", "kind": "model", "name": name, "model": name,
                          "dataset": TrainConfig.dataset, "task": DIGITS.task, "engine": "torch", "epochs": 0,
                          "test_acc": None, "random_weights": True, "damaged": None, "input_shape": [1, 28, 28],
                          "dataset_note": None})
        return items

    def get(self, source: str) -> Loaded:
        with self._lock:
            version = self._version(source)
            cached = self._cache.get(source)
            if cached and cached[0] == version:
                self._cache.move_to_end(source)
                return cached[1]
            loaded = self._build(source)
            self.builds += 1
            self._cache[source] = (version, loaded)
            self._cache.move_to_end(source)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return loaded

    def _run(self, source: str) -> Run:
        name = source.partition(":")[2]
        run = next((r for r in self.runs() if r.name == name), None)
        if run is None:
            raise SourceError(f"source {source!r}: no such run (GET /api/sources lists them)")
        return run

    def _version(self, source: str) -> int:
        """A run's weights change while it trains (one checkpoint per epoch): a newer file means a rebuild."""
        if not source.startswith("run:"):
            return 0
        checkpoint = self._run(source).checkpoint("last")
        return checkpoint.stat().st_mtime_ns if checkpoint.is_file() else -1

    def _build(self, source: str) -> Loaded:
        kind, _, name = source.partition(":")
        try:
            if kind == "run":
                run = self._run(source)
                refusal = self.refusal(run.config.dataset)
                missing = [key for key in RECORDED if key not in run.config.dataset_options]
                if refusal and missing:  # the model's classes or normalization would come from the folder
                    raise SourceError(f"source {source!r}: {refusal}; its config.json records no "
                                      f"{', '.join(missing)}, so its model cannot be built without reading it")
                model, shape = run.load_model("last")
                return Loaded(source, model, run.info, shape or (1, 28, 28), data_dir=run.config.data_dir,
                              refusal=refusal, test_split=None if refusal else run.test_split)
            if source in self._own:
                own = self._own[source]
                return Loaded(source, own.build_model(), own.info, own.input_shape, data_dir=own.config.data_dir,
                              test_split=own.test_split)
            if kind == "model" and name in untrained():
                config = TrainConfig(model=name)
                with torch.random.fork_rng(devices=[]):  # seed the weights without touching the global generator
                    torch.manual_seed(RANDOM_SEED)
                    model = build_torch_model(config).eval()
                return Loaded(source, model, dataset_info(config.dataset),
                              test_split=lambda: config.load_split("test", quiet=True))
        except SourceError:
            raise
        except (CnnlabError, ValueError, RuntimeError) as err:
            raise SourceError(f"source {source!r}: cannot build the model ({err})") from None
        raise SourceError(f"source {source!r}: unknown; expected run:<name>, model:<name> or file:<name> "
                          "(GET /api/sources)")

