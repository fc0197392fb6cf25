"""`folder:PATH`: any folder of images as a dataset, one sub-folder per class (torchvision's ImageFolder layout).

    PATH/cat/1.jpg, PATH/dog/2.png, ...            split into train and test here: seeded, stratified
    PATH/train/cat/1.jpg, PATH/test/cat/9.jpg, ... the folder's own split

Every file Pillow reads is decoded once, resized to `side` x `side` (centre crop or padding keeps the aspect) and
stored with the others as one uint8 array file (`.npy`, [N, 3, side, side]) in `PATH/.cnnlab-cache/` or, when PATH
is not writable, the user cache. The file's name is a hash of the list of files with their sizes and modification
times and of the settings that change the pixels, so that a second run memory-maps the decoded set in well under
a second, and any change to the folder decodes it again. Files that are not readable images are skipped and
counted in one summary line; the index beside the array lists them.

Grey or colour is a view of the stored RGB array: grey is the luminance Pillow's "L" mode computes, exact for
images that are grey already. The split and the per-channel mean and std of the training images are computed at
load time (a pass over the array), so neither needs a cache of its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.datasets import Split, cache_dir
from cnnlab.data.download import atomic_write, transient_bar
from cnnlab.data.registry import PREFIXED, SPLITS
from cnnlab.errors import ConfigError, DatasetError, ImageError

PREFIX = "folder:"
CACHE_VERSION = 1  # bump when decoding changes, so that stale caches are never read
CACHE_FOLDER = ".cnnlab-cache"
# Pillow's "L" weights (ITU-R 601-2), in thousandths as Pillow computes them
LUMA = np.array([299, 587, 114], dtype=np.uint32)
POOL_FROM = 256  # fewer files decode in this process: starting workers costs more than they save
COLORS = ("auto", "rgb", "gray")
REASONS = (("not a readable image", "not an image"), ("corrupt or truncated", "truncated or corrupt"),
           ("empty file", "empty"))
FITS = ("crop", "pad")
# a folder dataset's settings (`--dataset-options`): name -> (default, what it is)
OPTIONS = {
    "side": (32, "pixels a side after resizing (8 to 512)"),
    "fit": ("crop", "keep the aspect by a centre crop or by padding with black (crop, pad)"),
    "color": ("auto", "rgb, gray, or auto: rgb when any image has colour"),
    "test_fraction": (0.2, "share of each class held out for testing when there is no PATH/test"),
    "split_seed": (0, "the seed of that held-out draw"),
    # recorded by the first load, so that a run's model gets the inputs it was trained on even if the folder
    # changes or moves; give them to override (e.g. ImageNet's statistics for a pretrained model)
    "classes": (None, "class names, in label order"),
    "mean": (None, "per-channel mean of the training pixels in [0, 1]"),
    "std": (None, "per-channel standard deviation of the training pixels"),
}
RECORDED = ("classes", "mean", "std")


def is_folder(name: str) -> bool:
    return name.lower().startswith(PREFIX)


def folder_path(name: str) -> Path:
    return Path(name[len(PREFIX):]).expanduser()


def canonical(name: str) -> str:
    """`folder:PATH` with PATH absolute, so that a run's config names the folder from anywhere."""
    return PREFIX + str(folder_path(name).resolve())


