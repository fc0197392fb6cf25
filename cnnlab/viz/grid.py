"""Many small labelled images as one picture on one axes: the test images of a run's report (its mistakes,
segmented scenes, boxes) and of `predict --out-dir`.

Every training draws such a figure at its end. One axes per image, titled and laid out by tight_layout, took
0.5-1 s a figure (6 scenes x 4 panels, or 16 boxes); one image with its labels in the gaps between the tiles takes
a fraction of that (docs/records.md)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

import cnnlab.viz  # noqa: F401  (selects the headless backend)

FONT_SIZE = 8
LINE_INCHES = 1.2 * FONT_SIZE / 72  # one line of label: matplotlib spaces lines at 1.2 x the font size


def _rgb(tile) -> np.ndarray:
    """[H, W, 3] floats in 0-1 of a grey [H, W] or colour [H, W, 3] tile: integers are 0-255 (grey is shown as grey,
    not stretched to its own range), floats are 0-1 already (a colourized class map)."""
    tile = np.asarray(tile)
    rgb = tile.astype(np.float32) / 255 if tile.dtype.kind in "ui" else tile.astype(np.float32)
    return rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=-1)


def labelled_grid(tiles, labels: list[str], cols: int, cell_inches: float, colours=None, heading: str = "",
                  footer_inches: float = 0.0, empty: str = "none"):
    """A figure of `tiles` in rows of `cols` on white, each under its label (one or more lines, in its colour from
    `colours`, default black), with `heading` above and `footer_inches` left free below (for a legend). Tiles may
    differ in size: each is centred in a cell of the largest one's size, `cell_inches` wide. Returns (fig, ax,
    corners): corners[i] is tile i's (left, top) in the axes' data coordinates, which are the canvas's pixels
    (pixel (r, c) of tile i covers left + c to left + c + 1), for marks drawn over it."""
    tiles = [_rgb(tile) for tile in tiles]
    height = max((tile.shape[0] for tile in tiles), default=28)
    width = max((tile.shape[1] for tile in tiles), default=28)
    margin = max(1, round(width * 0.1))  # either side of a tile: a fifth of its width between neighbours
    cell_width = width + 2 * margin
    inches_per_pixel = cell_inches / cell_width
    lines = max((label.count("\n") + 1 for label in labels), default=1)
    band = math.ceil((lines * LINE_INCHES + 0.12) / inches_per_pixel)  # above each tile: its label, a gap
    cell_height = band + height
    rows = max(1, -(-len(tiles) // cols))
    canvas = np.ones((rows * cell_height + margin, cols * cell_width, 3), dtype=np.float32)  # white, as the page
    corners = []
    for n, tile in enumerate(tiles):
        top = (n // cols) * cell_height + band + (height - tile.shape[0]) // 2
        left = (n % cols) * cell_width + (cell_width - tile.shape[1]) // 2
        canvas[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
        corners.append((left, top))
    canvas_inches, heading_inches = canvas.shape[0] * inches_per_pixel, 0.32 if heading else 0.0
    fig = plt.figure(figsize=(cols * cell_inches, canvas_inches + heading_inches + footer_inches))
    ax = fig.add_axes((0, footer_inches / fig.get_figheight(), 1, canvas_inches / fig.get_figheight()))
    ax.imshow(canvas, interpolation="nearest", extent=(0, canvas.shape[1], canvas.shape[0], 0))
    ax.set_axis_off()
    colours = colours or ["black"] * len(tiles)
    for (left, top), tile, label, colour in zip(corners, tiles, labels, colours):
        ax.text(left + tile.shape[1] / 2, top - band * 0.08, label, ha="center", va="bottom", fontsize=FONT_SIZE,
                color=colour)
    if not tiles:
        ax.text(canvas.shape[1] / 2, canvas.shape[0] / 2, empty, ha="center", va="center")
    if heading:
        fig.suptitle(heading, fontsize=10, y=1 - 0.06 / fig.get_figheight(), va="top")
    return fig, ax, corners
