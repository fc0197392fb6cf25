"""Figures of a localization: images with the predicted box (and the true one), and the worst mistakes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.training import _save

PREDICTED, TRUE = "#ff3b30", "#34c759"  # red and green: the predicted box over the true one
COLUMNS = 8


def _box(ax, box, side: tuple[int, int], colour: str, dashed: bool = False) -> None:
    """A box of fractions (left, top, right, bottom) drawn on an image of `side` (height, width) pixels."""
    height, width = side
    left, top, right, bottom = (float(v) for v in box)
    ax.add_patch(Rectangle((left * width - 0.5, top * height - 0.5), (right - left) * width, (bottom - top) * height,
                           fill=False, lw=1.6, edgecolor=colour, ls="--" if dashed else "-"))


def boxes_figure(images, boxes, titles: list[str], truth=None, heading: str = ""):
    """Images ([N, H, W] uint8) each with its predicted box (solid red) and, given `truth` (true boxes [N, 4]),
    the true one (dashed green); boxes are fractions (left, top, right, bottom). `titles` say what each shows."""
    rows = max(1, -(-len(images) // COLUMNS))
    columns = min(COLUMNS, max(1, len(images)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 2.1 + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, ax in zip(range(len(images)), axes.flat):
        image = np.asarray(images[index])
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if truth is not None:
            _box(ax, truth[index], image.shape, TRUE, dashed=True)
        _box(ax, boxes[index], image.shape, PREDICTED)
        ax.set_title(titles[index], fontsize=8)
    if not len(images):
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=PREDICTED, label="predicted box")]
    if truth is not None:
        handles.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor=TRUE, ls="--", label="true box"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if heading:
        fig.suptitle(heading, fontsize=10)
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))
    return fig


def _evaluated(images: np.ndarray, evaluation, classes: tuple[str, ...], order: list[int], heading: str):
    """Test images `order` picks, with both boxes, titled with the true and predicted class and the IoU (red: not
    localized)."""
    fig = boxes_figure(images[order], evaluation.boxes[order],
                       [f"true {classes[int(evaluation.classes[i])]}, pred {classes[int(evaluation.predictions[i])]}"
                        f"\nIoU {float(evaluation.iou[i]):.2f}" for i in order], evaluation.labels[order, 1:], heading)
    for ax, i in zip(fig.axes, order):
        ax.title.set_color("black" if bool(evaluation.localized[i]) else "firebrick")
    return fig


def plot_boxes(images: np.ndarray, evaluation, classes: tuple[str, ...], path: Path, count: int = 16) -> None:
    """The first `count` test images with their boxes (cnnlab.tasks.localization.LocalizationEvaluation)."""
    heading = (f"Test images: localization accuracy {evaluation.localization_accuracy:.2%} (right class, IoU >= 0.5),"
               f" mean IoU {evaluation.mean_iou:.3f}")
    _save(_evaluated(images, evaluation, classes, list(range(min(count, len(images)))), heading), path)


def plot_mistakes(images: np.ndarray, evaluation, classes: tuple[str, ...], path: Path, count: int = 16) -> None:
    """The test images not localized (a wrong class, or IoU below 0.5), the lowest IoU first."""
    missed = (~evaluation.localized).nonzero().flatten()
    order = missed[evaluation.iou[missed].argsort()][:count].tolist()
    heading = f"Mistakes: {len(missed)} of {len(evaluation.labels)} test images not localized, the lowest IoU first"
    _save(_evaluated(images, evaluation, classes, order, heading), path)


def plot_prediction(image: np.ndarray, box, said: str, title: str, path: Path) -> None:
    """One image with the box the model found, as `cnnlab predict --out-dir` writes it."""
    _save(boxes_figure(image[None], [box], [f"{title}\npredicted {said}"]), path)
