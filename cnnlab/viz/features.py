"""Feature maps: what each conv/pool layer computes for one input, and the lecture's "random filters" slide."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LinearSegmentedColormap, Normalize

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.viz.pictures import mosaic, mosaic_places, picture


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


SLOT = 0.85  # inches per map across, its gap to the next included
LEFT, RIGHT, TOP, BAND = 0.15, 1.0, 0.45, 0.6  # inches: margin, colour bars, title, a row's name and numbers


def _gap(width: int) -> int:
    """Pixels between two maps of a row: a fifth of a map, at least one."""
    return max(1, round(0.2 * width))


def _strip(fig, box, output: torch.Tensor, shown: int, colour_bar) -> None:
    """1x1 maps (global pooling) are single numbers: the first `shown` as one strip of values."""
    strip = fig.add_axes(box)
    cmap, norm = layer_scale(output[:shown])
    image = strip.imshow(output[:shown, 0, 0].numpy()[None], cmap=cmap, norm=norm, aspect="auto",
                         interpolation="nearest")
    strip.set_yticks([])
    strip.tick_params(labelsize=7, length=2, pad=1)
    fig.colorbar(image, cax=colour_bar)


def _map_row(fig, box, output: torch.Tensor, shown: int, cols: int, colour_bar) -> None:
    """The first `shown` maps of a layer in `cols` places, numbered, on the layer's shared scale, with its colour
    bar: one `mosaic` image."""
    _, height, width = output.shape
    cmap, norm = layer_scale(output[:shown])
    ax = fig.add_axes(box)
    ax.set_axis_off()
    gap = _gap(width)
    image = ax.imshow(mosaic(output[:shown].numpy(), cols, gap), cmap=cmap, norm=norm, aspect="auto",
                      interpolation="nearest")
    ax.set_xlim(-0.5, cols * (width + gap) - gap - 0.5)  # empty places keep their width: columns line up
    for index in range(shown):
        x, y = mosaic_places(index, cols, height, width, gap)
        ax.annotate(str(index), (x, y), xytext=(0, 1.5), textcoords="offset points", ha="center", va="bottom",
                    fontsize=7, annotation_clip=False)
    fig.colorbar(image, cax=colour_bar)


def plot_feature_maps(image: np.ndarray, maps: list[tuple[str, torch.Tensor]], max_maps: int = 16,
                      title: str = ""):
    """One row per layer: its first `max_maps` channels, numbered, labelled with the layer's name and output shape.
    The maps of a layer share one colour scale (its colour bar), in the web explorer's colours: blue < 0 < red
    where the layer's values are signed, black (0) to white where all are >= 0. The input comes first; 1x1 maps
    are one strip of values instead.

    Each row is one image of its maps side by side (`mosaic`), placed in inches: the map columns of all rows line
    up, and a row is as tall as its maps' shape asks."""
    cols = max(1, min(max_maps, max((m.shape[0] for _, m in maps), default=1)))
    shown, cmap = picture(image)
    in_height, in_width = shown.shape[:2]

    def row_height(height: int, width: int) -> float:  # a map's height in inches, its width being its slot's
        return SLOT * height / (width + _gap(width))

    heights = [row_height(in_height, in_width)] + [0.3 if m.shape[1] * m.shape[2] == 1 else row_height(*m.shape[1:])
                                                    for _, m in maps]
    fig_width = cols * SLOT + LEFT + RIGHT
    fig_height = TOP + sum(heights) + BAND * len(heights) + 0.1
    fig = plt.figure(figsize=(fig_width, fig_height))
    top = fig_height - TOP  # inches from the bottom, going down

    def place(height: float, row_width: float, text: str) -> tuple[tuple, tuple]:
        """(the next row's box, its colour bar's box) in figure fractions, below a band with its `text`."""
        nonlocal top
        fig.text(LEFT / fig_width / 2, (top - 0.2) / fig_height, text, fontsize=9, ha="left", va="top")
        top -= BAND + height
        box = (LEFT / fig_width, top / fig_height, row_width / fig_width, height / fig_height)
        bar = ((LEFT + cols * SLOT + 0.15) / fig_width, top / fig_height, 0.12 / fig_width,
               max(height, 0.3) / fig_height)
        return box, bar

    box, _ = place(heights[0], SLOT * in_width / (in_width + _gap(in_width)),
                   f"input {'×'.join(map(str, np.shape(image)))}.  Below, the maps of a layer share one colour scale: "
                   "blue < 0 < red where it has signed values, black = 0 to white where all are ≥ 0")
    ax = fig.add_axes(box)
    ax.set_axis_off()
    ax.imshow(shown, cmap=cmap, aspect="auto", interpolation="nearest")
    for (name, output), height in zip(maps, heights[1:]):
        channels, h, w = output.shape
        row_width = cols * SLOT - SLOT * _gap(w) / (w + _gap(w))
        values = h * w == 1  # global pooling: a strip of numbers, up to 8 rows' worth
        count = min(channels, 8 * max_maps if values else max_maps)
        what = "" if count == channels else f" (first {count} values)" if values else \
            f" (maps 0–{count - 1} of {channels})"
        box, bar = place(height, row_width, f"{name}: {channels}×{h}×{w}{what}")
        colour_bar = fig.add_axes(bar)
        colour_bar.tick_params(labelsize=8)
        if values:
            _strip(fig, box, output, count, colour_bar)
        else:
            _map_row(fig, box, output, count, cols, colour_bar)
    fig.suptitle(title or "Feature maps", fontsize=11, y=1 - 0.12 / fig_height, va="top")
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
