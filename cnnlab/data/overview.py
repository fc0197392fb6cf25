"""What a dataset holds, for `cnnlab data`: images per class and split, image sizes, per-channel mean and std of
the training images, and a contact sheet of a few images of each class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.datasets import load_dataset
from cnnlab.data.folders import channel_stats, is_folder
from cnnlab.data.registry import SPLITS, dataset_info
from cnnlab.errors import ConfigError

TILE = 48  # pixels a side of each image on the contact sheet
MAX_ROWS = 20  # classes shown on a sheet; CIFAR-100 shows its first 20


def overview(name: str, options: dict | None = None, data_dir: str | None = None, quiet: bool = False) -> dict:
    """The numbers `cnnlab data` prints, and the splits they came from (under "_splits")."""
    info = dataset_info(name, options)
    # its images are counted per class: one label each (a generated set makes just the one image asked for here)
    if load_dataset(name, "test", data_dir, quiet=True, options=options, limit=1).labels.ndim != 1:
        raise ConfigError(f"{name}: `cnnlab data` describes classification datasets (a class per image); its labels "
                          f"are for {info.task}")
    splits = {split: load_dataset(name, split, data_dir, quiet=quiet, options=options) for split in SPLITS}
    train = splits["train"]
    mean, std = channel_stats(train.images if train.images.ndim == 4 else train.images[:, None])
    counts = {split: np.bincount(s.labels, minlength=info.num_classes).tolist() for split, s in splits.items()}
    result = {"dataset": info.name, "source": info.source, "classes": list(info.classes),
              "images": {split: len(s) for split, s in splits.items()}, "per_class": counts,
              "shape": list(train.images.shape[1:]) if train.images.ndim == 4 else [1, *train.images.shape[1:]],
              "mean": mean, "std": std}
    if is_folder(info.name):
        found = info.decoded(quiet=True)
        result["file_sizes"] = file_sizes([found.listing.files[i] for i in found.keep])
        result["skipped"] = [{"file": path, "why": why} for path, why in found.skipped]
        result["cache"] = str(found.path)
    return {**result, "_splits": splits}


def file_sizes(paths: list[Path]) -> dict:
    """Width and height of the files as stored (read from their headers): smallest, median, largest."""
    from PIL import Image

    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size)
    widths, heights = np.array(sizes).T
    return {"width": [int(widths.min()), int(np.median(widths)), int(widths.max())],
            "height": [int(heights.min()), int(np.median(heights)), int(heights.max())],
            "distinct": len(set(sizes))}


def contact_sheet(split, path: str | Path, per_class: int = 8) -> Path:
    """A PNG of the first `per_class` images of each class (up to MAX_ROWS classes), one row per class, its name
    on the left; images scaled up with visible pixels."""
    from PIL import Image, ImageDraw, ImageFont

    info, images = split.info, split.images if split.images.ndim == 4 else split.images[:, None]
    classes = range(min(info.num_classes, MAX_ROWS))
    font = ImageFont.load_default(size=14)
    label_width = 12 + max(int(font.getlength(info.classes[c])) for c in classes)
    gap = 4
    sheet = Image.new("RGB", (label_width + per_class * (TILE + gap), len(classes) * (TILE + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for row, c in enumerate(classes):
        top = gap + row * (TILE + gap)
        draw.text((6, top + TILE // 2), info.classes[c], fill="black", font=font, anchor="lm")
        for column, index in enumerate(np.flatnonzero(split.labels == c)[:per_class]):
            pixels = np.asarray(images[index])
            tile = Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0))
            tile = tile.resize((TILE, TILE), Image.Resampling.NEAREST if max(pixels.shape) <= TILE else
                               Image.Resampling.LANCZOS)
            sheet.paste(tile.convert("RGB"), (label_width + column * (TILE + gap), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