def check_options(options: dict | None) -> dict:
    """The options with their defaults filled in, each checked (a ConfigError names the one that is wrong)."""
    options = dict(options or {})
    for key in options:
        if key not in OPTIONS:
            raise ConfigError(f"dataset option {key!r}: a folder dataset has no such option (it takes "
                              f"{', '.join(OPTIONS)})")
    settings = {key: options.get(key, default) for key, (default, _) in OPTIONS.items()}

    def need(ok: bool, key: str, what: str):
        if not ok:
            raise ConfigError(f"dataset option {key!r} must be {what}, got {json.dumps(settings[key])[:60]}")

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    need(integer(settings["side"]) and 8 <= settings["side"] <= 512, "side", "an integer from 8 to 512")
    need(settings["fit"] in FITS, "fit", f"one of {', '.join(FITS)}")
    need(settings["color"] in COLORS, "color", f"one of {', '.join(COLORS)}")
    fraction = settings["test_fraction"]
    need(isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction < 1,
         "test_fraction", "a fraction between 0 and 1")
    need(integer(settings["split_seed"]) and settings["split_seed"] >= 0, "split_seed", "a non-negative integer")
    classes = settings["classes"]
    need(classes is None or (isinstance(classes, list) and len(classes) >= 2 and
                             all(isinstance(c, str) and c for c in classes)), "classes", "a list of 2 or more names")
    for key in ("mean", "std"):
        value = settings[key]
        need(value is None or (isinstance(value, list) and len(value) in (1, 3) and
                               all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)),
             key, "a list of 1 or 3 numbers")
    need(settings["std"] is None or all(v > 0 for v in settings["std"]), "std", "positive")
    mean, std, colour = settings["mean"], settings["std"], settings["color"]
    need(mean is None or std is None or len(mean) == len(std), "std", f"as many numbers as mean ({len(mean or [])})")
    need(mean is None or colour == "auto" or len(mean) == (3 if colour == "rgb" else 1), "mean",
         f"{3 if colour == 'rgb' else 1} number(s) for color {colour}")
    return settings


# -- the folder's files -------------------------------------------------------------------------------------------
def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its files (any depth, hidden ones left out), for the sub-folders of `folder`."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found[sub.name] = sorted(p for p in sub.rglob("*") if p.is_file() and
                                 not any(part.startswith(".") for part in p.relative_to(sub).parts))
    return found


