"""`hf:PATH`: a Hugging Face `datasets` image set: saved with `save_to_disk`, or as Parquet files, read through the
`datasets` package (memory-mapped Arrow: the rows stay on disk).

    hf:flowers/            save_to_disk's folder of a DatasetDict with "train" and "test" (or "validation")
    hf:flowers-parquet/    Parquet files named train-*.parquet and test-*.parquet (or validation-*), in the folder
                           or its data/ folder, as the Hub keeps them
    hf:user/name           the Hub itself, when this machine can reach it (downloaded into datasets' own cache)

The image column is the one of type `Image` (else named image, img, ...), the label column the `ClassLabel` one
(else named label, labels, ...), or the options "image_column" and "label_column". Each image is decoded when it
is read (in DataLoader workers when training) and resized as a folder's are (`side`, `fit`, `color`); the class
names are the label's `ClassLabel` names, else its values sorted. The mean and std are measured on the training
images once, and recorded by the run.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import numpy as np

from cnnlab.data.datasets import Split, cache_dir
from cnnlab.data.places import SHARED, PlaceDataset, with_defaults
from cnnlab.data.registry import PREFIXED, SPLITS
from cnnlab.data.stored import StoredImages, as_channels
from cnnlab.errors import ConfigError, DatasetError, import_optional

PREFIX = "hf:"
IMAGE_NAMES = ("image", "img", "picture", "photo", "pixel_values")
LABEL_NAMES = ("label", "labels", "class", "target", "fine_label", "category")
TEST_NAMES = ("test", "validation", "valid", "val")
COLOUR_PROBE = 2000  # training images that decide, with color "auto", whether the set has colour
OPTIONS = {
    "side": (32, "pixels a side after resizing (8 to 512)"),
    "fit": ("crop", "keep the aspect by a centre crop or by padding with black (crop, pad)"),
    "color": ("auto", "rgb, gray, or auto: rgb when any of the first 2,000 training images has colour"),
    "image_column": (None, "the column of images (default: the one of type Image)"),
    "label_column": (None, "the column of labels (default: the one of type ClassLabel)"),
    "classes": (None, "class names, in label order"),
    "mean": (None, "per-channel mean of the training pixels in [0, 1]"),
    "std": (None, "per-channel standard deviation of the training pixels"),
}


def check_options(options: dict | None) -> dict:
    from cnnlab.data import folders

    settings = with_defaults(options, OPTIONS, "an hf: dataset")
    folders.check_options({key: settings[key] for key in SHARED})  # the settings a folder has too, checked alike
    for key in ("image_column", "label_column"):
        if settings[key] is not None and not isinstance(settings[key], str):
            raise ConfigError(f"dataset option {key!r} must be a column name, got {settings[key]!r}")
    return settings


@functools.lru_cache(maxsize=8)
def open_splits(where: str) -> dict:
    """{"train": Dataset, "test": Dataset} of a saved DatasetDict, a folder of Parquet files or a Hub name."""
    datasets = import_optional("datasets", "hf:PATH")
    path = Path(where).expanduser()
    try:
        if (path / "dataset_dict.json").is_file():
            found = dict(datasets.load_from_disk(str(path)))
        elif path.is_dir() or path.suffix == ".parquet":
            files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
            found = {}
            for split in ("train", *TEST_NAMES):
                chosen = [str(f) for f in files if f.name.startswith(split)]
                if chosen:
                    found[split] = datasets.Dataset.from_parquet(chosen, cache_dir=str(cache_dir() / "hf"))
        elif (path / "state.json").is_file():
            raise DatasetError(f"hf:{where}: one split saved alone; save a DatasetDict with train and test splits")
        elif path.exists():
            raise DatasetError(f"hf:{where}: neither a saved dataset (dataset_dict.json) nor Parquet files")
        else:
            found = dict(datasets.load_dataset(where))  # a Hub name: needs the network
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 (datasets raises many kinds; each is one line naming the input)
        raise DatasetError(f"hf:{where}: cannot read it ({type(err).__name__}: {str(err).splitlines()[0][:120]})") \
            from None
    test = next((name for name in TEST_NAMES if name in found), None)
    if "train" not in found or test is None:
        raise DatasetError(f"hf:{where}: needs a train split and a test (or validation) split; it has "
                           f"{', '.join(found) or 'none'}")
    return {"train": found["train"], "test": found[test]}


@functools.lru_cache(maxsize=8)
def _undecoded(where: str, split: str, column: str):
    """The split with its image column as stored (bytes or a path), for load_photo to decode as a folder's file."""
    datasets = import_optional("datasets", "hf:PATH")
    return open_splits(where)[split].cast_column(column, datasets.Image(decode=False))


