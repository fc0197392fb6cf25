"""Segmentation: a class for every pixel. The model outputs class scores [N, K, H, W]; a label is a class map
[H, W] (0 is background).

Training is classification's, pixel by pixel: `F.cross_entropy` takes [N, K, H, W] scores with [N, H, W]
labels, and an image's loss is the mean over its pixels. Evaluated by the IoU of each class (from one confusion
matrix of pixels), their mean, and the pixel accuracy.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.preprocess import load_scene
from cnnlab.tasks.classification import confusion_matrix
from cnnlab.tasks.parts import Figure, Section, Table, curves_section
from cnnlab.tasks.task import DATA, ENSEMBLE, MODEL_FILE, TOP_ACTIVATIONS, Metric, Task
from cnnlab.viz.segmentation_figures import plot_iou, plot_scenes


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each class: TP / (TP + FP + FN). NaN for a class that is neither in the
    labels nor in the predictions (no evidence either way), so that it drops out of the mean."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.nan)


@dataclass
class SegmentationEvaluation:
    loss: float  # mean cross-entropy per pixel
    confusion: torch.Tensor  # [K, K] pixel counts, [true, predicted]
    predictions: torch.Tensor  # uint8 [N, H, W] predicted class of every pixel, on the CPU

    @property
    def accuracy(self) -> float:
        """Pixel accuracy: the share of all pixels (background included) whose class is right."""
        return (self.confusion.diag().sum() / self.confusion.sum().clamp(min=1)).item()

    @property
    def iou(self) -> torch.Tensor:
        return iou_per_class(self.confusion)

    @property
    def mean_iou(self) -> float:
        """The mean over all classes, background included (of those present in labels or predictions)."""
        return self.iou.nanmean().item()


def evaluate_segmentation(logits_fn, data, batch_size: int = 100) -> SegmentationEvaluation:
    k = data.info.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    loss, predictions = 0.0, []
    for x, y in data.batches(batch_size):
        logits = logits_fn(x).float().cpu()
        y = y.cpu()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        predicted = logits.argmax(1)
        confusion += confusion_matrix(predicted, y, k)
        predictions.append(predicted.to(torch.uint8))
    pixels = max(1, data.labels.numel())
    shape = (0, *data.labels.shape[1:])
    return SegmentationEvaluation(loss / pixels, confusion, torch.cat(predictions) if predictions else
                                  torch.empty(shape, dtype=torch.uint8))


def found(class_map: torch.Tensor, classes: tuple[str, ...]) -> list[tuple[int, int]]:
    """(class, pixels) of every class other than background in a class map, most pixels first."""
    counts = torch.bincount(class_map.flatten().long(), minlength=len(classes))
    return [(c, int(counts[c])) for c in counts.argsort(descending=True).tolist() if c and counts[c]]


class Segmentation(Task):
    name = "segmentation"
    dataset = "mnist-scenes"
    metric = Metric("test_miou", "test mean IoU", "test mean IoU", "{:.4f}", " mIoU")
    columns = (metric,)
    accuracy_words = "pixel acc"
    engines = ("torch",)
    augments = False
    labels = "pixel labels"
    example = "scene"
    any_size = True  # fully convolutional: a scene at its own size
    tables_after_training = True
    refusals = {
        "occlusion": "occlusion maps a classifier's probability, and this run labels every pixel "
                     "(`cnnlab show saliency` explains a class's region)",
        "deconv": "deconvnet projections are drawn for classifiers; this run segments",
        ENSEMBLE: "--tta and ensembles average a classifier's probabilities; this run labels every pixel",
        DATA: "`cnnlab data` describes classification datasets; this one labels every pixel",
        MODEL_FILE: "--model takes classifiers; this dataset labels every pixel",
        TOP_ACTIVATIONS: "top activations search a classifier's test images, and this model labels every pixel",
        "mistakes": "a classifier's mistakes are drawn; a segmentation's errors are in `cnnlab evaluate RUN "
                    "--figure`",
    }

    def loss(self, output, target, class_weights=None, label_smoothing=0.0):
        pixels = target[0].numel()  # an image's loss is its pixels' mean
        return F.cross_entropy(output.float(), target, class_weights, reduction="sum",
                               label_smoothing=label_smoothing) / pixels

    def correct(self, output, target):
        return (output.argmax(1) == target).sum() / target[0].numel()

    def evaluate(self, logits_fn, data, batch_size):
        return evaluate_segmentation(logits_fn, data, batch_size)

    def metrics(self, evaluation):
        return {"test_miou": evaluation.mean_iou}

    def headline(self, evaluation, short=False):
        if short:
            return f"mIoU {evaluation.mean_iou:.3f}"
        return f"test mIoU {evaluation.mean_iou:.4f}  pixel acc {evaluation.accuracy:.2%}"

    def summary(self, evaluation):
        return (f"mean IoU **{evaluation.mean_iou:.4f}** (background included), pixel accuracy "
                f"**{evaluation.accuracy:.2%}**")

    def tables(self, evaluation, classes):
        # a class absent from both labels and predictions has no IoU (NaN): a dash, as the mean leaves it out
        rows = [[name, f"{pixels:,}", "—" if np.isnan(iou) else f"{iou:.4f}"]
                for name, pixels, iou in zip(classes, evaluation.confusion.sum(1).tolist(), evaluation.iou.tolist())]
        return [Table(("class", "pixels", "IoU"), rows)]

    def per_class(self, evaluation, classes):
        return dict(zip(classes, evaluation.iou.tolist()))

    def confusion(self, evaluation, num_classes):
        return evaluation.confusion

    def evaluation_json(self, evaluation, classes):
        return {"scenes": len(evaluation.predictions), "pixel_accuracy": evaluation.accuracy,
                "mean_iou": evaluation.mean_iou, "mean_iou_includes_background": True, "loss": evaluation.loss,
                "iou": dict(zip(classes, evaluation.iou.tolist()))}

    def evaluation_figure(self, data, evaluation, path):
        plot_scenes(data.images[:, 0].cpu().numpy(), data.labels.cpu().numpy(), evaluation.predictions.numpy(),
                    data.info.classes, path)

    def sections(self, history, evaluated, title):
        """The IoU of every class on the test scenes (evaluated now: the table needs the numbers, not only a
        figure), the IoU figure, the curves and the sample scenes."""
        data, evaluation = evaluated()
        classes = data.info.classes
        iou = [[name, "—" if np.isnan(value) else f"{value:.3f}"] for name, value in zip(classes, evaluation.iou.tolist())]
        sections = [Section("IoU per class", (f"On {len(data):,} test {self.example}s: {self.summary(evaluation)}.",
                                              Table(("class", "IoU"), iou)))]
        if history:
            sections[0] = Section("IoU per class", (*sections[0].parts, Figure(
                "iou.png", "IoU per class", lambda path: plot_iou(history, evaluation, classes, path))))
        return [*sections, *curves_section(self, history, f"{title} (accuracy: of pixels)"),
                Section("Test scenes", (Figure("scenes.png", "scenes",
                                               lambda path: self.evaluation_figure(data, evaluation, path)),))]

    def prepare(self, source, info, shape, name=None, max_side=None):
        return load_scene(source, name, max_side)  # at its own size: the nets are fully convolutional

    def output_shape(self, batch, classes, height, width):
        return (batch, classes, height, width)

    def predict(self, outputs, info, size):
        return [{"pixels_per_class": {info.classes[c]: pixels for c, pixels in found(scores.argmax(0), info.classes)}}
                for scores in outputs]

    def prediction_line(self, row, top):
        return ", ".join(f"{name} ({pixels} px)" for name, pixels in row["pixels_per_class"].items()) or "no digits"

    def prediction_picture(self, image, output, info, stem):
        path = stem.with_name(f"{stem.name}_segmented.png")
        plot_scenes([image], None, [output.argmax(0).numpy()], info.classes, path, titles=[stem.name])
        return path

    def explorer(self, output, info):
        """The class of every pixel (the highest score), how many pixels each class has, and the scores
        themselves, exactly (base64 float32, little-endian, class by class), for each class's score map."""
        class_map = output.argmax(0)
        data = output.float().contiguous().numpy().astype("<f4").tobytes()
        pixels = torch.bincount(class_map.flatten(), minlength=len(output))
        return {"class_map": class_map.tolist(), "pixels": pixels.tolist(),
                "scores": {"shape": list(output.shape), "data": base64.b64encode(data).decode(),
                           "min": float(output.min()), "max": float(output.max())}}

    def label_json(self, label):
        return label.tolist()

    def targets(self, info):
        return tuple(info.classes)

    def verdict(self, output, info):
        """The class with most pixels other than background, and the classes found."""
        classes = found(output.argmax(0), info.classes)
        if classes:
            said = ", ".join(f"{info.classes[c]} ({pixels} px)" for c, pixels in classes[:4])
            return classes[0][0], f"found {said}"
        # No pixel won by a digit: explain the digit the model finds likeliest somewhere, rather than background.
        likeliest = int(output.softmax(0)[1:].amax((1, 2)).argmax()) + 1
        return likeliest, f"found no digits (the likeliest: {info.classes[likeliest]})"

    def question(self, info, target):
        return f"where is {info.classes[target]}?"

    def samples(self, labels, count):
        return list(range(min(count, len(labels))))

    def caption(self, info, labels, index):
        return f"test {self.example} {index}"