@dataclass(frozen=True)
class Listing:
    """What a folder holds: its classes and, in one order, every file with its class and given split (None: the
    split is drawn)."""
    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray
    given_split: np.ndarray | None  # 0 train, 1 test, per file; None when the folder has no train/test

    def key(self, side: int, fit: str) -> str:
        """A hash of every file's path, size and modification time, and of what changes the decoded pixels."""
        digest = hashlib.sha256(f"v{CACHE_VERSION} {side} {fit}\n".encode())
        for path in self.files:
            try:
                stat = path.stat()
            except OSError:
                stat = None  # decoding will report it
            digest.update(f"{path.relative_to(self.root)}\0{stat and stat.st_size}\0"
                          f"{stat and stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:24]


def list_folder(root: Path) -> Listing:
    if not root.is_dir():
        raise DatasetError(f"folder:{root}: no such folder" if not root.exists() else
                           f"folder:{root}: is a file, not a folder of class sub-folders")
    try:
        if (root / "train").is_dir() and (root / "test").is_dir():
            parts = {split: _class_files(root / split) for split in SPLITS}
            extra = sorted(set(parts["test"]) - set(parts["train"]))
            if extra:
                raise DatasetError(f"folder:{root}: test/ has classes that train/ lacks: {', '.join(extra[:5])}")
        else:
            parts = {None: _class_files(root)}
    except OSError as err:
        raise DatasetError(f"folder:{root}: cannot list it ({err.strerror or err})") from None
    classes = tuple(parts.get("train", parts.get(None)))
    where = f"{root}/train" if "train" in parts else str(root)
    if len(classes) < 2:
        raise DatasetError(f"folder:{root}: {len(classes) or 'no'} class folder{'s' if not classes else ''} in "
                           f"{where} ({', '.join(classes) or 'none'}); a classifier needs one sub-folder per class, "
                           "at least two")
    for split, found in parts.items():
        empty = [c for c in classes if not found.get(c)] if split != "test" else []
        if empty:
            raise DatasetError(f"folder:{root}: class folder{'s' if len(empty) > 1 else ''} "
                               f"{', '.join(empty[:5])} in {where} {'are' if len(empty) > 1 else 'is'} empty")
    files, labels, given = [], [], []
    for n, split in enumerate(parts):
        for label, name in enumerate(classes):
            paths = parts[split].get(name, [])
            files += paths
            labels += [label] * len(paths)
            given += [n] * len(paths)
    return Listing(root, classes, tuple(files), np.array(labels, np.int64),
                   np.array(given, np.int8) if None not in parts else None)


# -- decoding -----------------------------------------------------------------------------------------------------
def _decode_one(job: tuple[int, str, int, str]) -> tuple[int, np.ndarray | None, str | None]:
    from cnnlab.data.preprocess import load_photo  # Pillow: not for `--help`

    index, path, side, fit = job
    try:
        return index, load_photo(Path(path), side, fit), None
    except ImageError as err:
        reason = str(err).split(": ", 1)[-1]
        return index, None, next((short for long, short in REASONS if reason.startswith(long)), reason[:60])
    except Exception as err:  # noqa: BLE001 (a decoder's own bug in one file must not stop the others)
        return index, None, f"{err.__class__.__name__}: {err}"[:80]


def workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _decode_all(listing: Listing, side: int, fit: str, array_path: Path, quiet: bool) -> list[tuple[int, str]]:
    """Decode every file into a new .npy at `array_path` (written in place, never whole in memory); the
    (index, reason) of each file that failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    count = len(listing.files)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    partial = array_path.with_name(f".{array_path.name}.{os.getpid()}.part")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(count, 3, side, side))
    jobs = [(i, str(p), side, fit) for i, p in enumerate(listing.files)]
    bad = []
    progress = None if quiet else Progress(TextColumn(f"decoding {listing.root.name}"), BarColumn(),
                                           MofNCompleteColumn(), TimeRemainingColumn(), **transient_bar())
    try:
        with progress or _Quiet():
            task = progress.add_task("decode", total=count) if progress else None
            cores = workers()
            if count < POOL_FROM or cores < 2:
                results = map(_decode_one, jobs)
                pool = None
            else:
                import multiprocessing

                # forkserver: the parent may hold torch's threads, which a plain fork would copy mid-flight
                pool = multiprocessing.get_context("forkserver").Pool(cores)
                results = pool.imap_unordered(_decode_one, jobs, chunksize=32)
            try:
                for index, pixels, error in results:
                    if pixels is None:
                        bad.append((index, error))
                    else:
                        out[index] = pixels
                    if progress:
                        progress.advance(task)
            finally:
                if pool:
                    pool.terminate()
        out.flush()
        del out
        os.replace(partial, array_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sorted(bad)


class _Quiet:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def cache_folders(root: Path) -> list[Path]:
    """Where a folder's decoded set may live: beside the data, then the user cache (one folder per data folder)."""
    named = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return [root / CACHE_FOLDER, cache_dir() / "folders" / f"{root.name}-{named}"]


@dataclass(frozen=True)
class Decoded:
    """A folder decoded: the usable files' pixels (memory-mapped uint8 [N, 3, side, side]), labels, given
    splits, and the files skipped with why."""
    listing: Listing
    pixels: np.ndarray
    keep: np.ndarray  # indices into listing.files of the decoded ones, in order
    skipped: tuple[tuple[str, str], ...]  # (path relative to the root, reason)
    path: Path  # the array file

    @property
    def labels(self) -> np.ndarray:
        return self.listing.labels[self.keep]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=4)
def decoded(root: Path, side: int, fit: str, quiet: bool = False) -> Decoded:
    """The folder's decoded set, from its cache or decoded now (and cached)."""
    listing = list_folder(root)
    key = listing.key(side, fit)
    for folder in cache_folders(root):
        index_path = folder / f"{key}.json"
        if index_path.is_file() and (folder / f"{key}.npy").is_file():
            try:
                index = json.loads(index_path.read_text())
                pixels = np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                bad = [(int(i), str(why)) for i, why in index["skipped"]]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise DatasetError(f"{index_path}: unreadable folder cache ({err}); delete "
                                   f"{folder} to decode again") from None
            if pixels.shape != (len(listing.files), 3, side, side):
                raise DatasetError(f"{folder / f'{key}.npy'}: holds {pixels.shape}, expected "
                                   f"{(len(listing.files), 3, side, side)}; delete {folder} to decode again")
            return _result(listing, pixels, bad, folder / f"{key}.npy", quiet)
    folder = next((f for f in cache_folders(root) if _writable(f)), None)
    if folder is None:
        raise DatasetError(f"folder:{root}: nowhere to cache the decoded images ({' or '.join(map(str, cache_folders(root)))} "
                           "cannot be written)")
    bad = _decode_all(listing, side, fit, folder / f"{key}.npy", quiet)
    atomic_write(folder / f"{key}.json", json.dumps({"version": CACHE_VERSION, "side": side, "fit": fit,
                                                     "files": len(listing.files), "skipped": bad}).encode())
    pixels = np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False)
    return _result(listing, pixels, bad, folder / f"{key}.npy", quiet)


