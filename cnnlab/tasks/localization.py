"""Localization: the class of the one object in an image and the box around it. The lecture's "task
(classification/regression) layers" made both at once: a classifier's scores and a regression of four numbers.

The model outputs [N, K + 4]: K class scores, then the box as its centre x, centre y, width and height, each a
fraction of the image's width or height (the model's last layer squashes them into 0..1 with a sigmoid). A label
is [class, left, top, right, bottom], the box's edges as fractions of the image's side (cnnlab.data.boxes).

The loss is the class's cross-entropy plus the box's L1 distance and its generalized IoU loss (Rezatofighi et al.
2019), as DETR weighs them (1, 5 and 2). L1 pulls the four numbers toward the truth with a steady gradient from
the first step, even where the boxes do not overlap; it counts a pixel off on a small digit as much as on a large
one, while IoU, the measure, does not, so GIoU's 1 - IoU + (the empty part of the enclosing box) makes the loss
scale-free and IoU itself what is optimized. Evaluated by the class accuracy, the mean IoU of the boxes, and the
localization accuracy of the ImageNet challenge: the share of images whose class is right and whose box has IoU
>= 0.5 with the truth. That one picks the best epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.preprocess import fit_scene, load_scene
from cnnlab.errors import ConfigError
from cnnlab.tasks.classification import confusion_matrix, first_of_each_class, ranked
from cnnlab.tasks.parts import Figure, Section, Table, curves_section
from cnnlab.tasks.task import ENSEMBLE, MODEL_FILE, Metric, Task
from cnnlab.viz.boxes import plot_boxes, plot_mistakes, plot_prediction

BOX = ("box centre x", "box centre y", "box width", "box height")  # the model's last four outputs
L1_WEIGHT, GIOU_WEIGHT = 5.0, 2.0  # the box's losses beside the class's cross-entropy (weight 1), as DETR's
LOCALIZED = 0.5  # the IoU from which a box counts as found (ImageNet's localization challenge, PASCAL VOC)


def corners(box: torch.Tensor) -> torch.Tensor:
    """[..., 4] centre x, centre y, width, height -> left, top, right, bottom, inside the image (0..1)."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).clamp(0, 1)


def centred(box: torch.Tensor) -> torch.Tensor:
    """[..., 4] left, top, right, bottom -> centre x, centre y, width, height."""
    left, top, right, bottom = box.unbind(-1)
    return torch.stack([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top], -1)


def area(box: torch.Tensor) -> torch.Tensor:
    """[N] areas of boxes [N, 4] (left, top, right, bottom); 0 for an empty one."""
    return (box[:, 2] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 1]).clamp(min=0)


def iou_and_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The IoU and the generalized IoU of boxes [N, 4] (left, top, right, bottom) pair by pair: GIoU is IoU minus
    the share of the smallest box enclosing both that neither covers, so that it still says how far apart two
    boxes are when they do not overlap."""
    inner = torch.cat([torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])], 1)
    outer = torch.cat([torch.minimum(a[:, :2], b[:, :2]), torch.maximum(a[:, 2:], b[:, 2:])], 1)
    intersection = area(inner)
    union = area(a) + area(b) - intersection
    iou = intersection / union.clamp(min=1e-9)
    enclosing = area(outer)
    return iou, iou - (enclosing - union) / enclosing.clamp(min=1e-9)


@dataclass
class LocalizationEvaluation:
    loss: float
    logits: torch.Tensor  # [N, K] class scores, on the CPU
    boxes: torch.Tensor  # [N, 4] predicted left, top, right, bottom, fractions of the side
    labels: torch.Tensor  # [N, 5] true class, left, top, right, bottom

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @property
    def classes(self) -> torch.Tensor:
        return self.labels[:, 0].long()

    @property
    def iou(self) -> torch.Tensor:
        """Each image's IoU of the predicted box with the true one."""
        return iou_and_giou(self.boxes, self.labels[:, 1:])[0]

    @property
    def localized(self) -> torch.Tensor:
        """Each image: right class and IoU >= 0.5."""
        return (self.predictions == self.classes) & (self.iou >= LOCALIZED)

    @property
    def accuracy(self) -> float:
        """Class accuracy (what every task records as test_acc)."""
        return (self.predictions == self.classes).float().mean().item() if len(self.labels) else 0.0

    @property
    def mean_iou(self) -> float:
        return self.iou.mean().item() if len(self.labels) else 0.0

    @property
    def localization_accuracy(self) -> float:
        return self.localized.float().mean().item() if len(self.labels) else 0.0

    def per_class(self, num_classes: int) -> list[tuple[int, float, float, float]]:
        """(images, class accuracy, mean IoU, localization accuracy) of each true class's images."""
        rows, right, iou, localized = [], self.predictions == self.classes, self.iou, self.localized
        for c in range(num_classes):
            mine = self.classes == c
            means = [values[mine].float().mean().item() if mine.any() else float("nan")
                     for values in (right, iou, localized)]
            rows.append((int(mine.sum()), *means))
        return rows


