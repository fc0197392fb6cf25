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


def boxes_figure(images: np.ndarray, evaluation, classes: tuple[str, ...], order, truth: bool = True,
                 titles: list[str] | None = None, heading: str = ""):
    """The images `order` picks ([N, H, W] uint8), each with its predicted box (solid red) and, with `truth`, its
    true box (dashed green); titled with the true and predicted class and the IoU."""
    order = list(order)
    rows = max(1, -(-len(order) // COLUMNS))
    columns = min(COLUMNS, max(1, len(order)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 2.1 + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    predicted, iou = evaluation.predictions, evaluation.iou if truth else None
    for ax, (slot, index) in zip(axes.flat, enumerate(order)):
        image = images[index]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if truth:
            _box(ax, evaluation.labels[index, 1:], image.shape, TRUE, dashed=True)
        _box(ax, evaluation.boxes[index], image.shape, PREDICTED)
        said = classes[int(predicted[index])]
        if truth:
            right = int(predicted[index]) == int(evaluation.classes[index])
            title = f"true {classes[int(evaluation.classes[index])]}, pred {said}\nIoU {float(iou[index]):.2f}"
            ax.set_title(title, fontsize=8, color="black" if right and iou[index] >= 0.5 else "firebrick")
        else:
            ax.set_title(f"{titles[slot] if titles else ''}\npredicted {said}", fontsize=8)
    if not order:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=PREDICTED, label="predicted box")]
    if truth:
        handles.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor=TRUE, ls="--", label="true box"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if heading:
        fig.suptitle(heading, fontsize=10)
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))
    return fig


def plot_boxes(images: np.ndarray, evaluation, classes: tuple[str, ...], path: Path, count: int = 16,
               truth: bool = True, titles: list[str] | None = None) -> None:
    """The first `count` images with their boxes."""
    heading = (f"Test images: localization accuracy {evaluation.localization_accuracy:.2%} (right class, IoU >= 0.5),"
               f" mean IoU {evaluation.mean_iou:.3f}") if truth else ""
    _save(boxes_figure(images, evaluation, classes, range(min(count, len(images))), truth, titles, heading), path)


def plot_mistakes(images: np.ndarray, evaluation, classes: tuple[str, ...], path: Path, count: int = 16) -> None:
    """The images not localized (a wrong class, or IoU below 0.5), the lowest IoU first."""
    missed = (~evaluation.localized).nonzero().flatten()
    order = missed[evaluation.iou[missed].argsort()][:count].tolist()
    heading = f"Mistakes: {len(missed)} of {len(evaluation.labels)} test images not localized, the lowest IoU first"
    _save(boxes_figure(images, evaluation, classes, order, True, None, heading), path)
