"""`mnist-boxes`: a localization dataset made of MNIST digits, generated deterministically in memory.

An image is a 64x64 black canvas with one MNIST digit scaled by a random factor (MIN_SCALE..MAX_SCALE of its 28
pixels) and placed at a random position wholly inside it. Its label is the digit's class and the box around its
ink (the pixels >= INK), as five float32 numbers: class, left, top, right, bottom, the box's edges as fractions of
the canvas's side (right and bottom are exclusive: a box of one pixel at column 0 spans 0..1/64).

With the option `clutter` (N), each image also gets N fragments of other digits (FRAGMENT x FRAGMENT crops, as the
cluttered MNIST of Mnih et al. 2014) at random places under the digit: ink that is not the digit, which the box
must leave out.

Train images use MNIST train digits only and test images MNIST test digits only. Images are drawn in chunks of
CHUNK, each from its own random stream seeded by (seed, split, chunk), so the first n of N images are exactly the
n images of a smaller set: `--train-limit` draws only what it uses. Every chunk is a few vectorized NumPy
operations (bilinear resampling of all its digits at once), so nothing is cached on disk.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from cnnlab.data.datasets import Split, load_dataset
from cnnlab.data.registry import GENERATED, SPLITS, DatasetInfo
from cnnlab.errors import ConfigError

SIDE = 64
DIGIT = 28
MIN_SCALE, MAX_SCALE = 0.6, 1.6  # a digit 17 to 45 pixels square: its ink about 12 to 32 pixels tall
INK = 128  # a pixel at least this bright is the digit's ink, inside its box
FRAGMENT = 8
CHUNK = 1000
DEFAULT_COUNTS = {"train": 60_000, "test": 10_000}  # as many as MNIST has digits
DEFAULT_SEED = 0


def draw_layout(count: int, source_size: int, seed: int, split: str, clutter: int = 0) -> dict[str, np.ndarray]:
    """Which digit each image shows, at what scale and where (its top-left corner on the canvas), and where its
    clutter fragments come from and go, as arrays over the `count` images."""
    parts = []
    for chunk in range(math.ceil(count / CHUNK)):
        rng = np.random.default_rng([seed, SPLITS.index(split), chunk])
        scale = rng.uniform(MIN_SCALE, MAX_SCALE, CHUNK)
        room = SIDE - np.ceil(DIGIT * scale)  # the corner's range that keeps the whole digit on the canvas
        fragments = (CHUNK, clutter)
        parts.append({"index": rng.integers(0, source_size, CHUNK), "scale": scale,
                      "top": np.floor(rng.uniform(0, 1, CHUNK) * (room + 1)),
                      "left": np.floor(rng.uniform(0, 1, CHUNK) * (room + 1)),
                      "fragment": rng.integers(0, source_size, fragments),
                      "from_y": rng.integers(0, DIGIT - FRAGMENT + 1, fragments),
                      "from_x": rng.integers(0, DIGIT - FRAGMENT + 1, fragments),
                      "to_y": rng.integers(0, SIDE - FRAGMENT + 1, fragments),
                      "to_x": rng.integers(0, SIDE - FRAGMENT + 1, fragments)})
    return {key: np.concatenate([p[key] for p in parts])[:count] for key in parts[0]}


def render_digits(digits: np.ndarray, scale: np.ndarray, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Digits (uint8 [N, 28, 28]) scaled and placed on black canvases: float32 [N, SIDE, SIDE], bilinear.

    Bilinear resampling is separable: each canvas row is a weighted sum of digit rows, with the weights of a tent
    around the digit row under the canvas row's centre (zero beyond the digit: black around it), and likewise for
    columns, so a canvas is rows @ digit @ columns^T: two batched matrix products for the whole chunk."""
    def weights(corner: np.ndarray) -> np.ndarray:  # [N, SIDE, DIGIT]
        centres = ((np.arange(SIDE, dtype=np.float32)[None] + 0.5 - corner[:, None].astype(np.float32))
                   / scale[:, None].astype(np.float32) - 0.5)
        return np.maximum(0, 1 - np.abs(centres[:, :, None] - np.arange(DIGIT, dtype=np.float32)))

    return weights(top) @ digits.astype(np.float32) @ np.ascontiguousarray(weights(left).transpose(0, 2, 1))