def _column(dataset, given: str | None, kind: str, names: tuple[str, ...], where: str) -> str:
    columns = list(dataset.features)
    if given is not None:
        if given not in columns:
            raise DatasetError(f"hf:{where}: no column {given!r} (it has {', '.join(columns)})")
        return given
    typed = [c for c in columns if type(dataset.features[c]).__name__ == kind]
    named = [c for c in columns if c.lower() in names]
    if typed or named:
        return (typed or named)[0]
    option = "image_column" if kind == "Image" else "label_column"
    raise DatasetError(f"hf:{where}: which column holds the {'images' if kind == 'Image' else 'labels'}? (it has "
                       f"{', '.join(columns)}; give the option {option})")


class HubRows:
    """Rows `rows` of one split, each image decoded when read as a folder's files are (picklable small: a
    DataLoader worker opens the dataset again from where it is)."""

    def __init__(self, where: str, split: str, column: str, rows: np.ndarray, side: int, fit: str, channels: int):
        self.where, self.split, self.column, self.rows = where, split, column, np.asarray(rows, np.int64)
        self.side, self.fit, self.channels = side, fit, channels

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, positions: np.ndarray) -> "HubRows":
        chosen = copy.copy(self)
        chosen.rows = self.rows[positions]
        return chosen

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.side, self.side)

    def read(self, positions: np.ndarray) -> np.ndarray:
        from cnnlab.data.preprocess import load_photo

        table = _undecoded(self.where, self.split, self.column)
        out = np.empty((len(positions), 3, self.side, self.side), np.uint8)
        for n, cell in enumerate(table[[int(r) for r in self.rows[positions]]][self.column]):
            source = cell.get("bytes") or cell.get("path")
            out[n] = load_photo(source if isinstance(source, bytes) else Path(source), self.side, self.fit,
                                f"hf:{self.where} {self.split} row")
        return as_channels(out, self.channels)


class HubDataset(PlaceDataset):
    """The `DatasetInfo` of `hf:PATH` with its options (cnnlab.data.places)."""

    licence = "the dataset's own"
    options = tuple(OPTIONS)

    def __init__(self, name: str, options: dict | None = None):
        self.name, self.where = name, name[len(PREFIX):]
        self.settings = check_options(options)
        self.source = f"the Hugging Face dataset {self.where}"

    def _split(self, split: str):
        return open_splits(self.where)[split]

    @functools.cached_property
    def columns(self) -> tuple[str, str]:
        train = self._split("train")
        return (_column(train, self.settings["image_column"], "Image", IMAGE_NAMES, self.where),
                _column(train, self.settings["label_column"], "ClassLabel", LABEL_NAMES, self.where))

    def _classes(self) -> tuple[str, ...]:
        feature = self._split("train").features[self.columns[1]]
        if hasattr(feature, "names"):
            return tuple(feature.names)
        values = set(self._split("train")[self.columns[1]])
        if all(isinstance(v, int) for v in values):
            return tuple(str(n) for n in range(max(values) + 1))
        return tuple(sorted(map(str, values)))

    def _labels(self, split: str) -> np.ndarray:
        values = self._split(split)[self.columns[1]]
        if all(isinstance(v, (int, np.integer)) for v in values):
            labels = np.asarray(values, np.int64)
        else:
            index = {name: n for n, name in enumerate(self.classes)}
            unknown = sorted({str(v) for v in values} - set(index))
            if unknown:
                raise DatasetError(f"hf:{self.where}: label {unknown[0][:40]!r} is not one of its classes")
            labels = np.array([index[str(v)] for v in values], np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DatasetError(f"hf:{self.where}: label {int(labels.max())} out of range for {self.num_classes} "
                               "classes")
        return labels

    def images(self, split: str, channels: int) -> StoredImages:
        count = len(self._split(split))
        return StoredImages(HubRows(self.where, split, self.columns[0], np.arange(count), self.settings["side"],
                                    self.settings["fit"], channels))

    def _has_colour(self) -> bool:
        from cnnlab.data.folders import is_colour

        return is_colour(self.images("train", 3).head(COLOUR_PROBE))

    def _measure_stats(self) -> tuple[list[float], list[float]]:
        from cnnlab.data.folders import channel_stats

        return channel_stats(self.images("train", self.channels))

    def load(self, split: str, data_dir=None, quiet: bool = False, limit: int | None = None, **options) -> Split:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}")
        images, labels = self.images(split, self.channels), self._labels(split)
        if limit is not None:
            images, labels = images.head(limit), labels[:limit]
        return Split(images, labels, self, split)


def canonical(name: str) -> str:
    where = name[len(PREFIX):]
    path = Path(where).expanduser()
    return PREFIX + str(path.resolve()) if path.exists() else name


@functools.lru_cache(maxsize=32)
def _hub_dataset(name: str, options_json: str) -> HubDataset:
    return HubDataset(name, json.loads(options_json))


def hub_dataset(name: str, options: dict | None = None) -> HubDataset:
    return _hub_dataset(canonical(name), json.dumps(check_options(options), sort_keys=True))


def is_hub(name: str) -> bool:
    return name.lower().startswith(PREFIX)


PREFIXED["hf"] = hub_dataset