def localization_loss(output: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss summed over a batch: each image's cross-entropy of its class, plus the L1 distance (of centre and
    size) and the GIoU loss of its box."""
    output, target = output.float(), target.float()
    classes = F.cross_entropy(output[:, :-4], target[:, 0].long(), reduction="sum", label_smoothing=label_smoothing)
    box, truth = output[:, -4:], target[:, 1:]
    giou = iou_and_giou(corners(box), truth)[1]
    return classes + (L1_WEIGHT * (box - centred(truth)).abs().sum(1) + GIOU_WEIGHT * (1 - giou)).sum()


def evaluate_localization(logits_fn, data, batch_size: int = 1000) -> LocalizationEvaluation:
    scores, boxes, loss = [], [], 0.0
    for x, y in data.batches(batch_size):
        output = logits_fn(x).float().cpu()
        y = y.cpu()
        loss += localization_loss(output, y).item()
        scores.append(output[:, :-4])
        boxes.append(corners(output[:, -4:]))
    k = data.info.num_classes
    labels = data.labels.cpu().float()
    return LocalizationEvaluation(loss / max(1, len(labels)), torch.cat(scores) if scores else torch.empty(0, k),
                                  torch.cat(boxes) if boxes else torch.empty(0, 4), labels)


def in_pixels(box, size: tuple[int, int]) -> list[float]:
    """A box of fractions (left, top, right, bottom) in pixels of a height x width image, to a tenth."""
    height, width = size
    return [round(float(v) * side, 1) for v, side in zip(box, (width, height, width, height))]


class Localization(Task):
    name = "localization"
    dataset = "mnist-boxes"
    metric = Metric("test_loc_acc", "test localization accuracy", "test loc acc", "{:.2%}")
    columns = (Metric("test_box_iou", "test mean box IoU", "test box IoU", "{:.4f}"), metric)
    accuracy_words = "class acc"
    engines = ("torch",)
    augments = False
    labels = "boxes"
    output_names = ("logits", "box")
    refusals = {
        ENSEMBLE: "--tta and ensembles average class probabilities; a localization run's boxes would not follow",
        MODEL_FILE: "--model takes classifiers; this dataset's labels are boxes",
        "mistakes": "the worst mistakes, with their boxes, are in its report (`cnnlab report`)",
    }

    def check(self, config) -> None:
        super().check(config)
        if config.class_weights != "none" or config.labels_per_class is not None:
            raise ConfigError(f"--class-weights, --labels-per-class: a {self.name} run weighs and draws its images "
                              "as they come")

    def loss(self, output, target, class_weights=None, label_smoothing=0.0):
        return localization_loss(output, target, label_smoothing)

    def correct(self, output, target):
        return (output[:, :-4].argmax(1) == target[:, 0].long()).sum()

    def evaluate(self, logits_fn, data, batch_size):
        return evaluate_localization(logits_fn, data, batch_size)

    def metrics(self, evaluation):
        return {"test_box_iou": evaluation.mean_iou, "test_loc_acc": evaluation.localization_accuracy}

    def headline(self, evaluation, short=False):
        if short:
            return f"loc {evaluation.localization_accuracy:.2%}"
        return (f"test loc acc {evaluation.localization_accuracy:.2%}  box IoU {evaluation.mean_iou:.3f}  "
                f"class acc {evaluation.accuracy:.2%}")

    def summary(self, evaluation):
        return (f"localization accuracy **{evaluation.localization_accuracy:.2%}** (the right class and IoU >= "
                f"{LOCALIZED}), mean box IoU **{evaluation.mean_iou:.4f}**, class accuracy {evaluation.accuracy:.2%}, "
                f"loss {evaluation.loss:.4f}")

    def tables(self, evaluation, classes):
        rows = [[name, f"{count:,}", f"{accuracy:.2%}", f"{iou:.4f}", f"{localized:.2%}"]
                for name, (count, accuracy, iou, localized) in zip(classes, evaluation.per_class(len(classes)))]
        return [Table(("class", "images", "class acc", "mean IoU", "localized"), rows)]

    def per_class(self, evaluation, classes):
        return {name: {"images": count, "accuracy": accuracy, "mean_iou": iou, "localized": localized}
                for name, (count, accuracy, iou, localized) in zip(classes, evaluation.per_class(len(classes)))}

    def confusion(self, evaluation, num_classes):
        return confusion_matrix(evaluation.predictions, evaluation.classes, num_classes)

    def evaluation_json(self, evaluation, classes):
        return {"images": len(evaluation.labels), "localization_accuracy": evaluation.localization_accuracy,
                "mean_iou": evaluation.mean_iou, "accuracy": evaluation.accuracy, "loss": evaluation.loss,
                "iou_threshold": LOCALIZED, "per_class": self.per_class(evaluation, classes)}

    def evaluation_figure(self, data, evaluation, path):
        plot_boxes(data.images[:, 0].cpu().numpy(), evaluation, data.info.classes, path)

    def sections(self, history, evaluated, title):
        """The curves (or the numbers measured now), the localization of each class, test images with their
        predicted and true boxes, and the worst mistakes."""
        def mistakes(path):
            data, evaluation = evaluated()
            plot_mistakes(data.images[:, 0].cpu().numpy(), evaluation, data.info.classes, path)

        data, evaluation = evaluated()
        measured = f"On {len(data):,} test {self.example}s: {self.summary(evaluation)}."
        return [*curves_section(self, history, title),
                Section("Localization per class", (measured, *self.tables(evaluation, data.info.classes))),
                Section("Test images", (Figure("boxes.png", "test images with their boxes",
                                               lambda path: self.evaluation_figure(data, evaluation, path)),)),
                Section("Mistakes", (Figure("mistakes.png", "mistakes", mistakes),))]

    def prepare(self, source, info, shape, name=None, max_side=None):
        """A user's image of a digit at its own size (a light background inverted), fitted into the canvas."""
        return fit_scene(load_scene(source, name, max_side), *shape[1:])

    def class_scores(self, output):
        return output[:, :-4]

    def split_outputs(self, output):
        return output[:, :-4], output[:, -4:]

    def output_shape(self, batch, classes, height, width):
        return (batch, classes + 4)

    def predict(self, outputs, info, size):
        rows = []
        for output in outputs.float():
            probabilities = output[:-4].softmax(0)
            rows.append({"class": info.classes[int(probabilities.argmax())],
                         "box": in_pixels(corners(output[-4:]), size),
                         "probabilities": {c: round(float(p), 6) for c, p in zip(info.classes, probabilities)}})
        return rows

    def prediction_line(self, row, top):
        left, top_edge, right, bottom = row["box"]
        return (f"{row['class']} in the box ({left:g}, {top_edge:g})-({right:g}, {bottom:g})   "
                f"({ranked(row['probabilities'], top)})")

    def prediction_picture(self, image, output, info, stem):
        path = stem.with_name(f"{stem.name}_box.png")
        said = info.classes[int(output[:-4].argmax())]
        plot_prediction(image, corners(output[-4:].float()).tolist(), said, stem.name, path)
        return path

    def explorer(self, output, info):
        """The class probabilities and the predicted box: [left, top, right, bottom] as fractions of the input's
        width and height."""
        probabilities = output[:-4].softmax(0)
        return {"probabilities": [float(p) for p in probabilities],
                "prediction": info.classes[int(probabilities.argmax())],
                "box": [float(v) for v in corners(output[-4:])]}

    def label_json(self, label):
        return {"class": int(label[0]), "box": [float(v) for v in label[1:]]}

    def targets(self, info):
        return (*info.classes, *BOX)

    def verdict(self, output, info):
        probabilities = output[:-4].softmax(0)
        top = int(probabilities.argmax())
        cx, cy, w, h = output[-4:].tolist()
        return top, (f"predicted {info.classes[top]} ({float(probabilities[top]):.0%}) in a box centred at "
                     f"({cx:.0%}, {cy:.0%}), {w:.0%} x {h:.0%} of the image")

    def question(self, info, target):
        names = self.targets(info)
        return f"why {names[target]}?" if target < info.num_classes else f"what sets the {names[target]}?"

    def label_target(self, label):
        return int(label[0])

    def samples(self, labels, count):
        return first_of_each_class(np.asarray(labels)[:, 0], count)

    def caption(self, info, labels, index):
        return f"label {info.classes[int(labels[index][0])]}, test {self.example} {index}"

