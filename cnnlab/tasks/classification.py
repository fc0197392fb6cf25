"""Classification: one class per image. The model outputs class scores [N, K]; a label is a class index.

Trained with softmax cross-entropy, evaluated by its accuracy, its loss and one confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.data.preprocess import load_digit, load_photo
from cnnlab.tasks.parts import Figure, Section, Table, curves_section
from cnnlab.tasks.task import Metric, Task
from cnnlab.viz.training import plot_confusion, plot_mistakes

DIGIT = (1, 28, 28)  # the input a digit is prepared for, MNIST-style


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, K] int64 counts of images (or pixels) with confusion[true, predicted]."""
    index = target.flatten().long() * num_classes + predicted.flatten().long()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    logits: torch.Tensor  # [N, classes], on the CPU
    labels: torch.Tensor

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    def confusion(self, num_classes: int) -> torch.Tensor:
        """confusion[true, predicted] counts of images."""
        return confusion_matrix(self.predictions, self.labels, num_classes)

    def per_class(self, num_classes: int) -> list[float]:
        """The accuracy on each true class's images."""
        confusion = self.confusion(num_classes)
        return (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()


def evaluate(logits_fn, data, batch_size: int = 1000) -> Evaluation:
    outputs = [logits_fn(x).float().cpu() for x, _ in data.batches(batch_size)]
    logits = torch.cat(outputs) if outputs else torch.empty(0, data.info.num_classes)
    labels = data.labels.cpu()
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / max(1, len(labels))
    accuracy = (logits.argmax(1) == labels).float().mean().item() if len(labels) else 0.0
    return Evaluation(loss, accuracy, logits, labels)


def first_of_each_class(labels: np.ndarray, count: int) -> list[int]:
    """The first test image of each of the first `count` classes: one digit (or garment) per class."""
    return [int(np.argmax(labels == c)) for c in range(count) if (labels == c).any()]


def ranked(probabilities: dict[str, float], top: int) -> str:
    best = sorted(probabilities.items(), key=lambda item: -item[1])[:max(1, top)]
    return "  ".join(f"{name} {p:.1%}" for name, p in best)


def prepare_image(source, info, shape: tuple[int, int, int], name: str | None = None) -> np.ndarray:
    """A user's image as the dataset prepares its images (a photo dataset's own way), a digit MNIST-style, or a
    picture fitted to the input of a user's model that takes another shape."""
    if info.prepare:
        return info.prepare(source, name)
    if tuple(shape) == DIGIT:
        return load_digit(source, name)
    return load_photo(source, shape[1:], name=name, channels=shape[0])


def save_input(image: np.ndarray, stem: Path) -> Path:
    """The prepared input as the model sees it, `STEM_WxH.png`."""
    picture = image if image.ndim == 2 else image[0] if len(image) == 1 else image.transpose(1, 2, 0)
    path = stem.with_name(f"{stem.name}_{image.shape[-1]}x{image.shape[-2]}.png")
    Image.fromarray(picture).save(path)
    return path


class Classification(Task):
    name = "classification"
    judges_familiarity = True  # one class per image: its energy says how familiar the image is
    dataset = "mnist"
    metric = Metric("test_acc", "test accuracy", "test acc", "{:.2%}")

    def loss(self, output, target, class_weights=None, label_smoothing=0.0):
        return F.cross_entropy(output.float(), target, class_weights, reduction="sum", label_smoothing=label_smoothing)

    def correct(self, output, target):
        return (output.argmax(1) == target).sum()

    def evaluate(self, logits_fn, data, batch_size: int) -> Evaluation:
        return evaluate(logits_fn, data, batch_size)

    def headline(self, evaluation, short=False):
        return f"test {evaluation.accuracy:.2%}" if short else f"test acc {evaluation.accuracy:.2%}"

    def summary(self, evaluation):
        return f"accuracy **{evaluation.accuracy:.2%}**, loss {evaluation.loss:.4f}"

    def tables(self, evaluation, classes):
        counts = evaluation.confusion(len(classes)).sum(1).tolist()
        return [Table(("class", "images", "accuracy"),
                      [[name, f"{count:,}", f"{accuracy:.2%}"]
                       for name, count, accuracy in zip(classes, counts, evaluation.per_class(len(classes)))])]

    def per_class(self, evaluation, classes):
        return dict(zip(classes, evaluation.per_class(len(classes))))

    def confusion(self, evaluation, num_classes):
        return evaluation.confusion(num_classes)

    def evaluation_json(self, evaluation, classes):
        return {"images": len(evaluation.labels), "accuracy": evaluation.accuracy, "loss": evaluation.loss,
                "per_class_accuracy": dict(zip(classes, evaluation.per_class(len(classes))))}

    def evaluation_figure(self, data, evaluation, path):
        plot_confusion(evaluation.confusion(data.info.num_classes), data.info.classes, path)

    def sections(self, history, evaluated, title):
        """The curves (or, for a model without a history, its accuracy measured now), the confusion matrix and
        the most confident mistakes; the test set is evaluated only if a figure must be drawn."""
        def confusion(path):
            data, evaluation = evaluated()
            plot_confusion(evaluation.confusion(data.info.num_classes), data.info.classes, path)

        def mistakes(path):
            data, evaluation = evaluated()
            plot_mistakes(data.images, evaluation, data.info.classes, path)

        measured = [] if history else [Section("On the test set", (
            f"On {len(evaluated()[0]):,} test {self.example}s: {self.summary(evaluated()[1])}.",))]
        return [*curves_section(self, history, title), *measured,
                Section("Confusion matrix", (Figure("confusion.png", "confusion matrix", confusion),)),
                Section("Most confident mistakes", (Figure("mistakes.png", "mistakes", mistakes),))]

    def prepare(self, source, info, shape, name=None, max_side=None):
        return prepare_image(source, info, shape, name)

    def output_shape(self, batch, classes, height, width):
        return (batch, classes)

    def predict(self, outputs, info, size):
        return [{"class": info.classes[int(p.argmax())],
                 "probabilities": {c: round(float(v), 6) for c, v in zip(info.classes, p)}}
                for p in self.probabilities(outputs)]

    def prediction_line(self, row, top):
        return f"{row['class']}   ({ranked(row['probabilities'], top)})"

    def prediction_picture(self, image, output, info, stem):
        return save_input(image, stem)

    def explorer(self, output, info):
        probabilities = output.softmax(0)
        return {"probabilities": [float(p) for p in probabilities],
                "prediction": info.classes[int(probabilities.argmax())]}

    def label_json(self, label):
        return int(label)

    def targets(self, info):
        return tuple(info.classes)

    def verdict(self, output, info):
        probabilities = output.softmax(0)
        top = int(probabilities.argmax())
        return top, f"predicted {info.classes[top]} ({float(probabilities[top]):.0%})"

    def question(self, info, target):
        return f"why {info.classes[target]}?"

    def samples(self, labels, count):
        return first_of_each_class(labels, count)

    def caption(self, info, labels, index):
        return f"label {info.classes[int(labels[index])]}, test {self.example} {index}"