def _result(listing: Listing, pixels: np.ndarray, bad: list[tuple[int, str]], path: Path, quiet: bool) -> Decoded:
    failed = {i for i, _ in bad}
    keep = np.array([i for i in range(len(listing.files)) if i not in failed], np.int64)
    skipped = tuple((str(listing.files[i].relative_to(listing.root)), why) for i, why in bad)
    result = Decoded(listing, pixels, keep, skipped, path)
    left = np.bincount(result.labels, minlength=len(listing.classes))
    if (left == 0).any():
        empty = [listing.classes[c] for c in np.flatnonzero(left == 0)]
        raise DatasetError(f"folder:{listing.root}: no readable image in class folder{'s' if len(empty) > 1 else ''} "
                           f"{', '.join(empty[:5])}")
    if skipped and not quiet:
        print(skipped_line(result), file=sys.stderr)
    return result


def skipped_line(result: Decoded, width: int = 80) -> str:
    """One line of at most `width` characters (a long file name aside): how many files were skipped, and the
    first of them with why (`cnnlab data` lists them all)."""
    count, total = len(result.skipped), len(result.listing.files)
    line = f"skipped {count} of {total:,} files, not readable images: "
    for n, (path, why) in enumerate(result.skipped):
        item = f"{path} ({why})"
        rest = f" and {count - n - 1} more" if n + 1 < count else ""
        if n and len(line) + len(item) + len(rest) > width:
            return line.rstrip(", ") + f" and {count - n} more"
        line += item + (", " if rest else "")
    return line


