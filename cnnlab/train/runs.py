"""Run folders: `runs/<name>/` holds everything a training run produced.

    config.json        the TrainConfig plus versions (enough to reproduce the run)
    metrics.jsonl      one JSON object per epoch
    model.safetensors  the final weights, with the model's name and shape in the metadata
    best.safetensors   the weights of the epoch with the best test accuracy
    curves.png, confusion.png, mistakes.png, summary.md

Weights are only ever read with safetensors: loading a run never unpickles anything.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab import files
from cnnlab.data.registry import file_label
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.files import atomic_write
from cnnlab.text import to_json
from cnnlab.train.config import TrainConfig

if TYPE_CHECKING:
    from cnnlab.tasks import Task

RUNS_DIR = Path(os.environ.get("CNNLAB_RUNS", "runs"))
CHECKPOINTS = {"last": "model.safetensors", "best": "best.safetensors"}
METRICS_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")  # what every reader uses
MAX_INPUT = (16, 4096)  # the most channels and the largest side a run's recorded input shape may claim


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def new_run_dir(config: TrainConfig, name: str | None = None, root: Path | None = None) -> Path:
    root = Path(root or RUNS_DIR)
    base = name or default_name(config)
    check_destination(base, root)
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as err:
        raise ConfigError(f"--runs-dir {root}: cannot make the run folder {path.name} ({err.strerror or err})") from None
    return path


# Characters and names no run folder may have, so that a run folder copies to Linux, macOS and Windows alike.
_FORBIDDEN = set('<>:"/\\|?*') | {chr(c) for c in range(32)}
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_NAME_BYTES = 200  # file systems allow 255 bytes (a non-ASCII letter takes 2-4); room is left for "-2"


def default_name(config: TrainConfig) -> str:
    """MODEL-DATASET[-ENGINE]-TIMESTAMP, a name every system takes: a folder dataset's name (its last folder) has
    the characters no run name may have replaced and is shortened so that the whole fits MAX_NAME_BYTES."""
    stamp, label = time.strftime("%Y%m%d-%H%M%S"), file_label(config.dataset)
    # the engine named when it is not the default: a Keras run and a torch run of one model are told apart
    engine = "" if config.engine == "torch" else f"-{config.engine}"
    label = "".join("_" if c in _FORBIDDEN else c for c in label)
    room = MAX_NAME_BYTES - len(os.fsencode(f"{config.model}-{engine}-{stamp}"))
    while len(os.fsencode(label)) > room:
        label = label[:-1]
    return f"{config.model}-{label}{engine}-{stamp}"


def check_destination(name: str | None, root: str | Path | None) -> None:
    """Refuse, before anything is trained, a run name no file system takes and a runs folder that is a file."""
    root = Path(root or RUNS_DIR)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--runs-dir {root}: is a file, not a folder")
    if name is None:
        return
    bad = sorted(set(name) & _FORBIDDEN)
    size = len(os.fsencode(name))  # what the file system counts: bytes, 2 to 4 for a non-ASCII letter
    if not name or name in (".", "..") or bad or name[-1] in ". " or size > MAX_NAME_BYTES or \
            name.split(".")[0].lower() in _RESERVED:
        shown = ", ".join(repr(c) for c in bad)
        length = f" (this one: {size})" if size > MAX_NAME_BYTES else ""
        raise ConfigError(f"run name {name[:40]!r}{'...' if len(name) > 40 else ''}: not a folder name every "
                          f"system takes ({shown + ' not allowed; ' if bad else ''}at most {MAX_NAME_BYTES} bytes"
                          f"{length}, no trailing dot or space, not a reserved name such as CON)")


def write_json_atomic(path: Path, data) -> None:
    atomic_write(path, (to_json(data, indent=2) + "\n").encode())


def save_weights(path: Path, weights: dict, metadata: dict) -> None:
    """Atomically write a safetensors file; metadata values are stored as strings (safetensors' rule)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    atomic_write(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def read_weights(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, with clear errors for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    raw = files.read_bytes(path, "weights", CheckpointError, "weights file")
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    metadata = {}
    for key, value in (header.get("__metadata__") or {}).items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


@dataclass
class Run:
    """A finished (or running) run folder; it answers `cnnlab.train.inspected.Inspected`."""
    path: Path
    config: TrainConfig
    kind = "run"

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """The run folder `path` names (see `find_run`), its config read and checked. Imports no torch: a
        command refuses a run that is not there before it loads the heavy modules."""
        path = find_run(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a run folder (no config.json)")
        try:
            config = TrainConfig.load(path / "config.json")
        except ConfigError as err:
            raise CheckpointError(str(err)) from None
        return cls(path, config)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def caption(self) -> str:
        return f"{self.config.model}, {self.config.engine} engine"

    @property
    def info(self):
        """The run's dataset: classes, normalization, task (cnnlab.data.DatasetInfo), with its options."""
        return self.config.dataset_info()

    @property
    def task(self) -> Task:
        from cnnlab.tasks import task_of  # torch: a run is opened (and a mistyped name refused) before it loads

        return task_of(self.info)

    def meta(self) -> dict:
        """What the Trainer recorded beside the settings in config.json (versions, command, input shape)."""
        data = json.loads(files.read_text(self.path / "config.json", "config", CheckpointError, "config file"))
        return data.get("_meta") or {}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The [C, H, W] input the run trained on, as its config.json records it (else its test images')."""
        recorded = input_shape(self.meta().get("input_shape"), self.path / "config.json")
        if recorded:
            return recorded
        image = self.test_split(limit=1).images[0]
        return (1, *image.shape) if image.ndim == 2 else tuple(image.shape)

    def introduction(self) -> str:
        try:
            metrics = self.metrics()
        except CheckpointError as err:
            return f"Its metrics are unreadable: {err}."
        if not metrics:
            return "No metrics recorded (the run stopped before its first epoch ended)."
        from cnnlab.tasks.parts import run_sentence

        return run_sentence(self.task, self.config, metrics)

    def settings(self) -> list[tuple[str, str]]:
        """config.json: the TrainConfig, then what the Trainer recorded under "_meta"."""
        return [(key, json.dumps(value)) for key, value in self.config.to_dict().items()] + \
            [(f"_meta.{key}", json.dumps(value)) for key, value in self.meta().items()]

    def test_split(self, limit: int | None = None):
        """The test split of the run's dataset (with `limit`, a generated dataset makes only that many)."""
        return self.config.load_split("test", quiet=True, limit=limit)

    def metrics(self) -> list[dict]:
        """The rows of metrics.jsonl, checked: a damaged file is one CheckpointError naming its line."""
        file = self.path / "metrics.jsonl"
        if not file.exists():
            return []
        rows = []
        for number, line in enumerate(files.read_text(file, "metrics", CheckpointError, "metrics file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise CheckpointError(f"{file}:{number}: not valid JSON") from None
            if not (isinstance(row, dict) and all(_is_number(row.get(key)) for key in METRICS_KEYS)):
                raise CheckpointError(f"{file}:{number}: not a metrics row (an object with numbers for "
                                      f"{', '.join(METRICS_KEYS)})")
            rows.append(row)
        return rows

    def checkpoint(self, which: str = "last") -> Path:
        if which not in CHECKPOINTS:
            raise ConfigError(f"unknown checkpoint {which!r}; expected one of {', '.join(CHECKPOINTS)}")
        return self.path / CHECKPOINTS[which]

    def build_model(self, which: str = "last"):
        """The run's PyTorch model with its trained weights, in eval mode."""
        return self.load_model(which)[0]

    def load_model(self, which: str = "last"):
        """(the run's model with its trained weights, in eval mode; the [C, H, W] input its weights file records,
        or None), from one read of the file."""
        path = self.checkpoint(which)
        tensors, metadata = read_weights(path)
        # config.json says what the weights mean (class names, normalization): it must be the weights' own run's
        for key in ("model", "dataset"):
            recorded, configured = metadata.get(key), getattr(self.config, key)
            if recorded is not None and recorded != configured:
                raise CheckpointError(f"{self.path / 'config.json'}: {key} {configured!r}, but its weights "
                                      f"({path.name}) were trained as {key} {str(recorded)[:60]!r}: config.json was "
                                      "edited or belongs to another run")
        shape = input_shape(metadata.get("input_shape"), path)
        from cnnlab.models.weights import check_fits
        from cnnlab.train.engine import build_torch_model

        model = build_torch_model(self.config, shape)
        check_fits(model, tensors, path)
        broken = [name for name, tensor in tensors.items() if tensor.is_floating_point() and
                  not bool(tensor.isfinite().all())]
        if broken:
            raise CheckpointError(f"{path}: {len(broken)} tensor(s) hold NaN or infinite values ("
                                  f"{', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); the run diverged "
                                  "or the file was altered")
        model.load_state_dict(tensors)
        return model.eval(), shape


def find_run(name: str | Path, what: str = "run folder") -> Path:
    """The folder a RUN argument names: a path from the current folder, or a run's name in the runs folder
    (runs/, or $CNNLAB_RUNS). Not found, the error ("NAME: no such `what`") says where it looked and the nearest
    run name there."""
    path = Path(name)
    if path.is_dir():
        return path
    candidate = RUNS_DIR / path
    if candidate.is_dir() and not path.is_absolute():
        return candidate
    if path.is_absolute():
        raise CheckpointError(f"{name}: no such {what}")
    import difflib

    names = [p.parent.name for p in RUNS_DIR.glob("*/config.json")]
    near = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    hint = (f"did you mean {RUNS_DIR / near[0]}?" if near else "`cnnlab runs` lists the runs there") \
        if RUNS_DIR.is_dir() else "which does not exist; $CNNLAB_RUNS names another"
    raise CheckpointError(f"{name}: no such {what} (looked in {Path.cwd()} and in {RUNS_DIR.resolve()}, "
                          f"{hint})")

def input_shape(value, source) -> tuple[int, int, int] | None:
    """The [C, H, W] a weights file's metadata records, checked before any model is built for it."""
    if value is None:
        return None
    channels, side = MAX_INPUT
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                 and v >= 1 for v in value)
            and value[0] <= channels and max(value[1:]) <= side):
        raise CheckpointError(f"{source}: input_shape {json.dumps(value)[:60]} in its metadata is not [C, H, W] "
                              f"(at most {channels} channels and {side} pixels a side)")
    return tuple(value)


def list_runs(root: Path | None = None) -> list[Run]:
    root = Path(root or RUNS_DIR)
    runs = []
    for path in sorted(root.glob("*/config.json")):
        try:
            runs.append(Run.open(path.parent))
        except CheckpointError:
            continue  # a foreign or damaged folder is not a run; `cnnlab runs` lists the rest
    return runs
