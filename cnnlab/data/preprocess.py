"""Turn any photo or drawing of a digit into a 28x28 MNIST-style image, the way MNIST itself was made:
grayscale, light background inverted to white-on-black, cropped to the ink, scaled so the longer side is
20 pixels (aspect kept), then placed in a 28x28 canvas with its centre of mass at the centre.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from cnnlab import files
from cnnlab.errors import ImageError

MAX_PIXELS = 40_000_000  # larger images are refused rather than decompressed (decompression bombs)
DIGIT_SOURCE_SIDE = 512  # a photo of a digit is reduced to this side before it is made a 28x28 digit
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


def to_colour(image: Image.Image) -> np.ndarray:
    """Float RGB [H, W, 3] in [0, 1] of a colour image (transparent pixels count as white paper); an image
    without colour (or with three equal channels): grayscale [H, W]."""
    if image.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "PA"):
        return to_gray(image)
    if image.mode in ("RGBA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        rgb = rgb[..., 0]  # grey in RGB (a drawing): one channel does, three times faster
    return rgb.astype(np.float32) / 255.0


def mnist_style(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A photo or drawing of one digit, [H, W] grayscale or [H, W, 3] colour in [0, 1], as MNIST draws digits:
    uint8 [28, 28], white ink on black, the ink's box scaled to 20 pixels on its longer side, centred by mass.

    The ink is told from the paper by `ink_map` twice: once roughly, to find how large the digit is, then with the
    paper estimated at the digit's own scale."""
    colour = (image[..., None] if image.ndim == 2 else image).astype(np.float32)
    if _light_ink(colour.mean(axis=2)):  # light ink on dark paper (a blackboard, MNIST itself): read inverted
        colour = 1.0 - colour
    height, width = colour.shape[:2]
    scale = min(1.0, ROUGH_SIDE / max(height, width))
    copy = np.asarray([_resized(colour[..., c], scale) for c in range(colour.shape[2])]).transpose(1, 2, 0)
    rough = ink_map(copy, paper_side=ROUGH_SIDE)
    peak = float(np.percentile(rough, 99.9))  # the digit's darkest strokes (a lone dark pixel does not set it)
    if peak < 0.1:
        raise ImageError(f"{name}: no digit found (the image is blank)")
    rows, cols = np.nonzero(rough * _digit_mask(rough > 0.3 * peak, rough) > 0.15 * peak)
    digit_side = max(np.ptp(rows), np.ptp(cols), 1) / scale
    ink = ink_map(colour, paper_side=max(8, round(max(height, width) * DIGIT_ON_PAPER / digit_side)))
    peak = max(float(np.percentile(ink, 99.9)), 1e-3)
    ink = np.clip(ink / peak, 0, 1) * _digit_mask(ink > 0.3 * peak, ink)
    rows, cols = np.nonzero(ink > 0.15)
    if not len(rows):
        raise ImageError(f"{name}: no digit found (the image is blank)")
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


ROUGH_SIDE = 128  # the first look (how large is the digit?) is at this many pixels on the longer side;
DIGIT_ON_PAPER = 24  # the second estimates the paper on a copy where the digit is this many pixels tall or wide,
PAPER_WINDOW = 9  # with a window this wide: wider than the digit's strokes (about a fifth of it: 5 pixels)


def ink_map(colour: np.ndarray, paper_side: int) -> np.ndarray:
    """How much ink each pixel holds (0: bare paper, 1: ink that lets no light through), for a photo [H, W, C] in
    [0, 1] of dark ink on lighter paper.

    The paper is seen locally: light falls off across a page, a shadow darkens part of it, and one brightness for
    the whole photo would take a shaded corner for ink. The paper's colour at each place is the brightest there
    in a copy of the photo `paper_side` pixels on its longer side once strokes are closed over (a grey-level
    closing with a window wider than a stroke), and a pixel's ink is how much darker than its paper it is, in the
    channel where it is darkest (a blue or red ink on tinted paper). What the paper's grain leaves (the median and
    spread of the whole map) is taken off."""
    darkest = np.min([colour[..., c] / np.maximum(_paper(colour[..., c], paper_side), 1e-3)
                      for c in range(colour.shape[2])], axis=0)
    ink = np.clip(1.0 - darkest, 0, 1)
    sample = ink[::3, ::3]  # the paper's grain is measured on every ninth pixel: as good, and quicker
    median = np.median(sample)
    grain = median + 4 * 1.4826 * np.median(np.abs(sample - median))  # 4 robust standard deviations
    return np.clip(ink - grain, 0, None)


def _resized(channel: np.ndarray, scale: float) -> np.ndarray:
    """One float channel scaled by `scale` (each pixel the mean of those it covers when smaller)."""
    height, width = channel.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return channel
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(channel.astype(np.float32), "F").resize(size, method))