# -- splits and statistics ----------------------------------------------------------------------------------------
def split_indices(labels: np.ndarray, given: np.ndarray | None, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Positions (into `labels`) of each split: the given one, or for each class a seeded draw of
    round(fraction x its images) for testing (at least one, and at least one left for training). Each split is
    in a seeded random order, as MNIST's files are, so that its first N images (`--train-limit`) show every
    class rather than the first classes' folders."""
    if given is not None:
        splits = {split: np.flatnonzero(given == n) for n, split in enumerate(SPLITS)}
    else:
        test = []
        for c in np.unique(labels):
            pool = np.flatnonzero(labels == c)
            if len(pool) < 2:
                continue  # a single image trains; a test of its class would have none to learn from
            take = min(len(pool) - 1, max(1, round(fraction * len(pool))))
            test.append(pool[np.random.default_rng([seed, int(c)]).permutation(len(pool))[:take]])
        test = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
        splits = {"train": np.setdiff1d(np.arange(len(labels)), test), "test": test}
    return {split: chosen[np.random.default_rng([seed, len(labels), n]).permutation(len(chosen))]
            for n, (split, chosen) in enumerate(splits.items())}


def as_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Stored RGB uint8 [N, 3, H, W] -> [N, channels, H, W]; grey is Pillow's rounded "L" luminance."""
    if channels == 3:
        return np.asarray(pixels)
    gray = np.tensordot(LUMA, np.asarray(pixels, np.uint32), axes=([0], [1]))
    return ((gray + 500) // 1000).astype(np.uint8)[:, None]


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 [N, C, H, W] scaled to [0, 1], in chunks (float64 sums)."""
    channels = images.shape[1]
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(images), chunk):
        x = np.asarray(images[start:start + chunk], np.float64) / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
        count += x.size // channels
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 0))
    return [round(float(m), 4) for m in mean], [round(float(max(s, 1e-3)), 4) for s in std]


def is_colour(pixels: np.ndarray, chunk: int = 4096) -> bool:
    """Whether any stored image has a pixel whose channels differ."""
    for start in range(0, len(pixels), chunk):
        x = np.asarray(pixels[start:start + chunk])
        if (x[:, 0] != x[:, 1]).any() or (x[:, 1] != x[:, 2]).any():
            return True
    return False


# -- the dataset --------------------------------------------------------------------------------------------------
class FolderDataset:
    """The `DatasetInfo` of `folder:PATH` with its options: the same fields, each found only when read, so that
    listing runs does not read their folders. The run's recorded classes, mean and std win over the folder."""

    task = "classification"
    files: dict = {}
    sha256: dict = {}
    mirrors: tuple = ()
    licence = "the folder's own"
    options = tuple(OPTIONS)

    def __init__(self, name: str, options: dict | None = None):
        self.name = name
        self.root = folder_path(name)
        self.settings = check_options(options)
        self.source = f"the images in {self.root}"

    def load(self, split: str, data_dir=None, quiet: bool = False, limit: int | None = None, **options) -> Split:
        images, labels = self.split_arrays(split, quiet)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return Split(images, labels, self, split)

    def decoded(self, quiet: bool = True) -> Decoded:
        return decoded(self.root, self.settings["side"], self.settings["fit"], quiet)

    @functools.cached_property
    def channels(self) -> int:
        recorded = self.settings["mean"]
        if recorded is not None:
            return len(recorded)
        if self.settings["color"] != "auto":
            return 3 if self.settings["color"] == "rgb" else 1
        return 3 if is_colour(self.decoded().pixels) else 1

    @functools.cached_property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.settings["classes"] or list_folder(self.root).classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @functools.cached_property
    def _stats(self) -> tuple[list[float], list[float]]:
        if self.settings["mean"] is not None and self.settings["std"] is not None:
            return self.settings["mean"], self.settings["std"]
        images, _ = self.split_arrays("train", quiet=True)
        return channel_stats(images)

    @property
    def mean(self) -> float | tuple[float, ...]:
        mean = self._stats[0]
        return mean[0] if len(mean) == 1 else tuple(mean)

    @property
    def std(self) -> float | tuple[float, ...]:
        std = self._stats[1]
        return std[0] if len(std) == 1 else tuple(std)

    def prepare(self, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
        """A user's image made one of this dataset's: resized and cropped or padded alike, grey or colour alike."""
        from cnnlab.data.preprocess import load_photo

        return as_channels(load_photo(source, self.settings["side"], self.settings["fit"], name)[None], self.channels)[0]

    def recorded(self) -> dict:
        """The classes, mean and std a run records in its dataset options."""
        return {"classes": list(self.classes), "mean": list(self._stats[0]), "std": list(self._stats[1])}

    def split_arrays(self, split: str, quiet: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [N, C, side, side], int64 labels) of one split."""
        found = self.decoded(quiet)
        listing = found.listing
        if self.settings["classes"] is not None and tuple(self.settings["classes"]) != listing.classes:
            raise DatasetError(f"{self.name}: its classes ({', '.join(listing.classes)[:60]}) are not the run's "
                               f"({', '.join(self.settings['classes'])[:60]})")
        given = listing.given_split[found.keep] if listing.given_split is not None else None
        where = split_indices(found.labels, given, self.settings["test_fraction"], self.settings["split_seed"])
        chosen = found.keep[where[split]]
        if not len(chosen):
            raise DatasetError(f"{self.name}: its {split} split has no readable image")
        images = as_channels(found.pixels[chosen], self.channels)
        images.setflags(write=False)
        return images, listing.labels[chosen]


@functools.lru_cache(maxsize=32)
def _folder_dataset(name: str, options_json: str) -> FolderDataset:
    return FolderDataset(name, json.loads(options_json))


def folder_dataset(name: str, options: dict | None = None) -> FolderDataset:
    """The folder dataset `name` with `options`: one object per (name, options) in a process, so that what it
    has found out (classes, statistics) is found once."""
    return _folder_dataset(canonical(name), json.dumps(check_options(options), sort_keys=True))


PREFIXED["folder"] = folder_dataset
