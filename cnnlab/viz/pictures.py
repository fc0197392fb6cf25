"""How an input image is drawn in every figure: grey for one channel, colour for three."""

from __future__ import annotations

import numpy as np


def picture(image) -> tuple[np.ndarray, str | None]:
    """(the array `imshow` takes, its colour map) for an image [H, W], [1, H, W] or [3, H, W]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3:
        return np.moveaxis(image, 0, -1), None
    return (image[0] if image.ndim == 3 else image), "gray"


def lightness(image) -> np.ndarray:
    """[H, W] of an image of any channel count: the mean of its channels, for outlines drawn over maps."""
    image = np.asarray(image, dtype=np.float32)
    return image.mean(0) if image.ndim == 3 else image


def mosaic(tiles, cols: int, gap: int) -> np.ndarray:
    """Tiles [N, H, W] (grey) or [N, H, W, 3] (colour) as one image: rows of `cols` tiles, `gap` pixels apart.

    The gaps and any unfilled places are NaN in a grey mosaic, which `imshow` leaves transparent (the page's white
    shows), and transparent in a colour one (RGBA). One image of many tiles draws in milliseconds; one axes per
    tile took about a tenth of a second each to lay out and draw, seconds for a figure of a model's feature maps."""
    tiles = np.asarray(tiles, dtype=np.float32)
    count, height, width = tiles.shape[:3]
    colour = tiles.ndim == 4
    rows = max(1, -(-count // cols))
    grid = np.full((rows * cols, height + gap, width + gap, 4 if colour else 1), np.nan, dtype=np.float32)
    if colour:
        grid[..., 3] = 0.0  # transparent
        grid[:count, :height, :width] = np.concatenate([tiles, np.ones((*tiles.shape[:3], 1), np.float32)], -1)
        grid = np.nan_to_num(grid)
    else:
        grid[:count, :height, :width, 0] = tiles
    grid = grid.reshape(rows, cols, height + gap, width + gap, -1).swapaxes(1, 2)
    grid = grid.reshape(rows * (height + gap), cols * (width + gap), -1)[:rows * (height + gap) - gap,
                                                                         :cols * (width + gap) - gap]
    return grid if colour else grid[..., 0]


def mosaic_places(index: int, cols: int, height: int, width: int, gap: int) -> tuple[float, float]:
    """(x, y) of the centre of the top edge of tile `index` in a `mosaic`'s pixel coordinates (imshow's data
    coordinates): where its label goes."""
    row, col = divmod(index, cols)
    return col * (width + gap) + (width - 1) / 2, row * (height + gap) - 0.5
