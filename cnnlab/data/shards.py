"""`shards:PATTERN`: a dataset kept as WebDataset tar shards, streamed.

    shards:data/train-{000000..000099}.tar     the training shards (brace expansion, as WebDataset names them)
    data/test-000000.tar, ...                  the test shards: "train" replaced by "test" in the pattern, or the
                                               option "test": "PATTERN"

Each sample is the files of one key in a tar (WebDataset's layout, read by the `webdataset` package): an image
(`.jpg`, `.png`, `.webp`, ...) and its class, as an index (`.cls`) or a name (`.class`, `.label`, `.txt`). The
class names are the option "classes", else `classes.txt` beside the shards (one per line, as `cnnlab data
--to-shards` writes it), else the names the samples carry, sorted. A first look reads every tar's headers and
labels (never its images) and keeps the counts in the user cache: how many samples each shard holds is what
divides an epoch into steps and the shards between processes.

Training streams the shards, never holding more than a shuffle buffer: each epoch the shard list is shuffled with
a seed drawn from the run's generator, each process takes every size-th shard and each of its DataLoader workers
every workers-th of those; samples pass through a seeded shuffle buffer and are decoded and resized as a folder's
images are (`side`, `fit`, `color`). Shards divide unevenly, so an epoch is N // batch full batches for every
process, a process's stream going round its shards again if they run out first. The same seed, processes and
workers give the same batches, and a run resumed mid-epoch replays its streams to where it stopped, decoding
nothing it skips. The mean and std are measured on the first `stats_images` training images.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.datasets import Split, cache_dir
from cnnlab.files import atomic_write
from cnnlab.data.places import SHARED, PlaceDataset, with_defaults
from cnnlab.data.registry import PREFIXED, SPLITS
from cnnlab.data.stored import as_channels
from cnnlab.errors import ConfigError, DatasetError, ImageError, import_optional

PREFIX = "shards:"
INDEX_VERSION = 1
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "tif", "tiff", "gif", "img")
LABEL_EXTENSIONS = ("cls", "class", "label", "txt")
OPTIONS = {
    "side": (32, "pixels a side after resizing (8 to 512)"),
    "fit": ("crop", "keep the aspect by a centre crop or by padding with black (crop, pad)"),
    "color": ("auto", "rgb, gray, or auto: rgb when any of the first stats_images images has colour"),
    "test": (None, "the test shards' pattern (default: the pattern with train replaced by test, any number)"),
    "shuffle_buffer": (2000, "samples a stream shuffles among"),
    "stats_images": (10_000, "training images the mean and std are measured on"),
    "classes": (None, "class names, in label order"),
    "mean": (None, "per-channel mean of the training pixels in [0, 1]"),
    "std": (None, "per-channel standard deviation of the training pixels"),
}


def is_shards(name: str) -> bool:
    return name.lower().startswith(PREFIX)


def expand(pattern: str) -> list[Path]:
    """The shard files a brace pattern (`train-{000000..000099}.tar`) or a glob (`test-*.tar`) names, each
    checked to exist."""
    if "*" in pattern or "?" in pattern:
        path = Path(pattern).expanduser()
        paths = sorted(path.parent.glob(path.name))
        if not paths:
            raise DatasetError(f"shards:{pattern}: no such shards")
        return paths
    braceexpand = import_optional("braceexpand", "shards:PATTERN").braceexpand
    paths = [Path(p).expanduser() for p in braceexpand(pattern)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"shards:{pattern}: {len(missing)} of its {len(paths)} shard(s) not found "
                           f"(first: {missing[0]})")
    return paths


def check_options(options: dict | None) -> dict:
    from cnnlab.data import folders

    settings = with_defaults(options, OPTIONS, "a shards dataset")
    folders.check_options({key: settings[key] for key in SHARED})  # the settings a folder has too, checked alike
    for key in ("shuffle_buffer", "stats_images"):
        value = settings[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10 ** 7):
            raise ConfigError(f"dataset option {key!r} must be an integer from 1 to 10000000, got {value!r}")
    if settings["test"] is not None and not isinstance(settings["test"], str):
        raise ConfigError(f"dataset option 'test' must be a shard pattern, got {settings['test']!r}")
    return settings


# -- the index: samples and labels per shard, from tar headers ------------------------------------------------------
def _split_name(member: str) -> tuple[str, str]:
    """WebDataset's key and extension of a tar member: the key is the path up to the first dot of its file name."""
    folder, _, name = member.rpartition("/")
    stem, _, extension = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def _shard_labels(path: Path) -> list[str]:
    """The label text of each sample (image and label) of one shard, in order, from its headers and label files."""
    labels, seen = [], {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, extension = _split_name(member.name)
                entry = seen.setdefault(key, {})
                if extension in IMAGE_EXTENSIONS:
                    entry["image"] = True
                elif extension in LABEL_EXTENSIONS and "label" not in entry:
                    entry["label"] = tar.extractfile(member).read(256).decode("utf-8", "replace").strip()
    except (tarfile.TarError, OSError) as err:
        raise DatasetError(f"{path}: not a readable tar shard ({err})") from None
    for entry in seen.values():
        if entry.get("image") and "label" in entry:
            labels.append(entry["label"])
    return labels


@dataclass(frozen=True)
class ShardSet:
    """One split's shards: their files, and the label text of each of their samples, shard by shard."""
    paths: tuple[Path, ...]
    labels: tuple[tuple[str, ...], ...]

    @property
    def counts(self) -> list[int]:
        return [len(labels) for labels in self.labels]


def _index_key(paths: list[Path]) -> str:
    digest = hashlib.sha256(f"v{INDEX_VERSION}\n".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


@functools.lru_cache(maxsize=8)
def shard_set(pattern: str) -> ShardSet:
    """The shards `pattern` names with their labels, from the user cache or read now (headers only)."""
    paths = expand(pattern)
    index = cache_dir() / "shards" / f"{_index_key(paths)}.json"
    if index.is_file():
        try:
            labels = json.loads(index.read_text())["labels"]
            if len(labels) == len(paths):
                return ShardSet(tuple(paths), tuple(tuple(map(str, ls)) for ls in labels))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # rebuilt below
    labels = [_shard_labels(p) for p in paths]
    if not sum(map(len, labels)):
        raise DatasetError(f"shards:{pattern}: no sample with an image ({', '.join(IMAGE_EXTENSIONS[:3])}, ...) and "
                           f"a label ({', '.join('.' + e for e in LABEL_EXTENSIONS)})")
    index.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(index, json.dumps({"labels": labels}).encode())
    return ShardSet(tuple(paths), tuple(tuple(ls) for ls in labels))


# -- reading samples --------------------------------------------------------------------------------------------------
def raw_samples(paths):
    """(image bytes, label text) of every sample of the shards `paths`, in order, read by webdataset."""
    tariterators = import_optional("webdataset.tariterators", "shards:PATTERN")
    for sample in tariterators.tarfile_samples({"url": str(p)} for p in paths):
        image = next((sample[e] for e in IMAGE_EXTENSIONS if e in sample), None)
        label = next((sample[e] for e in LABEL_EXTENSIONS if e in sample), None)
        if image is not None and label is not None:
            yield image, bytes(label[:256]).decode("utf-8", "replace").strip()


def shuffled(samples, buffer: int, rng: np.random.Generator):
    """`samples` in a random order drawn from a buffer of `buffer` (WebDataset's shuffle, seeded)."""
    held = []
    for sample in samples:
        if len(held) < buffer:
            held.append(sample)
            continue
        pick = int(rng.integers(buffer))
        held[pick], sample = sample, held[pick]
        yield sample
    rng.shuffle(held)
    yield from held


@dataclass(frozen=True)
class Decoder:
    """What turns a sample into training data: its image bytes into uint8 [C, side, side], prepared as a folder's
    images are, and its label text into a class index. Small, so that DataLoader workers receive it whole."""
    side: int
    fit: str
    channels: int
    classes: tuple[str, ...]

    def image(self, data: bytes) -> np.ndarray:
        from cnnlab.data.preprocess import load_photo

        try:
            pixels = load_photo(bytes(data), self.side, self.fit, "shard sample")
        except ImageError:
            pixels = np.zeros((3, self.side, self.side), np.uint8)  # a broken sample trains as black, not a crash
        return as_channels(pixels[None], self.channels)[0]

    def label(self, text: str) -> int:
        if text.isdigit() and int(text) < len(self.classes):
            return int(text)
        try:
            return self.classes.index(text)
        except ValueError:
            raise DatasetError(f"shard label {text[:40]!r} is not one of the {len(self.classes)} classes") from None


class ShardImages:
    """A split's images in its shards, in order, as uint8 [N, C, side, side]: read by streaming from the first
    shard (an index far in costs the samples before it); consecutive reads continue the same stream."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, dataset: "ShardDataset", shards: ShardSet, count: int | None = None):
        self.dataset, self.shards = dataset, shards
        self.count = sum(shards.counts) if count is None else count
        self._cursor = None  # (position of the next sample, its stream)

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        side = self.dataset.settings["side"]
        return (self.count, self.dataset.channels, side, side)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def head(self, count: int) -> "ShardImages":
        return ShardImages(self.dataset, self.shards, min(count, self.count))

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._cursor is None or self._cursor[0] > start:
            self._cursor = [0, raw_samples(self.shards.paths)]
        position, stream = self._cursor
        out = []
        for image, _ in stream:
            position += 1
            if position > start:
                out.append(self.dataset.decoder.image(image))
            if position >= stop:
                break
        self._cursor[0] = position
        if len(out) != stop - start:
            raise DatasetError(f"{self.shards.paths[0].parent}: the shards changed while being read")
        side = self.dataset.settings["side"]
        return np.stack(out) if out else np.zeros((0, self.dataset.channels, side, side), np.uint8)

    def take(self, positions) -> np.ndarray:
        positions = np.asarray(positions, np.int64).reshape(-1)
        if not len(positions):
            return self._read(0, 0)
        if positions.min() < 0 or positions.max() >= self.count:
            raise IndexError(f"index out of range for {self.count} images")
        low, high = int(positions.min()), int(positions.max()) + 1
        return self._read(low, high)[positions - low]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[key[1:]] if isinstance(key[0], (int, np.integer)) else rows[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            return self.take([key % self.count if key < 0 else key])[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.count)
            return self._read(start, stop)[::step] if stop > start else self._read(0, 0)
        key = np.asarray(key)
        return self.take(np.flatnonzero(key) if key.dtype == bool else key)

    def chunks(self, size: int = 4096):
        for start in range(0, self.count, size):
            yield self[start:start + size]

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array if dtype is None else array.astype(dtype)


class ShardDataset(PlaceDataset):
    """The `DatasetInfo` of `shards:PATTERN` with its options (cnnlab.data.places)."""

    licence = "the shards' own"
    options = tuple(OPTIONS)

    def __init__(self, name: str, options: dict | None = None):
        self.name = name
        self.pattern = name[len(PREFIX):]
        self.settings = check_options(options)
        self.source = f"the tar shards {self.pattern}"

    def patterns(self) -> dict[str, str]:
        test = self.settings["test"]
        if test is None:
            folder, _, name = self.pattern.rpartition("/")
            if "train" not in name:
                raise DatasetError(f"{self.name}: cannot tell its test shards (no 'train' in {name} to replace); give "
                                   "--dataset-options '{\"test\": \"PATTERN\"}'")
            name = re.sub(r"\{[^}]*\}", "*", name.replace("train", "test"))  # as many test shards as there are
            test = f"{folder}/{name}" if folder else name
        return {"train": self.pattern, "test": test}

    def shards(self, split: str) -> ShardSet:
        return shard_set(self.patterns()[split])

    def _classes(self) -> tuple[str, ...]:
        listed = self.shards("train").paths[0].parent / "classes.txt"
        if listed.is_file():
            names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
            if len(names) >= 2:
                return tuple(names)
        found = {label for labels in self.shards("train").labels for label in labels}
        if all(label.isdigit() for label in found):
            return tuple(str(n) for n in range(max(int(label) for label in found) + 1))
        return tuple(sorted(found))

    @functools.cached_property
    def decoder(self) -> Decoder:
        return Decoder(self.settings["side"], self.settings["fit"], self.channels, self.classes)

    @functools.cached_property
    def _sample(self) -> np.ndarray:
        """The first stats_images training images, in RGB."""
        from cnnlab.data.preprocess import load_photo

        count = min(self.settings["stats_images"], sum(self.shards("train").counts))
        side, fit = self.settings["side"], self.settings["fit"]
        out = np.empty((count, 3, side, side), np.uint8)
        for n, (image, _) in zip(range(count), raw_samples(self.shards("train").paths)):
            try:
                out[n] = load_photo(bytes(image), side, fit, "shard sample")
            except ImageError:
                out[n] = 0
        return out

    def _has_colour(self) -> bool:
        from cnnlab.data.folders import is_colour

        return is_colour(self._sample)

    def _measure_stats(self) -> tuple[list[float], list[float]]:
        from cnnlab.data.folders import channel_stats

        return channel_stats(as_channels(self._sample, self.channels))

    def load(self, split: str, data_dir=None, quiet: bool = False, limit: int | None = None, **options) -> Split:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}")
        shards = self.shards(split)
        labels = np.array([self.decoder.label(text) for texts in shards.labels for text in texts], np.int64)
        images = ShardImages(self, shards)
        if limit is not None:
            images, labels = images.head(limit), labels[:limit]
        return Split(images, labels, self, split)


@functools.lru_cache(maxsize=32)
def _shard_dataset(name: str, options_json: str) -> ShardDataset:
    return ShardDataset(name, json.loads(options_json))


def shard_dataset(name: str, options: dict | None = None) -> ShardDataset:
    pattern = name[len(PREFIX):]
    if "://" not in pattern and not pattern.startswith("/"):
        pattern = os.path.abspath(os.path.expanduser(pattern))
    return _shard_dataset(PREFIX + pattern, json.dumps(check_options(options), sort_keys=True))


def canonical(name: str) -> str:
    return shard_dataset(name).name


# -- writing -------------------------------------------------------------------------------------------------------
def write_shards(dataset, out: Path, per_shard: int = 1000) -> dict[str, str]:
    """A folder dataset's train and test splits as WebDataset shards in `out` (each sample its original image
    file and its class index), with classes.txt; the pattern of each split's shards."""
    wds = import_optional("webdataset", "cnnlab data --to-shards")
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in dataset.classes))
    patterns = {}
    for split in SPLITS:
        files = dataset.split_files(split)
        labels = dataset.load(split, quiet=True).labels
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0) as writer:
            for n, (path, label) in enumerate(zip(files, labels)):
                extension = path.suffix.lower().lstrip(".") or "img"
                writer.write({"__key__": f"{n:08d}", extension if extension in IMAGE_EXTENSIONS else "img":
                              path.read_bytes(), "cls": int(label)})
            count = writer.shard
        last = max(count - 1, 0)
        patterns[split] = str(out / (f"{split}-{{000000..{last:06d}}}.tar" if last else f"{split}-000000.tar"))
    return patterns


PREFIXED["shards"] = shard_dataset
