"""Figures of a segmentation run: sample scenes (input | truth | prediction | errors), IoU per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from cnnlab.viz.grid import labelled_grid
from cnnlab.viz.training import _save, epoch_axis

# Background black, then one colour per digit class, chosen so that every pair of classes and the error map's
# two marks (red = wrong, the dimmed grey input = right) differ by at least 27 CIELAB units (ΔE76): tab10 without
# its red and grey (they were the error and correct marks), with gold, lime, salmon and light blue.
PALETTE = np.array([to_rgb(c) for c in ("black", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#e377c2", "#17becf",
                                        "#f3c300", "#80ff4d", "#f99379", "#a1caf1")])
ERROR = np.array([1.0, 0.0, 0.0])
CORRECT = np.array([0.35, 0.35, 0.35])  # the brightest a correct pixel gets: ink dimmed to 35%


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class map [H, W] -> RGB [H, W, 3] with the class palette."""
    return PALETTE[labels]


def error_map(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The input dimmed to gray with every wrongly labelled pixel in red."""
    rgb = image[..., None] / 255 * CORRECT
    rgb[truth != predicted] = ERROR
    return rgb


def legend_handles(classes: tuple[str, ...], with_errors: bool) -> list[Patch]:
    """One swatch per class in palette order, then the error map's marks."""
    handles = [Patch(facecolor=PALETTE[i], edgecolor="0.5", label=name) for i, name in enumerate(classes)]
    if with_errors:
        handles += [Patch(facecolor=ERROR, label="error"), Patch(facecolor=CORRECT, label="correct (input dimmed)")]
    return handles


def scenes_figure(images, truth, predicted, classes: tuple[str, ...], count: int = 6,
                  titles: list[str] | None = None):
    """Rows of input | ground truth | prediction | error map for the first `count` scenes, with a class legend,
    drawn as one picture (cnnlab.viz.grid). Images are uint8 [H, W], label maps integer [H, W] (tensors or arrays);
    without `truth` (a user's images), rows are input | prediction."""
    count = min(count, len(images))
    tiles, labels = [], []
    for row in range(count):
        image, pred = np.asarray(images[row]), np.asarray(predicted[row])
        tiles.append(image)
        labels.append(titles[row] if titles else "input")
        if truth is None:
            tiles.append(colorize(pred))
            labels.append("prediction")
        else:
            true = np.asarray(truth[row])
            tiles += [colorize(true), colorize(pred), error_map(image, true, pred)]
            labels += ["ground truth", "prediction", f"errors: {int((true != pred).sum())} px"]
    width = max(np.shape(image)[1] / np.shape(image)[0] for image in images[:count]) * 1.75
    fig, _, _ = labelled_grid(tiles, labels, cols=2 if truth is None else 4, cell_inches=width, footer_inches=0.3)
    handles = legend_handles(classes, truth is not None)
    # one row: in a grid of swatches, "background" above "5" read as a pair whichever way matplotlib fills it
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
               handlelength=1.0, handletextpad=0.4, columnspacing=0.9)
    return fig


def plot_scenes(images, truth, predicted, classes: tuple[str, ...], path: Path, count: int = 6,
                titles: list[str] | None = None) -> None:
    _save(scenes_figure(images, truth, predicted, classes, count, titles), path)


def plot_iou(history: list[dict], evaluation, classes: tuple[str, ...], path: Path) -> None:
    """Left: IoU of each class after the last epoch. Right: mean IoU after each epoch."""
    iou = evaluation.iou.numpy()
    fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    ax_bar.bar(range(len(classes)), iou, color=PALETTE[: len(classes)], edgecolor="0.3")
    for i, value in enumerate(iou):
        ax_bar.text(i, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    ax_bar.axhline(evaluation.mean_iou, color="0.4", ls="--", lw=1)
    ax_bar.set_xticks(range(len(classes)), ["bg" if c == "background" else c for c in classes])
    ax_bar.set(ylim=(0, 1.08), ylabel="IoU", title=f"Test IoU per class (mean {evaluation.mean_iou:.3f}, dashed)")
    epochs = [row["epoch"] for row in history]
    ax_curve.plot(epochs, [row["test_miou"] for row in history], "s-")
    ax_curve.set(ylabel="mean IoU (background included)", title="Test mean IoU")
    epoch_axis(ax_curve, max(epochs))
    for ax in (ax_bar, ax_curve):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    _save(fig, path)
