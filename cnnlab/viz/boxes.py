"""Figures of a localization: images with the predicted box (and the true one), and the worst mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.grid import labelled_grid
from cnnlab.viz.training import _save

PREDICTED, TRUE = "#ff3b30", "#34c759"  # red and green: the predicted box over the true one
COLUMNS = 8


def boxes_figure(images, boxes, titles: list[str], truth=None, heading: str = "", colours=None):
    """Images ([N, H, W] uint8) each with its predicted box (solid red) and, given `truth` (true boxes [N, 4]),
    the true one (dashed green); boxes are fractions (left, top, right, bottom). `titles` say what each shows, in
    its colour from `colours` (default black). One picture (cnnlab.viz.grid)."""
    images = [np.asarray(image) for image in images]
    fig, ax, corners = labelled_grid(images, titles, cols=min(COLUMNS, max(1, len(images))), cell_inches=1.6,
                                     colours=colours, heading=heading, footer_inches=0.3)
    for index, ((left, top), image) in enumerate(zip(corners, images)):
        height, width = image.shape
        marks = [(boxes[index], PREDICTED, "-")] + ([(truth[index], TRUE, "--")] if truth is not None else [])
        for box, colour, style in reversed(marks):  # the true box first, the predicted one over it
            x0, y0, x1, y1 = (float(v) for v in box)
            ax.add_patch(Rectangle((left + x0 * width, top + y0 * height), (x1 - x0) * width, (y1 - y0) * height,
                                   fill=False, lw=1.6, edgecolor=colour, ls=style))
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=PREDICTED, label="predicted box")]
    if truth is not None:
        handles.append(Rectangle((0, 0), 1, 1, fill=False, edgecolor=TRUE, ls="--", label="true box"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def _evaluated(images: np.ndarray, evaluation, classes: tuple[str, ...], order: list[int], heading: str):
    """Test images `order` picks, with both boxes, titled with the true and predicted class and the IoU (red: not
    localized)."""
    return boxes_figure(images[order], evaluation.boxes[order],
                        [f"true {classes[int(evaluation.classes[i])]}, pred {classes[int(evaluation.predictions[i])]}"
                         f"\nIoU {float(evaluation.iou[i]):.2f}" for i in order], evaluation.labels[order, 1:], heading,
                        ["black" if bool(evaluation.localized[i]) else "firebrick" for i in order])


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