def _light_ink(luminance: np.ndarray) -> bool:
    """Whether the ink is lighter than the paper: on a small copy (48 pixels on its longer side), what stands out
    most from the median around it (a window a third of the photo wide: mostly paper, even beside a bold digit;
    lighting and soft shadows stand out as much on both sides) is light rather than dark."""
    small = _resized(luminance, min(1.0, 48 / max(luminance.shape))).astype(np.float32)
    residual = small - np.asarray(Image.fromarray(small, "F").filter(ImageFilter.MedianFilter(17)))
    return residual.max() > -residual.min()


def _sliding(values: np.ndarray, window: int, combine) -> np.ndarray:
    """`combine` (np.maximum, np.minimum, np.add) over each window x window square, the edges repeated."""
    half = window // 2
    for axis in (0, 1):
        first, last = values.take([0], axis=axis), values.take([-1], axis=axis)
        padded = np.concatenate([first] * half + [values] + [last] * half, axis=axis)  # the edges repeated
        length = values.shape[axis]
        values = padded.take(range(0, length), axis=axis)
        for shift in range(1, window):
            values = combine(values, padded.take(range(shift, shift + length), axis=axis))
    return values


def _paper(channel: np.ndarray, side: int) -> np.ndarray:
    """One channel's paper brightness at each pixel: a copy `side` pixels on its longer side, closed (the
    brightest of each PAPER_WINDOW window, then the darkest of those: strokes vanish, a shadow's edge stays where
    it is), smoothed, and brought back to full size."""
    height, width = channel.shape
    small = _resized(channel, min(1.0, side / max(height, width)))
    closed = _sliding(_sliding(small, PAPER_WINDOW, np.maximum), PAPER_WINDOW, np.minimum)
    paper = (_sliding(closed, 5, np.add) / 25).astype(np.float32)  # smoothed: the closing's steps become slopes
    if paper.shape == channel.shape:
        return paper
    return np.asarray(Image.fromarray(paper, "F").resize((width, height), Image.Resampling.BILINEAR))


MASK_SIDE = 64  # connected pieces of ink are found on a copy of the mask this many pixels on its longer side


