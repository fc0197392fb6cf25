"""`mnist-scenes`: a segmentation dataset made of MNIST digits, generated deterministically and cached on disk.

A scene is a 64x84 black canvas with 1 to 3 MNIST digits pasted at random positions; digits may overlap and a
later digit lies on top of the earlier ones: inside its ink it replaces them, outside its ink the brighter pixel
wins. The label of a pixel is 0 (background) or 1 + the digit shown there; a digit's ink is its pixels >= INK.

Train scenes use MNIST train digits only and test scenes MNIST test digits only. Scenes are drawn in chunks of
CHUNK, each from its own random stream seeded by (seed, split, chunk), so the first n of N scenes are exactly the
n scenes of a smaller set: a prefix (`--train-limit`) of the default set is itself a valid smaller dataset.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np

from cnnlab.data.datasets import Split, cache_dir, load_dataset
from cnnlab.data.registry import GENERATED, SPLITS, DatasetInfo
from cnnlab.errors import ConfigError, DatasetError
from cnnlab.files import atomic_write

HEIGHT, WIDTH = 64, 84
DIGIT = 28
MAX_DIGITS = 3
INK = 128  # a digit pixel at least this bright is labelled with the digit's class
CHUNK = 1000
DEFAULT_COUNTS = {"train": 10_000, "test": 2_000}
DEFAULT_SEED = 0
CACHE_VERSION = 1  # bump when the generator changes, so stale caches are never read


def draw_layout(count: int, source_size: int, seed: int, split: str,
                max_digits: int = MAX_DIGITS) -> dict[str, np.ndarray]:
    """Where each scene's digits come from and go: arrays [count, max_digits] of `index` (into the source split),
    `top`, `left` and `present` (a scene has 1..max_digits digits; absent slots are ignored)."""
    parts = []
    for chunk in range(math.ceil(count / CHUNK)):
        rng = np.random.default_rng([seed, SPLITS.index(split), chunk])
        shape = (CHUNK, max_digits)
        digits = rng.integers(1, max_digits + 1, size=CHUNK)
        parts.append({"index": rng.integers(0, source_size, size=shape),
                      "top": rng.integers(0, HEIGHT - DIGIT + 1, size=shape),
                      "left": rng.integers(0, WIDTH - DIGIT + 1, size=shape),
                      "present": np.arange(max_digits) < digits[:, None]})
    return {key: np.concatenate([p[key] for p in parts])[:count] for key in ("index", "top", "left", "present")}


def render(layout: dict[str, np.ndarray], digits: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint the scenes of `layout` with `digits` (uint8 [M, 28, 28]) of `classes` (int [M]): (images, masks),
    both uint8 [count, HEIGHT, WIDTH]. One vectorized paste per digit slot, all scenes at once."""
    count = len(layout["index"])
    images = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    masks = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    scene = np.arange(count)[:, None, None]
    offsets = np.arange(DIGIT)
    for slot in range(layout["index"].shape[1]):
        present = layout["present"][:, slot, None, None]
        digit = digits[layout["index"][:, slot]] * present
        ink = digit >= INK
        rows = layout["top"][:, slot, None, None] + offsets[None, :, None]
        cols = layout["left"][:, slot, None, None] + offsets[None, None, :]
        below = images[scene, rows, cols]
        images[scene, rows, cols] = np.where(ink, digit, np.maximum(below, digit))
        label = (classes[layout["index"][:, slot]] + 1).astype(np.uint8)[:, None, None]
        masks[scene, rows, cols] = np.where(ink, label, masks[scene, rows, cols])
    return images, masks


def cache_path(split: str, count: int, seed: int, max_digits: int = MAX_DIGITS) -> Path:
    digits = f"-d{max_digits}" if max_digits != MAX_DIGITS else ""
    return cache_dir() / "mnist-scenes" / f"v{CACHE_VERSION}-{split}-seed{seed}-n{count}{digits}.npz"


@functools.lru_cache(maxsize=4)
def load_scenes(split: str = "train", count: int | None = None, seed: int = DEFAULT_SEED,
                data_dir: str | Path | None = None, quiet: bool = False, max_digits: int = MAX_DIGITS) -> Split:
    """`count` scenes (default 10,000 train / 2,000 test) of `split` with 1..max_digits digits each, from the disk
    cache or generated and cached. Images and masks are read-only uint8 [count, 64, 84]."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    count = DEFAULT_COUNTS[split] if count is None else count
    if count < 1:
        raise ConfigError(f"mnist-scenes: scene count must be at least 1, got {count}")
    path = cache_path(split, count, seed, max_digits)
    if path.is_file():
        images, masks = _read_cache(path, count)
    else:
        mnist = load_dataset("mnist", split, data_dir, quiet=quiet)
        images, masks = render(draw_layout(count, len(mnist), seed, split, max_digits), mnist.images,
                                mnist.labels)
        buffer = io.BytesIO()
        np.savez(buffer, images=images, masks=masks)
        atomic_write(path, buffer.getvalue())
    images.setflags(write=False)
    masks.setflags(write=False)
    return Split(images, masks, SCENES, split)


def _read_cache(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, masks = archive["images"], archive["masks"]
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(f"{path}: unreadable scene cache ({err}); delete it to regenerate") from None
    expected = (count, HEIGHT, WIDTH)
    if images.shape != expected or masks.shape != expected or masks.max(initial=0) > 10:
        raise DatasetError(f"{path}: scene cache holds {images.shape} images, expected {expected}; "
                           "delete it to regenerate")
    return images, masks


def _load(split: str, data_dir=None, quiet: bool = False, limit: int | None = None, train_scenes: int | None = None,
          test_scenes: int | None = None, train_digits: int | None = None, test_digits: int | None = None) -> Split:
    count = {"train": train_scenes, "test": test_scenes}[split] or DEFAULT_COUNTS[split]
    max_digits = {"train": train_digits, "test": test_digits}[split] or MAX_DIGITS
    # The first n scenes of any set are the n-scene set: a limited run draws only what it uses.
    return load_scenes(split, min(count, limit or count), data_dir=data_dir, quiet=quiet, max_digits=max_digits)


SCENES = DatasetInfo(
    name="mnist-scenes",
    classes=("background", *"0123456789"),
    # of the default 10,000 train scenes (pixels in [0, 1]); mostly background, hence the small mean
    mean=0.0375, std=0.1756,
    files={}, sha256={}, mirrors=(),
    source="generated from MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) by cnnlab.data.scenes",
    licence="CC BY-SA 3.0",
    load=_load,
    task="segmentation",
    # how many scenes to draw, and at most how many digits in each: `--dataset-options '{"train_scenes": 60000}'`
    options=("train_scenes", "test_scenes", "train_digits", "test_digits"),
)
GENERATED[SCENES.name] = SCENES
