"""Feature maps: what each conv/pool layer computes for one input, and the lecture's "random filters" slide."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LinearSegmentedColormap, Normalize

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.pictures import picture


# The web explorer's colours (cnnlab/web/static/app.js, colourFor): signed values fade from blue through white (0) to
# red; non-negative ones (ReLU and pooling outputs) are grey from black (0) to white, so maps look like MNIST.
SIGNED = LinearSegmentedColormap.from_list("explorer-signed", ["#2166ac", "white", "#c0392b"])
NON_NEGATIVE = "gray"


def layer_scale(output: torch.Tensor) -> tuple[str | LinearSegmentedColormap, Normalize]:
    """(colour map, scale) shared by all maps of one layer: centred on 0 if any value is negative, else 0..max."""
    low, high = float(output.min()), float(output.max())
    if low < 0:
        limit = max(-low, high)
        return SIGNED, Normalize(-limit, limit)
    return NON_NEGATIVE, Normalize(0, high or 1.0)


def _strip(row, output: torch.Tensor, max_maps: int) -> str:
    """1x1 maps (global pooling) are single numbers: one strip of values."""
    channels = output.shape[0]
    shown = min(channels, 8 * max_maps)
    strip = row.subplots(1, 1)
    cmap, norm = layer_scale(output[:shown])
    image = strip.imshow(output[:shown, 0, 0].numpy()[None], cmap=cmap, norm=norm, aspect="auto")
    strip.set_yticks([])
    strip.set_xlabel("channel", fontsize=8)
    row.colorbar(image, ax=strip, fraction=0.03, pad=0.01)
    return f" (first {shown} values)" if shown < channels else ""


def _map_row(row, output: torch.Tensor, cols: int, max_maps: int) -> str:
    """The first `max_maps` maps of a layer, numbered, on the layer's shared scale, with its colour bar."""
    channels = output.shape[0]
    shown = min(channels, max_maps)
    cmap, norm = layer_scale(output[:shown])
    axes = row.subplots(1, cols, squeeze=False)[0]
    for index, ax in enumerate(axes):
        ax.axis("off")
        if index < shown:
            image = ax.imshow(output[index].numpy(), cmap=cmap, norm=norm)
            ax.set_title(str(index), fontsize=7, pad=2)
    row.colorbar(image, ax=axes.tolist(), fraction=0.025, pad=0.01, aspect=8)
    return f" (maps 0–{shown - 1} of {channels})" if shown < channels else ""


def plot_feature_maps(image: np.ndarray, maps: list[tuple[str, torch.Tensor]], max_maps: int = 16,
                      title: str = ""):
    """One row per layer: its first `max_maps` channels, numbered, labelled with the layer's name and output shape.
    The maps of a layer share one colour scale (its colour bar), in the web explorer's colours: blue < 0 < red
    where the layer's values are signed, black (0) to white where all are >= 0. The input comes first; 1x1 maps
    are one strip of values instead."""
    cols = max(1, min(max_maps, max((m.shape[0] for _, m in maps), default=1)))
    cell = 0.85
    fig = plt.figure(figsize=(cols * cell + 1.2, (len(maps) + 1) * (cell + 0.5) + 0.5))
    rows = fig.subfigures(len(maps) + 1, 1, squeeze=False)[:, 0]
    ax = rows[0].subplots(1, cols, squeeze=False)[0]
    for a in ax:
        a.axis("off")
    shown, cmap = picture(image)
    ax[0].imshow(shown, cmap=cmap)
    rows[0].suptitle(f"input {'×'.join(map(str, np.shape(image)))}.  Below, the maps of a layer share one colour scale: "
                     "blue < 0 < red where it has signed values, black = 0 to white where all are ≥ 0",
                     fontsize=9, x=0.02, ha="left")
    for row, (name, output) in zip(rows[1:], maps):
        channels, h, w = output.shape
        what = _strip(row, output, max_maps) if h * w == 1 else _map_row(row, output, cols, max_maps)
        row.suptitle(f"{name}: {channels}×{h}×{w}{what}", fontsize=9, x=0.02, ha="left")
    fig.suptitle(title or "Feature maps", fontsize=11, y=1.0 + 0.25 / len(rows), va="bottom")
    return fig


def random_filter_responses(image: np.ndarray, count: int = 6, size: int = 3, seed: int = 0):
    """(filters [count, size, size] drawn from N(0, 1), responses [count, H, W]) for a grayscale image in [0, 1].

    Zero padding keeps the responses the size of the image, as in the lecture's slide."""
    generator = torch.Generator().manual_seed(seed)
    filters = torch.randn(count, 1, size, size, generator=generator)
    x = torch.as_tensor(image, dtype=torch.float32)[None, None]
    responses = F.conv2d(x, filters, padding=size // 2)[0]
    return filters[:, 0].numpy(), responses.numpy()


def plot_random_filters(image: np.ndarray, count: int = 6, size: int = 3, seed: int = 0, name: str = "image"):
    """The image, then per random filter: the filter (shared centred scale) above its response (own centred scale)."""
    filters, responses = random_filter_responses(image, count, size, seed)
    fig, axes = plt.subplots(2, count + 1, figsize=(1.9 * (count + 1) + 0.8, 4.4), squeeze=False)
    for a in axes.flat:
        a.set_xticks([]), a.set_yticks([])
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"{name}\n{image.shape[0]}×{image.shape[1]}", fontsize=8)
    axes[1, 0].axis("off")
    f_limit = float(np.abs(filters).max())
    for i in range(count):
        f_image = axes[0, i + 1].imshow(filters[i], cmap="RdBu_r", vmin=-f_limit, vmax=f_limit)
        axes[0, i + 1].set_title(f"random filter {i + 1}", fontsize=8)
        # Each response on its own scale: on a shared one, a filter whose weights nearly cancel shows nothing.
        r_limit = float(np.abs(responses[i]).max()) or 1.0
        axes[1, i + 1].imshow(responses[i], cmap="RdBu_r", vmin=-r_limit, vmax=r_limit)
        axes[1, i + 1].set_title(f"response {i + 1} (±{r_limit:.2g})", fontsize=8)
    fig.colorbar(f_image, ax=axes[0, 1:].tolist(), shrink=0.85, label="filter weight")
    axes[1, 0].text(0.5, 0.5, "responses:\nred > 0 > blue,\neach scaled to\nthe ± in its title", ha="center",
                    va="center", fontsize=8, transform=axes[1, 0].transAxes)
    fig.suptitle(f"{name} convolved with {count} random {size}×{size} filters (N(0,1) weights, seed {seed}, "
                 "zero padding)", fontsize=10)
    return fig