def _digit_mask(marked: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """1 where the ink belongs to the digit, 0 on specks: the pieces of `marked` (connected, at MASK_SIDE) that
    hold at least a tenth of the ink of the largest piece, and the pixels around them."""
    height, width = marked.shape
    step = max(1, -(-max(height, width) // MASK_SIDE))
    grid = np.pad(marked, ((0, -height % step), (0, -width % step)))
    grid = grid.reshape(grid.shape[0] // step, step, grid.shape[1] // step, step).any(axis=(1, 3))
    labels = _pieces(grid)
    weights = np.pad(ink, ((0, -height % step), (0, -width % step)))
    weights = weights.reshape(*grid.shape[:1], step, grid.shape[1], step).sum(axis=(1, 3))
    mass = np.bincount(labels.ravel(), weights.ravel())
    mass[0] = 0  # label 0: no ink
    kept = mass >= 0.1 * mass.max()
    keep = kept[labels]
    keep = np.pad(keep, 1)  # one cell around each kept piece: its strokes' faint edges
    keep = np.max([keep[dy:dy + grid.shape[0], dx:dx + grid.shape[1]] for dy in range(3) for dx in range(3)], axis=0)
    return np.repeat(np.repeat(keep, step, axis=0), step, axis=1)[:height, :width]


def _pieces(mask: np.ndarray) -> np.ndarray:
    """Labels of the 8-connected pieces of a boolean mask (0 outside it, 1... inside): each pixel takes the
    smallest label among its neighbours', and labels follow the label they took, until nothing changes."""
    height, width = mask.shape
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    big = mask.size + 1
    while True:
        padded = np.pad(np.where(mask, labels, big), 1, constant_values=big)
        smallest = np.min([padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], axis=0)
        smallest = np.where(mask, np.minimum(labels, smallest), 0)
        flat = np.concatenate([[0], smallest.ravel()])
        jumped = flat[flat[smallest]]  # follow each label to the label its own pixel took: far pieces merge fast
        jumped = np.where(mask, jumped, 0)
        if np.array_equal(jumped, labels):
            return labels
        labels = jumped


def load_digit(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image of a digit and return it MNIST-style: uint8 [28, 28]."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    # 512 px is far more than a 20-pixel digit needs (a digit a tenth of the photo tall is still 51 pixels), and
    # bounds the float arrays of the steps below
    image = open_image(source, label, max_side=DIGIT_SOURCE_SIDE)
    try:
        return mnist_style(to_colour(image), label)
    except ImageError:
        if is_blank(image):
            raise
        # "blank" is kept for a picture of one colour: this one has content, in hue or in faint shades
        raise ImageError(f"{label}: no digit found (no stroke stands out from the paper; the picture is not "
                         "blank, but a digit is a stroke darker or lighter than the paper around it)") from None


def is_blank(image: Image.Image) -> bool:
    """Of one colour, but for a few stray pixels: no channel spans more than 8 of 255 levels over 99% of them."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    low, high = np.percentile(pixels, [0.5, 99.5], axis=0)
    return bool((high - low).max() < 8)


def load_scene(source: str | Path | bytes, name: str | None = None, max_side: int | None = None) -> np.ndarray:
    """Read an image of digits at their own size (a scene, for segmentation): uint8 [H, W], white digits on black
    as in mnist-scenes; a light background is inverted. With `max_side`, a larger image is reduced to it as it is
    decoded (the explorer fits any photo to its canvas); without, it is refused above MAX_SCENE_SIDE, because its
    digits would not be at the scale the model learned."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    image = open_image(source, label, max_side=max_side)
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
    height, width = (side, side) if isinstance(side, int) else side
    if channels not in (1, 3):
        raise ImageError(f"{name or 'image'}: an input of {channels} channels is not a photo (1 or 3 channels)")

    image = open_image(source, name, max_side=4 * max(height, width))  # a JPEG decodes at a fraction of its size
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F", "LAB"):  # not 8-bit: read as grey in [0, 1]
        image = Image.fromarray(np.round(to_gray(image) * 255).astype(np.uint8))
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")  # transparent pixels show the black that padding uses
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    wanted = "RGB" if channels == 3 else "L"
    if image.mode != wanted:  # convert() copies even an image already in the mode
        image = image.convert(wanted)
    if fit == "crop":
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    else:
        image = ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR, color=0)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def fit_scene(scene: np.ndarray, height: int, width: int) -> np.ndarray:
    """A scene (uint8 [H, W]) of any size in the height x width canvas a model was trained on: scaled down if
    larger, then centred on black (digits keep their size and shape)."""
    if scene.shape == (height, width):
        return scene
    picture = Image.fromarray(scene)
    if picture.width > width or picture.height > height:
        picture = ImageOps.contain(picture, (width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (width, height))
    canvas.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
    return np.asarray(canvas)


def per_channel(mean, std, like):
    """`mean` and `std` as `normalize` applies them to an array or tensor like `like`: one number each, or, for a
    colour dataset, float32 [C, 1, 1] of its kind (made once, they serve any number of calls)."""
    if not isinstance(mean, (tuple, list)):
        return mean, std
    make = like.new_tensor if hasattr(like, "new_tensor") else functools.partial(np.asarray, dtype=np.float32)
    return make(mean).reshape(len(mean), 1, 1), make(std).reshape(len(std), 1, 1)


def normalize(pixels, mean, std, out=None):
    """uint8 pixels -> the float32 inputs every model is trained on, (x / 255 - mean) / std with the dataset's
    `mean` and `std`. One formula for training, evaluation and every look inside, so that all see the same
    numbers; it takes a NumPy array or a torch tensor and returns the same kind. A colour dataset's `mean` and
    `std` are one number per channel, for pixels [..., C, H, W]. `out`: a float32 tensor of the pixels' shape
    to write them into (a view too: a window of a larger batch), for torch pixels."""
    if out is not None:
        x = out.copy_(pixels)
    else:
        x = pixels.float() if hasattr(pixels, "float") else np.asarray(pixels, dtype=np.float32)
    mean, std = per_channel(mean, std, x)
    if x is not pixels and hasattr(x, "mul_"):  # a fresh float copy: the same three steps, in place (half the time)
        return x.mul_(1 / 255).sub_(mean).mul_(1 / std)
    return (x * (1 / 255) - mean) * (1 / std)


def input_source(image, shape: tuple[int, int, int], any_size: bool = False) -> tuple[object, str, bool]:
    """(what to prepare, its name, whether it is the model's input already) from a file path, an image's bytes, a
    PIL image, or a NumPy array or torch tensor of pixels (0-255, or floats in [0, 1]). An array of the model's
    input `shape` ([H, W] for one channel, or [C, H, W]), or with `any_size` any [H, W] (a scene, for a model that
    takes any size), is taken as a dataset image is: as it is. A picture to prepare comes as PNG bytes."""
    name = str(image) if isinstance(image, (str, Path)) else "image"
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), name, False
    if isinstance(image, (str, Path, bytes)):
        return image, name, False
    pixels = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if pixels.dtype.kind == "f":
        pixels = np.round(np.clip(np.nan_to_num(pixels), 0, 1) * 255)
    pixels = pixels.astype(np.uint8)
    name = f"a {'x'.join(map(str, pixels.shape))} array"
    if pixels.shape in (tuple(shape), tuple(shape[1:]) if shape[0] == 1 else None) or any_size and pixels.ndim == 2:
        return pixels, name, True
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3):  # [C, H, W] -> [H, W, C], as PIL takes a picture
        pixels = pixels.transpose(1, 2, 0).squeeze(-1)
    if pixels.ndim not in (2, 3):
        raise ImageError(f"an array of shape {pixels.shape} is not an image ([H, W], [C, H, W] or [H, W, C])")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), name, False
