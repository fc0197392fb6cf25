"""Learned convolution kernels as image grids, next to the hand-crafted filters of `cnnlab.viz.handcrafted`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.pictures import mosaic, mosaic_places


def _grid(count: int, max_cols: int) -> tuple[int, int]:
    cols = min(count, max_cols)
    return -(-count // cols), cols


def plot_kernels(layer_name: str, conv: nn.Conv2d, hand_crafted: dict[str, np.ndarray] | None = None,
                 max_filters: int = 64, max_inputs: int = 16, title: str = ""):
    """A figure of `conv`'s kernels: its first `max_filters` filters (all of them in most layers), and of a deeper
    layer's filters the first `max_inputs` input channels; the title says when it shows fewer than all.

    A first layer (1 or 3 input channels) shows each filter as one small image; deeper layers show one column per
    filter and one row per input channel. All learned kernels share one colour scale centred on zero, so
    that colour means the same weight everywhere and white is 0. Hand-crafted filters, if given, get a row of
    their own beside a first layer, each on its own centred scale with its values written in (a blur's 1/9 and
    an edge detector's 8 share no useful scale).
    """
    weights = conv.weight.detach().cpu().float().numpy()  # [out, in, k, k]
    out_ch, in_ch, kh, kw = weights.shape
    shown = weights[:max_filters, :max_inputs]
    head = title or f"Learned kernels of {layer_name} ({out_ch}×{in_ch}×{kh}×{kw})"
    if in_ch not in (1, 3):
        return _deep_layer(shown, out_ch, in_ch, head)
    return _first_layer(shown, out_ch, in_ch, head, hand_crafted or {})


def _deep_layer(shown: np.ndarray, out_ch: int, in_ch: int, head: str):
    """Column j is filter j, its slices for input channels 0, 1, ... top to bottom, drawn as one mosaic image (a
    layer of 64 filters of 64 channels is 4,096 kernels: one axes each took seconds to draw); the figure is sized to
    its grid (fixed margins in inches), so that no band is left empty."""
    filters, inputs, kh, kw = shown.shape
    limit = float(np.abs(shown).max()) or 1.0
    cell = 0.42 if filters <= 32 else 0.3
    left, right, top, bottom = 0.5, 1.3, 0.75, 0.15  # inches: row labels, colour bar, title and column labels
    width, height = filters * cell + left + right, inputs * cell + top + bottom
    gap = max(1, round(0.25 * max(kh, kw)))  # between kernels, in kernel pixels, shown as the page's white
    grid = mosaic(shown.transpose(1, 0, 2, 3).reshape(inputs * filters, kh, kw), filters, gap)  # row i: slices i
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height))
    colours = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    image = ax.imshow(grid, cmap=colours, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_frame_on(False)
    ax.tick_params(length=0, labelsize=6, pad=2, top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.set_xticks(np.arange(filters) * (kw + gap) + (kw - 1) / 2, [str(j) for j in range(filters)])
    ax.set_yticks(np.arange(inputs) * (kh + gap) + (kh - 1) / 2, [f"in {i}" for i in range(inputs)])
    capped = [f"the first {filters} of {out_ch} filters" if filters < out_ch else "",
              f"input channels 0–{inputs - 1} of {in_ch}" if inputs < in_ch else ""]
    what = f"columns: filters 0–{filters - 1}; rows: their input channels" + \
        "".join(f"; {c}" for c in capped if c)
    fig.suptitle(f"{head}\n{what}", fontsize=9, y=1 - 0.08 / height, va="top")
    colour_bar = fig.add_axes((1 - 1.0 / width, bottom / height, 0.12 / width, 1 - (top + bottom) / height))
    fig.colorbar(image, cax=colour_bar, label="weight (shared scale, white = 0)")
    return fig


def _first_layer(shown: np.ndarray, out_ch: int, in_ch: int, head: str, hand_crafted: dict[str, np.ndarray]):
    """Each filter as one small image (grey: RGB), 8 to a row, drawn as one `mosaic`, with the hand-crafted
    filters below."""
    limit = float(np.abs(shown).max()) or 1.0
    count, _, kh, kw = shown.shape
    rows, cols = _grid(count, 8)
    hand = len(hand_crafted)
    width = max(cols * 1.0 + 2.2, hand * 1.25 + 0.4)
    band, learned_h, hand_h = 0.6, rows * 1.0 * kh / kw + 0.3, 1.9 if hand else 0.0  # inches
    height = band + learned_h + hand_h + 0.3
    fig = plt.figure(figsize=(width, height))
    gap = max(1, round(0.4 * max(kh, kw)))  # room for the labels between rows
    box = (0.1 / width, (hand_h + 0.3) / height, (cols - 0.2) / width, (learned_h - 0.3) / height)
    ax = fig.add_axes(box)
    ax.set_axis_off()
    if in_ch == 1:
        image = ax.imshow(mosaic(shown[:, 0], cols, gap), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                          interpolation="nearest")
        bar = fig.add_axes(((cols + 0.4) / width, box[1] + box[3] * 0.1, 0.12 / width, box[3] * 0.8))
        fig.colorbar(image, cax=bar, label="weight (shared scale, white = 0)")
    else:  # RGB: map [-limit, limit] to [0, 1] so grey is 0 in every channel
        ax.imshow(mosaic(shown.transpose(0, 2, 3, 1) / (2 * limit) + 0.5, cols, gap), aspect="auto",
                  interpolation="nearest")
    for index in range(count):
        ax.annotate(f"filter {index}", mosaic_places(index, cols, kh, kw, gap), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=7, annotation_clip=False)
    what = f"all {out_ch} filters" if count == out_ch else f"the first {count} of {out_ch} filters"
    fig.suptitle(f"{head}: {what}", fontsize=10, y=1 - 0.1 / height, va="top")
    if hand:  # the bottom band, laid out by the subfigure
        _hand_crafted_row(fig.subfigures(2, 1, height_ratios=[height - hand_h, hand_h])[1], hand_crafted)
    return fig


def _hand_crafted_row(subfig, hand_crafted: dict[str, np.ndarray]) -> None:
    axes = subfig.subplots(1, len(hand_crafted), squeeze=False)[0]
    subfig.subplots_adjust(bottom=0.04, top=0.72)
    for ax, (name, kernel) in zip(axes, hand_crafted.items()):
        k_limit = float(np.abs(kernel).max()) or 1.0
        ax.imshow(kernel, cmap="RdBu_r", vmin=-k_limit, vmax=k_limit)
        if kernel.shape[0] <= 5:
            for (i, j), value in np.ndenumerate(kernel):
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6,
                        color="white" if abs(value) > 0.6 * k_limit else "black")
        ax.set_title(name, fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
    subfig.suptitle("Hand-crafted filters (values written in; each on its own centred scale)", fontsize=10)
