"""A model from the user's own Python file (`--model FILE.py:NAME`), shown by `show`, `report` and `serve` as a
run is: it answers the same questions (its name, its dataset's test images and classes, a built model).

Importing FILE.py runs its code with the user's rights, as `python FILE.py` would. cnnlab does it only for a file
the user names on the command line: never for a file it finds, and a run folder is only ever read as data (JSON
and safetensors). NAME is a `torch.nn.Module` subclass built with no arguments, or a function of no arguments
that returns a module. Weights (`--weights`) are read without unpickling (`cnnlab.models.weights`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.data import DatasetInfo, dataset_info
from cnnlab.errors import ConfigError, first_line
from cnnlab.models.weights import load_weights
from cnnlab.tasks import Task, task_of
from cnnlab.tasks.task import MODEL_FILE
from cnnlab.train.config import TrainConfig
from cnnlab.viz.activations import check_scores

NO_DATASET = "none"  # --dataset none: pictures of the user's own images only, inputs scaled to [0, 1]


class UserModelError(ConfigError):
    """A --model file that cannot be imported, or whose NAME does not build a module that fits its inputs."""


def _location(err: BaseException, file: Path) -> str:
    """' (line N)' of the innermost frame of `err` that is in `file`: where in the user's code it went wrong."""
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if Path(frame.filename) == file]
    return f" (line {lines[-1]})" if lines else ""


def import_factory(spec: str):
    """Import FILE.py (running its code) and return NAME from it: a class or function that builds the model."""
    file_text, colon, name = spec.rpartition(":")
    if not colon or not file_text.endswith(".py") or not name.isidentifier():
        raise UserModelError(f"--model {spec!r}: expected FILE.py:NAME (a class or function in that file)")
    file = Path(file_text).resolve()
    if not file.is_file():
        raise UserModelError(f"--model {spec}: no such file {file_text}")
    module_name = f"cnnlab_user_model_{abs(hash(str(file)))}"
    loader = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # dataclasses and pickling-free type lookups inside the file need it
    try:
        loader.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - the user's code may raise anything, SystemExit included
        sys.modules.pop(module_name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        detail = first_line(err, 120)
        raise UserModelError(f"--model {spec}: importing {file.name} raised {type(err).__name__}"
                             f"{_location(err, file)}: {detail}") from None
    factory = getattr(module, name, None)
    if factory is None:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                       and v.__module__ == module_name)
        raise UserModelError(f"--model {spec}: {file.name} defines no {name!r}"
                             + (f"; its modules: {', '.join(found)}" if found else ""))
    if not callable(factory):
        raise UserModelError(f"--model {spec}: {name} is a {type(factory).__name__}, not a class or function")
    return factory


def build(factory, spec: str) -> nn.Module:
    """NAME() in eval mode, with its initial weights; what it raises is one line naming the line of the file."""
    file, name = Path(spec.rpartition(":")[0]).resolve(), spec.rpartition(":")[2]
    try:
        model = factory()
    except Exception as err:  # noqa: BLE001 - as above
        detail = first_line(err, 120)
        raise UserModelError(f"--model {spec}: {name}() raised {type(err).__name__}{_location(err, file)}: "
                             f"{detail} (it must build with no arguments)") from None
    if not isinstance(model, nn.Module):
        raise UserModelError(f"--model {spec}: {name}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def parse_class_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"--class-names {text[:60]!r}: expected distinct names separated by commas, such as "
                          "cat,dog,bird")
    return names


