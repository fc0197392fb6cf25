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
