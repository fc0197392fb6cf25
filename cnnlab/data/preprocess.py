"""Turn any photo or drawing of a digit into a 28x28 MNIST-style image, the way MNIST itself was made:
grayscale, light background inverted to white-on-black, cropped to the ink, scaled so the longer side is
20 pixels (aspect kept), then placed in a 28x28 canvas with its centre of mass at the centre.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab import files
from cnnlab.errors import ImageError

MAX_PIXELS = 40_000_000  # larger images are refused rather than decompressed (decompression bombs)
DIGIT_SOURCE_SIDE = 1024  # a photo of a digit is reduced to this side before it is made a 28x28 digit
MAX_SCENE_SIDE = 1024  # a scene for segmentation is used at its own size: digits about 20 pixels tall


def open_image(source: str | Path | bytes, name: str | None = None, max_side: int | None = None) -> Image.Image:
    """Open an image file or bytes with clear errors; the returned image is fully decoded. With `max_side`, it
    is made no larger than that a side as early as the format allows (a JPEG decodes at a fraction of its size),
    so that a large photo costs little memory beyond its decoded pixels."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    if not isinstance(source, bytes):
        source = files.read_bytes(source, "image", ImageError, "image")
    if not source:
        raise ImageError(f"{label}: empty file")
    try:
        image = Image.open(io.BytesIO(source))
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(f"{label}: {image.width}x{image.height} pixels is more than the {MAX_PIXELS:,} allowed")
        if max_side and max(image.size) > max_side:
            image.draft(image.mode if image.mode in ("L", "RGB") else None, (max_side, max_side))  # JPEG only
            image.load()
            image.thumbnail((max_side, max_side))  # reduces by whole factors first: quick and lean
        image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise ImageError(f"{label}: not a readable image ({err.__class__.__name__})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{label}: corrupt or truncated image ({err})") from None
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """Float grayscale in [0, 1]; transparent pixels count as background (white paper)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # integer or float pixels of any range (a float TIFF may hold NaN or infinities: they count as ink-free)
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        span = array.max() - array.min()
        return (array - array.min()) / span if span else np.zeros_like(array)
    if image.mode == "LAB":  # PIL has no LAB -> L conversion; the L channel is the lightness
        image = image.getchannel("L")
    try:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    except ValueError as err:
        raise ImageError(f"image mode {image.mode} cannot be read as grayscale ({err})") from None


def mnist_style(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """[H, W] grayscale in [0, 1] -> uint8 [28, 28], white digit on black, centred by mass."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 1.0 - gray if np.median(border) > 0.5 else gray.copy()
    ink = np.clip(ink - np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])), 0, None)
    if ink.max() < 0.1:
        raise ImageError(f"{name}: no digit found (the image is blank)")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > 0.15)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS),
                       dtype=np.float64)
    canvas = np.zeros((28, 28))
    ys, xs = np.indices(small.shape)
    mass = small.sum()
    cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.clip(canvas, 0, 255).astype(np.uint8)


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image of a digit and return it MNIST-style: uint8 [28, 28]."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    # 1024 px is far more than a 20-pixel digit needs, and bounds the float arrays of the steps below
    image = open_image(source, label, max_side=DIGIT_SOURCE_SIDE)
    try:
        return mnist_style(to_gray(image), label)
    except ImageError:
        if is_blank(image):
            raise
        # "blank" is kept for a picture of one colour: this one has content, in hue or in faint shades
        raise ImageError(f"{label}: no digit found (no stroke stands out from the background in lightness; "
                         "the picture is not blank, but a digit is dark on light or light on dark)") from None


def is_blank(image: Image.Image) -> bool:
    """Of one colour, but for a few stray pixels: no channel spans more than 8 of 255 levels over 99% of them."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    low, high = np.percentile(pixels, [0.5, 99.5], axis=0)
    return bool((high - low).max() < 8)


def load_scene(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image of digits at their own size (a scene, for segmentation): uint8 [H, W], white digits on black
    as in mnist-scenes; a light background is inverted."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    image = open_image(source, label)
    if max(image.size) > MAX_SCENE_SIDE:
        raise ImageError(f"{label}: {image.width}x{image.height} is larger than {MAX_SCENE_SIDE} pixels a side; "
                         "scale it so that its digits are about 20 pixels tall")
    gray = to_gray(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 1 - gray if np.median(border) > 0.5 else gray
    return np.round(ink * 255).astype(np.uint8)


def load_photo(source: str | Path | bytes, side: int | tuple[int, int], fit: str = "crop", name: str | None = None,
               channels: int = 3) -> np.ndarray:
    """A photo (a file or its bytes) as a colour dataset's image: uint8 [3, H, W] (`side` a number: H = W), resized
    so that it fills H×W and centre-cropped (`fit` "crop"), or fits in it and padded with black ("pad");
    `channels` 1: grey, uint8 [H, W]."""
    from PIL import ImageOps

    height, width = (side, side) if isinstance(side, int) else side
    if channels not in (1, 3):
        raise ImageError(f"{name or 'image'}: an input of {channels} channels is not a photo (1 or 3 channels)")

    image = open_image(source, name, max_side=4 * max(height, width))  # a JPEG decodes at a fraction of its size
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F", "LAB"):  # not 8-bit: read as grey in [0, 1]
        image = Image.fromarray(np.round(to_gray(image) * 255).astype(np.uint8))
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")  # transparent pixels show the black that padding uses
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    image = image.convert("RGB" if channels == 3 else "L")
    if fit == "crop":
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    else:
        image = ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=0)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def normalize(pixels, mean, std):
    """uint8 pixels -> the float32 inputs every model is trained on, (x / 255 - mean) / std with the dataset's
    `mean` and `std`. One formula for training, evaluation and every look inside, so that all see the same
    numbers; it takes a NumPy array or a torch tensor and returns the same kind. A colour dataset's `mean` and
    `std` are one number per channel, for pixels [..., C, H, W]."""
    x = pixels.float() if hasattr(pixels, "float") else np.asarray(pixels, dtype=np.float32)
    if isinstance(mean, (tuple, list)):
        shape = (len(mean), 1, 1)
        make = x.new_tensor if hasattr(x, "new_tensor") else functools.partial(np.asarray, dtype=np.float32)
        mean, std = make(mean).reshape(shape), make(std).reshape(shape)
    return (x * (1 / 255) - mean) * (1 / std)
