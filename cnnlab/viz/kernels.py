"""Learned convolution kernels as image grids, next to the hand-crafted filters of `cnnlab.viz.handcrafted`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)


def _grid(count: int, max_cols: int) -> tuple[int, int]:
    cols = min(count, max_cols)
    return -(-count // cols), cols


def plot_kernels(layer_name: str, conv: nn.Conv2d, hand_crafted: dict[str, np.ndarray] | None = None,
                 max_filters: int = 32, max_inputs: int = 16, title: str = ""):
    """A figure of `conv`'s kernels.

    A first layer (1 or 3 input channels) shows each filter as one small image; deeper layers show one row per
    filter and one column per input channel. All learned kernels share one colour scale centred on zero, so
    that colour means the same weight everywhere and white is 0. Hand-crafted filters, if given, get a row of
    their own beside a first layer, each on its own centred scale with its values written in (a blur's 1/9 and
    an edge detector's 8 share no useful scale).
    """
    weights = conv.weight.detach().cpu().float().numpy()  # [out, in, k, k]
    out_ch, in_ch, kh, kw = weights.shape
    per_input = in_ch not in (1, 3)
    # A deeper layer's grid grows with filters x inputs: half as many rows keeps it readable.
    shown = weights[:max_filters // 2 if per_input else max_filters, :max_inputs]
    limit = float(np.abs(shown).max()) or 1.0
    rows, cols = shown.shape[:2] if per_input else _grid(shown.shape[0], 8)
    # Hand-crafted filters act on an image, so they compare with a first layer only.
    hand = 0 if per_input else len(hand_crafted or ())
    cell = 0.6 if per_input else 1.0
    width = max(cols * cell + 2.2, hand * 1.25 + 0.4)
    learned_h, hand_h = rows * cell + 0.8, 2.4 if hand else 0.0
    fig = plt.figure(figsize=(width, learned_h + hand_h + 0.3))
    subfigs = fig.subfigures(2 if hand else 1, 1, height_ratios=[learned_h, hand_h] if hand else None,
                             squeeze=False)[:, 0]
    learned = subfigs[0]
    axes = learned.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_frame_on(False)
    image = None
    if per_input:
        for i in range(rows):
            for j in range(cols):
                image = axes[i, j].imshow(shown[i, j], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[i, 0].set_ylabel(f"{i}", rotation=0, ha="right", va="center", fontsize=7)
        for j in range(cols):
            axes[0, j].set_title(f"in {j}", fontsize=7)
        what = f"filters 0–{rows - 1} of {out_ch} (rows) × input channels 0–{cols - 1} of {in_ch} (columns)"
    else:
        for index, ax in enumerate(axes.flat[:shown.shape[0]]):
            if in_ch == 1:
                image = ax.imshow(shown[index, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
            else:  # RGB: map [-limit, limit] to [0, 1] so grey is 0 in every channel
                ax.imshow(shown[index].transpose(1, 2, 0) / (2 * limit) + 0.5)
            ax.set_title(f"filter {index}", fontsize=7)
        what = f"{shown.shape[0]} of {out_ch} filters"
    learned.suptitle(title or f"Learned kernels of {layer_name} ({out_ch}×{in_ch}×{kh}×{kw}): {what}", fontsize=10)
    if image is not None:
        learned.colorbar(image, ax=axes, shrink=0.8, label="weight (shared scale, white = 0)")
    if hand:
        hand_axes = subfigs[1].subplots(1, hand, squeeze=False)[0]
        for ax, (name, kernel) in zip(hand_axes, hand_crafted.items()):
            k_limit = float(np.abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-k_limit, vmax=k_limit)
            if kernel.shape[0] <= 5:
                for (i, j), value in np.ndenumerate(kernel):
                    ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if abs(value) > 0.6 * k_limit else "black")
            ax.set_title(name, fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
        subfigs[1].suptitle("Hand-crafted filters (values written in; each on its own centred scale)", fontsize=10)
    return fig
