"""The task of a run: what a model's output means, and everything that follows from it.

The lecture splits a CNN into the layers that compute features and its "task (classification/regression)
layers". A `Task` is that last part's contract with the rest of cnnlab. A model's registry entry and a dataset's
entry each name their task, and the task of that name answers every question whose answer differs from one task
to another: the label layout and the loss, the evaluation and its numbers (and which of them picks the best
epoch), the headline, the run folder's figures and the report's sections, a prediction as JSON and as a line of
the terminal, what the explorer draws, and which pictures and commands apply. The trainer, the commands, the
report and the explorer ask the task; none of them tests a task's name (tests/test_tasks.py fails if one does).
Adding a task is one module in this package and its entry in `cnnlab.tasks.TASKS` (DEVELOPERS.md, "Add a task").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import DatasetInfo
from cnnlab.data.preprocess import input_source
from cnnlab.errors import ConfigError
from cnnlab.viz.activations import check_scores

# What a task may refuse, each with its one-line reason (`Task.refusals`): the pictures of `cnnlab show` by
# their kind, and these.
ENSEMBLE = "ensemble"  # `cnnlab evaluate --tta` and ensembles of runs, which average class probabilities
DATA = "data"  # `cnnlab data`, which counts a dataset's images per class
MODEL_FILE = "model-file"  # `--model FILE.py:NAME`, a user's model that outputs class scores [N, K]
TOP_ACTIVATIONS = "top-activations"  # the explorer's search of the test images that excite a feature most


@dataclass(frozen=True)
class Metric:
    """A number recorded each epoch: its field in metrics.jsonl, its name in sentences and its column header."""
    key: str
    name: str
    column: str
    spec: str  # how it is written, "{:.2%}"
    unit: str = ""  # what follows it where no header names it (`cnnlab runs`), " mIoU"

    def format(self, value: float) -> str:
        return self.spec.format(value)


class Task(ABC):
    name: str  # as the model and dataset registries name it
    dataset: str  # a dataset of this task, offered in messages
    metric: Metric  # picks the best epoch (best.safetensors) and heads `cnnlab runs`
    columns: tuple[Metric, ...] = ()  # the task's numbers in each epoch's row, beyond loss and accuracy
    accuracy_words: str = "acc"  # what the recorded accuracy counts, in a column header
    engines: tuple[str, ...] | None = None  # the engines that train it; None: all of them
    augments: bool = True  # whether --augment's jitter applies (it moves images, not what labels point at)
    labels: str = "labels"  # what its labels are, in messages
    example: str = "image"  # what one of its inputs is called
    output_names: tuple[str, ...] = ("logits",)  # the model's outputs, as an exported model names them
    tables_after_training: bool = False  # whether `cnnlab train` ends with the task's tables
    refusals: dict[str, str] = {}  # what it does not do ({show kind or a name above: why})
    any_size: bool = False  # whether its models take an input at its own size (an [H, W] array is a scene)
    judges_familiarity: bool = False  # whether an input is said to be unlike the training images (a class per image)

    # -- training ---------------------------------------------------------------------------------------------
    def check(self, config) -> None:
        """Refuse, before anything is loaded, a configuration this task cannot train: the dataset's labels are for
        another task, an engine or a setting it does not take."""
        dataset = config.dataset_info()
        if dataset.task != self.name:
            raise ConfigError(f"model {config.model!r} does {self.name} but dataset {config.dataset!r} is for "
                              f"{dataset.task} (use a {self.name} dataset, e.g. {self.dataset})")
        if self.engines is not None and config.engine not in self.engines:
            raise ConfigError(f"--engine {config.engine}: {self.name} trains with the "
                              f"{' or '.join(self.engines)} engine only")
        if config.augment and not self.augments:
            raise ConfigError(f"--augment: the affine jitter moves images but not their {self.labels}; "
                              f"{self.name} trains without it")

    def refuse(self, what: str, subject) -> None:
        """A one-line ConfigError naming `subject` if this task does not do `what`."""
        if what in self.refusals:
            raise ConfigError(f"{subject}: {self.refusals[what]}")

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """The loss summed over the batch's images (an image's loss: the mean over its labels, as its pixels')."""

    @abstractmethod
    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """How many of the batch's images are right (an image's share of right pixels, for a map of labels)."""

    # -- evaluation -------------------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, logits_fn, data, batch_size: int):
        """The model's numbers on `data` (a TensorSplit): an evaluation with at least `loss` and `accuracy`."""

    def metrics(self, evaluation) -> dict:
        """The task's numbers for an epoch's row in metrics.jsonl ({Metric.key: value} of `columns`)."""
        return {}

    @abstractmethod
    def headline(self, evaluation, short: bool = False) -> str:
        """The progress bar's words on an epoch's evaluation (`short`: for 80 columns)."""

    @abstractmethod
    def summary(self, evaluation) -> str:
        """The evaluation in one sentence, its main numbers in **emphasis**."""

    @abstractmethod
    def tables(self, evaluation, classes: tuple[str, ...]) -> list:
        """The evaluation's tables (cnnlab.tasks.parts.Table), per class."""

    @abstractmethod
    def per_class(self, evaluation, classes: tuple[str, ...]) -> dict:
        """{class: its numbers} (a classifier's accuracy on its images, a segmentation's IoU, ...)."""

    @abstractmethod
    def confusion(self, evaluation, num_classes: int) -> torch.Tensor:
        """confusion[true, predicted]: counts of images (of pixels, for a class per pixel)."""

    @abstractmethod
    def evaluation_json(self, evaluation, classes: tuple[str, ...]) -> dict:
        """What `cnnlab evaluate --json` prints, beside where it was measured."""

    @abstractmethod
    def evaluation_figure(self, data, evaluation, path: Path) -> None:
        """`cnnlab evaluate --figure`: the picture of an evaluation."""

    @abstractmethod
    def sections(self, history: list[dict], evaluated, title: str) -> list:
        """The results of a run (or of a model without a history, `history` empty) as sections of the run
        folder's summary.md and of the report. `evaluated()` gives (the test TensorSplit, its evaluation), made
        only when a part needs it."""

    # -- one input --------------------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, source, info: DatasetInfo, shape: tuple[int, int, int], name: str | None = None,
                max_side: int | None = None) -> np.ndarray:
        """A user's image (a path or bytes) as the model's uint8 input of `shape` [C, H, W]. `max_side`: a scene
        larger than it is reduced to it as it is decoded (the explorer, which fits any photo to its canvas); without,
        a scene too large for its digits to be at the scale the model learned is refused."""

    def prepare_any(self, image, info: DatasetInfo, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
        """(the model's uint8 input, its name) from a file path, an image's bytes, a PIL image, or an array or
        tensor of pixels: one already of the input's shape as it is, anything else as `prepare` prepares it."""
        source, name, ready = input_source(image, shape, self.any_size)
        return (source, name) if ready else (self.prepare(source, info, shape, name), name)

    def class_scores(self, output: torch.Tensor) -> torch.Tensor:
        """The class scores in the model's output batch, which a softmax turns into probabilities ([N, K], or
        [N, K, H, W] for a class per pixel): all of it, unless the output holds more than class scores."""
        return output

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the model's output batch."""
        return self.class_scores(output).softmax(1)

    @abstractmethod
    def output_shape(self, batch: int, classes: int, height: int, width: int) -> tuple[int, ...]:
        """The shape of a model's output for a batch of height x width images."""

    def checked(self, output, source: str, batch: int | None = None) -> torch.Tensor:
        """`output` if it has the form of this task's outputs (a tensor of their rank, `batch` rows, finite
        numbers); otherwise a ModelOutputError naming `source` and what the model returned."""
        return check_scores(output, source, batch, dims=(len(self.output_shape(1, 1, 1, 1)),))

    def split_outputs(self, output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's output as the outputs named by `output_names`."""
        return (output,)

    @abstractmethod
    def predict(self, outputs: torch.Tensor, info: DatasetInfo, size: tuple[int, int]) -> list[dict]:
        """The prediction of each image of a batch of height x width (`size`) images, as JSON."""

    @abstractmethod
    def prediction_line(self, row: dict, top: int) -> str:
        """One prediction in words for the terminal (`top` classes where it ranks them)."""

    @abstractmethod
    def prediction_picture(self, image: np.ndarray, output: torch.Tensor, info: DatasetInfo, stem: Path) -> Path:
        """A picture of one prediction (its input, what it found), written beside `stem`; its path."""

    @abstractmethod
    def explorer(self, output: torch.Tensor, info: DatasetInfo) -> dict:
        """What the explorer draws of one image's output (the API's payload)."""

    @abstractmethod
    def label_json(self, label) -> object:
        """One stored label as JSON."""

    # -- explaining -------------------------------------------------------------------------------------------
    @abstractmethod
    def targets(self, info: DatasetInfo) -> tuple[str, ...]:
        """The outputs a saliency map can explain, by index (`--target N`)."""

    @abstractmethod
    def verdict(self, output: torch.Tensor, info: DatasetInfo) -> tuple[int, str]:
        """(the target explained by default, what the model says) from one image's output."""

    @abstractmethod
    def question(self, info: DatasetInfo, target: int) -> str:
        """What a saliency map of `target` answers, "why 7?"."""

    def label_target(self, label) -> int:
        """The target a stored label points at: what occlusion maps for a test image by default."""
        return int(label)

    @abstractmethod
    def samples(self, labels: np.ndarray, count: int) -> list[int]:
        """Test images worth looking inside: `count` indices."""

    @abstractmethod
    def caption(self, info: DatasetInfo, labels: np.ndarray, index: int) -> str:
        """A test image in words, its label first: "label 3, test image 7" (samples one per class come in class
        order, not in the order of their test indices)."""
