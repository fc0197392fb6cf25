"""The figures of a training run: curves, confusion matrix, most confident mistakes (the tasks choose them)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.grid import labelled_grid


def _save(fig, path: Path) -> None:
    """Write `fig` as a PNG and free it. Every figure saved here lays itself out (tight_layout, or to the pixel),
    so the page is not cropped to what is drawn: that took one more drawing of the figure, at every training's end."""
    fig.savefig(path, dpi=120)
    plt.close(fig)


def epoch_axis(ax, last_epoch: int) -> None:
    """Epochs from 0 to `last_epoch` with whole-epoch ticks only: a one-epoch run's single point would otherwise get
    autoscaled ticks such as 0.95 ... 1.05."""
    ax.set_xlim(0, last_epoch * 1.03)
    ax.set_xticks(range(0, last_epoch + 1, max(1, -(-last_epoch // 10))))
    ax.set_xlabel("epoch")


def _train_loss_points(history: list[dict]) -> tuple[list[float], list[float], str]:
    """(x in epochs, training loss, label): every recorded step point where the Trainer wrote them, so that a
    short run still has a curve; one point per epoch for runs written before "step_loss" existed."""
    if all("step_loss" in row for row in history):
        points = [(row["epoch"] - 1 + step / row["steps"], loss) for row in history for step, loss in row["step_loss"]]
        return [x for x, _ in points], [loss for _, loss in points], "train (every 10 steps)"
    return [row["epoch"] for row in history], [row["train_loss"] for row in history], "train (epoch mean)"


def curves_figure(history: list[dict], title: str = ""):
    """Loss (training loss per step where recorded, test loss at each epoch's end) and accuracy per epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps_x, steps_loss, train_label = _train_loss_points(history)
    ax_loss.plot(steps_x, steps_loss, ".-" if len(steps_x) < 40 else "-", lw=1.2, label=train_label)
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", label="test (end of epoch)")
    ax_loss.set(ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train (during the epoch)")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "s-", label="test (end of epoch)")
    best = max(history, key=lambda r: r["test_acc"])
    ax_acc.annotate(f"best test {best['test_acc']:.2%}", (best["epoch"], 100 * best["test_acc"]),
                    textcoords="offset points", xytext=(-6, -18), ha="right", fontsize=9)
    ax_acc.set(ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        epoch_axis(ax, max(epochs))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    _save(curves_figure(history, title), path)


def confusion_figure(confusion: torch.Tensor, classes: tuple[str, ...]):
    """The confusion matrix: counts, shaded by the share of each true class."""
    counts = confusion.numpy()
    totals = counts.sum(1, keepdims=True).clip(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.6 + 0.55 * n))
    image = ax.imshow(counts / totals * 100, cmap="Blues", vmin=0, vmax=100)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                share = counts[i, j] / totals[i, 0]
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right" if max(map(len, classes)) > 2 else "center")
    ax.set_yticks(range(n), classes)
    accuracy = np.trace(counts) / max(1, counts.sum())
    ax.set(xlabel="predicted class", ylabel="true class", title=f"Confusion matrix (test accuracy {accuracy:.2%})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    fig.tight_layout()
    return fig


def plot_confusion(confusion: torch.Tensor, classes: tuple[str, ...], path: Path) -> None:
    _save(confusion_figure(confusion, classes), path)


def most_confident_mistakes(evaluation, count: int = 24) -> torch.Tensor:
    """The indices of the `count` images the model got wrong with the highest confidence, most confident first."""
    confidence, predicted = evaluation.logits.softmax(1).max(1)
    wrong = (predicted != evaluation.labels).nonzero().flatten()
    return wrong[confidence[wrong].argsort(descending=True)][:count]


def mistakes_figure(images, evaluation, classes: tuple[str, ...], count: int = 24):
    """The test images the model got wrong with the highest confidence, with true and predicted labels (`images`:
    uint8 [N, C, H, W], a tensor on any device or images read by index from disk), drawn as one picture
    (cnnlab.viz.grid)."""
    confidence, predicted = evaluation.logits.softmax(1).max(1)
    wrong = int((predicted != evaluation.labels).sum())
    order = most_confident_mistakes(evaluation, count).tolist()
    tiles = [torch.as_tensor(images[index]).cpu().permute(1, 2, 0).squeeze(-1).numpy() for index in order]  # HW(C)
    labels = [f"true {classes[evaluation.labels[index]]}\npred {classes[predicted[index]]} {confidence[index]:.0%}"
              for index in order]
    fig, _, _ = labelled_grid(tiles, labels, cols=8, cell_inches=1.35, colours=["firebrick"] * len(order),
                              heading=f"Most confident mistakes ({wrong} of {len(evaluation.labels)} test images "
                                      f"wrong)", empty="no mistakes")
    return fig


def plot_mistakes(images, evaluation, classes: tuple[str, ...], path: Path, count: int = 24) -> None:
    _save(mistakes_figure(images, evaluation, classes, count), path)