@dataclass
class UserModel:
    """A model that is not a cnnlab run, as `show`, `report` and `serve` see it: it answers
    `cnnlab.train.inspected.Inspected`, as a run does."""
    spec: str
    weights: Path | None
    dataset: str  # a registered dataset: its test images, classes and normalization; or NO_DATASET
    info: DatasetInfo
    input_shape: tuple[int, int, int]
    factory: object = dataclasses.field(default=None, repr=False)  # NAME from FILE.py, imported once
    classes: int | None = None  # its outputs, from the check when it was opened
    kind = "model"

    @classmethod
    def open(cls, spec: str, weights: str | None = None, dataset: str = "mnist", class_names: str | None = None,
             input_shape: tuple[int, int, int] | None = None, factory=None) -> UserModel:
        """Check everything the options say against one forward pass of the model, so that a model that does not
        fit its inputs or names is a one-line error here rather than a shape error deep inside a figure.
        `factory`: what builds the model, when it is not NAME from FILE.py (a model defined in a notebook)."""
        if dataset == NO_DATASET:
            if input_shape is None:
                raise ConfigError("--dataset none: give --input CxHxW (the model's input)")
            # With no dataset, pixels are scaled to [0, 1] and not shifted: mean 0 and std 1 of that scale.
            base = dataclasses.replace(dataset_info("mnist"), name=NO_DATASET, mean=0.0, std=1.0, files={},
                                       sha256={}, mirrors=(), source="your images", licence="")
        else:
            base = dataset_info(dataset)
            task_of(base).refuse(MODEL_FILE, f"--dataset {dataset}")
        shape = input_shape
        subject = cls(spec, Path(weights) if weights else None, dataset, base, shape or (1, 28, 28),
                      factory or import_factory(spec))
        model = subject._build_unchecked()  # the probe below checks what the hook would, but leniently
        if shape is None and dataset != NO_DATASET:
            images = subject.test_split(limit=1).images
            subject.input_shape = (1, *images.shape[1:]) if images.ndim == 3 else tuple(images.shape[1:])
        try:
            with torch.no_grad():
                logits = model(torch.zeros(1, *subject.input_shape))
        except Exception as err:  # noqa: BLE001 - the user's forward may raise anything
            detail = first_line(err, 120)
            raise UserModelError(f"--model {spec}: a {'×'.join(map(str, subject.input_shape))} input fails "
                                 f"({type(err).__name__}: {detail}); give --input or --dataset") from None
        # an input of zeros may fairly give NaN (a model that divides by the input's spread): only its form counts
        outputs = check_scores(logits, f"--model {spec}", batch=1, finite=False).shape[1]
        names = parse_class_names(class_names) if class_names else (base.classes if dataset != NO_DATASET
                                                        else tuple(str(k) for k in range(outputs)))
        if len(names) != outputs:
            source = "--class-names" if class_names else f"--dataset {dataset}"
            raise UserModelError(f"--model {spec}: {outputs} outputs but {len(names)} class names from {source}")
        subject.info = dataclasses.replace(base, classes=names)
        subject.classes = outputs
        return subject

    @property
    def name(self) -> str:
        return Path(self.spec.rpartition(":")[0]).name + ":" + self.spec.rpartition(":")[2]

    @property
    def caption(self) -> str:
        return f"your model, {f'weights {self.weights.name}' if self.weights else 'its initial weights'}"

    @property
    def path(self) -> None:
        return None  # not a run folder: nothing of a run's (metrics, figures, config.json) exists

    @property
    def task(self) -> Task:
        return task_of(self.info)

    def introduction(self) -> str:
        return f"{self.caption}, a model of your own (`--model {self.spec}`), on the {self.info.name} test set."

    def settings(self) -> list[tuple[str, str]]:
        return [("model", self.spec), ("weights", str(self.weights or "as the model builds itself")),
                ("dataset", self.info.name), ("input shape", "×".join(map(str, self.input_shape))),
                ("classes", ", ".join(self.info.classes))]

    @property
    def config(self) -> TrainConfig:
        """The settings a run would have had: its dataset (for test images), evaluation batch size."""
        return TrainConfig(dataset="mnist" if self.dataset == NO_DATASET else self.dataset)

    def metrics(self) -> list[dict]:
        return []

    def test_split(self, limit: int | None = None):
        if self.dataset == NO_DATASET:
            raise ConfigError(f"{self.name}: this needs test images; give --dataset (with --dataset none, give an "
                              "IMAGE file)")
        split = self.config.load_split("test", quiet=True, limit=limit)
        return dataclasses.replace(split, info=self.info)  # with --class-names' names

    def build_model(self, checkpoint: str = "last") -> nn.Module:
        """A fresh model, as a run builds one, with the --weights loaded (a run's `checkpoint` choice does not
        apply: a user model has one weights file)."""
        model = self._build_unchecked()
        # Every forward pass's output is checked, wherever cnnlab runs it (a figure, a report, the explorer): a
        # model may return scores for one input and a tuple or NaN for the next, which would otherwise surface as
        # a traceback deep inside a figure or as "predicted 0 (nan%)".
        model.register_forward_hook(self._check_output)
        return model.eval()

    def _build_unchecked(self) -> nn.Module:
        model = build(self.factory, self.spec)
        if self.weights is not None:
            load_weights(model, self.weights)
        return model.eval()

    def _check_output(self, _module, inputs, output) -> None:
        batch = inputs[0].shape[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        check_scores(output, f"--model {self.spec}", batch, self.classes)