def ink_boxes(images: np.ndarray) -> np.ndarray:
    """(left, top, right, bottom) in pixels of the ink (>= INK) of each image [N, H, W], right and bottom
    exclusive; the brightest pixels' box for an image whose digit has no pixel that bright."""
    ink = images >= np.minimum(INK, images.max((1, 2), keepdims=True))
    rows, cols = ink.any(2), ink.any(1)
    top, bottom = rows.argmax(1), rows.shape[1] - rows[:, ::-1].argmax(1)
    left, right = cols.argmax(1), cols.shape[1] - cols[:, ::-1].argmax(1)
    return np.stack([left, top, right, bottom], 1)


def render(layout: dict[str, np.ndarray], digits: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, SIDE, SIDE], labels float32 [N, 5]) of `layout`, drawn from `digits` of `classes`."""
    images, labels = [], []
    for start in range(0, len(layout["index"]), CHUNK):
        part = {key: value[start:start + CHUNK] for key, value in layout.items()}
        canvas = np.rint(render_digits(digits[part["index"]], part["scale"], part["top"], part["left"]))
        canvas = canvas.clip(0, 255).astype(np.uint8)
        box = ink_boxes(canvas)
        image = np.arange(len(canvas))[:, None, None]
        offsets = np.arange(FRAGMENT)
        for slot in range(part["fragment"].shape[1]):  # fragments go under the digit: the brighter pixel wins
            source = digits[part["fragment"][:, slot, None, None],
                            part["from_y"][:, slot, None, None] + offsets[None, :, None],
                            part["from_x"][:, slot, None, None] + offsets[None, None, :]]
            rows = part["to_y"][:, slot, None, None] + offsets[None, :, None]
            cols = part["to_x"][:, slot, None, None] + offsets[None, None, :]
            canvas[image, rows, cols] = np.maximum(canvas[image, rows, cols], source)
        images.append(canvas)
        labels.append(np.concatenate([classes[part["index"], None], box / SIDE], 1).astype(np.float32))
    return np.concatenate(images), np.concatenate(labels)


@functools.lru_cache(maxsize=4)
def load_boxes(split: str = "train", count: int | None = None, seed: int = DEFAULT_SEED, clutter: int = 0,
               data_dir=None, quiet: bool = False) -> Split:
    """`count` images (default: as many as MNIST's split has digits) of `split`, each with one digit and, with
    `clutter`, that many fragments of others. Images and labels are read-only."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    count = DEFAULT_COUNTS[split] if count is None else count
    if count < 1:
        raise ConfigError(f"mnist-boxes: image count must be at least 1, got {count}")
    mnist = load_dataset("mnist", split, data_dir, quiet=quiet)
    images, labels = render(draw_layout(count, len(mnist), seed, split, clutter), mnist.images, mnist.labels)
    images.setflags(write=False)
    labels.setflags(write=False)
    return Split(images, labels, BOXES, split)


def _load(split: str, data_dir=None, quiet: bool = False, limit: int | None = None, train_images: int | None = None,
          test_images: int | None = None, clutter: int | None = None) -> Split:
    count = {"train": train_images, "test": test_images}[split] or DEFAULT_COUNTS[split]
    # The first n images of any set are the n-image set: a limited run draws only what it uses.
    return load_boxes(split, min(count, limit or count), clutter=clutter or 0, data_dir=data_dir, quiet=quiet)


BOXES = DatasetInfo(
    name="mnist-boxes",
    classes=tuple("0123456789"),
    # of the default 60,000 train images (pixels in [0, 1]): one digit on a canvas 5 times its area
    mean=0.0323, std=0.1545,
    files={}, sha256={}, mirrors=(),
    source="generated from MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) by cnnlab.data.boxes",
    licence="CC BY-SA 3.0",
    load=_load,
    task="localization",
    # how many images to draw, and clutter fragments in each: `--dataset-options '{"clutter": 4}'`
    options=("train_images", "test_images", "clutter"),
)
GENERATED[BOXES.name] = BOXES
