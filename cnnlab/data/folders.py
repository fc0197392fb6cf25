"""`folder:PATH`: any folder of images as a dataset, one sub-folder per class (torchvision's ImageFolder layout).

    PATH/cat/1.jpg, PATH/dog/2.png, ...            split into train and test here: seeded, stratified
    PATH/train/cat/1.jpg, PATH/test/cat/9.jpg, ... the folder's own split

Every file Pillow reads is decoded once, resized to `side` x `side` (centre crop or padding keeps the aspect) and
stored with the others as one uint8 array file (`.npy`, [N, 3, side, side]) in `PATH/.cnnlab-cache/` or, when PATH
is not writable, the user cache. The file's name is a hash of the list of files with their sizes and modification
times and of the settings that change the pixels, so that a second run memory-maps the decoded set in well under
a second, and any change to the folder decodes it again. Files that are not readable images are skipped and
counted in one summary line; the index beside the array lists them. Before decoding, the cache's size is checked
against the free disk: one that cannot fit is refused in one line.

A split is never loaded whole: its images are read by index through the memory map (cnnlab.data.stored), so that
a folder of any size costs memory for its labels only. With the option `"cache": false` nothing is written but a
small index: every file is decoded once to learn which are readable, whether any has colour, and its pixel sums
(for the mean and std), and training decodes each image again when it reads it, in DataLoader workers.

Grey or colour is a view of the stored RGB array: grey is the luminance Pillow's "L" mode computes, exact for
images that are grey already. The split and the per-channel mean and std of the training images are computed at
load time (a streamed pass over the array, in exact integer sums), so neither needs a cache of its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.datasets import Split, cache_dir
from cnnlab.data.download import transient_bar
from cnnlab.data.places import PlaceDataset, with_defaults
from cnnlab.data.registry import PREFIXED, SPLITS
from cnnlab.data.stored import CachedRows, DecodedFiles, StoredImages, as_channels
from cnnlab.errors import ConfigError, DatasetError, ImageError
from cnnlab.files import atomic_write, part_path, remove_stale_parts

PREFIX = "folder:"
CACHE_VERSION = 1  # bump when decoding changes, so that stale caches are never read
CACHE_FOLDER = ".cnnlab-cache"
# Free disk kept beyond a new cache: a disk filled to the last byte fails whatever writes next (the run's own files)
DISK_MARGIN = 256 * 2 ** 20
CHUNK_BYTES = 32 * 2 ** 20  # pixels a streamed pass over the images holds at a time
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
    "cache": (True, "decode once into a cache on disk (true), or decode each image when it is read (false)"),
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
    settings = with_defaults(options, OPTIONS, "a folder dataset")

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
    need(isinstance(settings["cache"], bool), "cache", "true or false")
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


def image_sums(pixels: np.ndarray) -> np.ndarray:
    """What a folder keeps of each of uint8 RGB images [N, 3, H, W]: [N, 2, 5] int64, the sums of each image's
    R, G, B and grey pixels and whether it has colour, then the sums of their squares. Exact integers: the
    statistics of any split are sums of these, the same whatever order they are added in."""
    wide = np.concatenate([pixels, as_channels(pixels, 1)], 1).astype(np.int64)
    out = np.zeros((len(pixels), 2, 5), np.int64)
    out[:, 0, :4], out[:, 1, :4] = wide.sum((2, 3)), (wide * wide).sum((2, 3))
    out[:, 0, 4] = ((pixels[:, 0] != pixels[:, 1]) | (pixels[:, 1] != pixels[:, 2])).any((1, 2))
    return out


def _decode_summed(job: tuple[int, str, int, str]) -> tuple[int, tuple | None, str | None]:
    """(index, (pixels, image_sums), None) of one file, or (index, None, why it failed)."""
    index, pixels, error = _decode_one(job)
    return index, (pixels, image_sums(pixels[None])[0]) if pixels is not None else None, error


def _scan_one(job: tuple[int, str, int, str]) -> tuple[int, np.ndarray | None, str | None]:
    """What a folder decoded on the fly keeps of one file: its `image_sums`."""
    index, pixels, error = _decode_one(job)
    return index, image_sums(pixels[None])[0] if pixels is not None else None, error


def workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _each_decoded(listing: Listing, side: int, fit: str, quiet: bool, job):
    """(index, result, reason it failed) of `job` on every file of the folder, on every core, in any order, with
    a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    count = len(listing.files)
    jobs = ((i, str(p), side, fit) for i, p in enumerate(listing.files))
    progress = None if quiet else Progress(TextColumn(f"decoding {listing.root.name}"), BarColumn(),
                                           MofNCompleteColumn(), TimeRemainingColumn(), **transient_bar())
    with progress or contextlib.nullcontext():
        task = progress.add_task("decode", total=count) if progress else None
        cores = workers()
        if count < POOL_FROM or cores < 2:
            results, pool = map(job, jobs), None
        else:
            import multiprocessing

            # forkserver: the parent may hold torch's threads, which a plain fork would copy mid-flight
            pool = multiprocessing.get_context("forkserver").Pool(cores)
            results = pool.imap_unordered(job, jobs, chunksize=32)
        try:
            for result in results:
                yield result
                if progress:
                    progress.advance(task)
        finally:
            if pool:
                pool.terminate()


def _decode_all(listing: Listing, side: int, fit: str, array_path: Path,
                quiet: bool) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode every file into a new .npy at `array_path`, each image written at its place as it comes (neither
    the array nor a map of it is ever in memory); the `image_sums` of every file (zeros for one that failed) and
    the (index, reason) of each that failed."""
    count = len(listing.files)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    partial = part_path(array_path)
    shape = (count, 3, side, side)
    sums, bad = np.zeros((count, 2, 5), np.int64), []
    try:
        with open(partial, "wb") as file:
            np.lib.format.write_array_header_1_0(file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                        "fortran_order": False, "shape": shape})
            offset, size = file.tell(), 3 * side * side
            file.truncate(offset + count * size)
            for index, decoded_file, error in _each_decoded(listing, side, fit, quiet, _decode_summed):
                if decoded_file is None:
                    bad.append((index, error))
                else:
                    os.pwrite(file.fileno(), decoded_file[0].tobytes(), offset + index * size)
                    sums[index] = decoded_file[1]
        os.replace(partial, array_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sums, sorted(bad)


def _scan_all(listing: Listing, side: int, fit: str, quiet: bool) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """`_scan_one` of every file: [N, 2, 5] int64 (zeros for a file that failed), and the failures."""
    found = np.zeros((len(listing.files), 2, 5), np.int64)
    bad = []
    for index, summary, error in _each_decoded(listing, side, fit, quiet, _scan_one):
        if summary is None:
            bad.append((index, error))
        else:
            found[index] = summary
    return found, sorted(bad)


def cache_folders(root: Path) -> list[Path]:
    """Where a folder's decoded set may live: beside the data, then the user cache (one folder per data folder)."""
    named = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return [root / CACHE_FOLDER, cache_dir() / "folders" / f"{root.name}-{named}"]


@dataclass(frozen=True)
class Decoded:
    """A folder decoded: every file's pixels (uint8 [N, 3, side, side] read by index from the cache; None when
    decoded on the fly) and `image_sums`, labels, given splits, and the files skipped with why."""
    listing: Listing
    pixels: StoredImages | None
    sums: np.ndarray  # [N, 2, 5] int64: image_sums of every file
    keep: np.ndarray  # indices into listing.files of the decoded ones, in order
    skipped: tuple[tuple[str, str], ...]  # (path relative to the root, reason)
    path: Path  # the array file (decoded on the fly: the file of the sums)
    side: int = 32
    fit: str = "crop"

    @property
    def labels(self) -> np.ndarray:
        return self.listing.labels[self.keep]

    def images(self, files: np.ndarray, channels: int) -> StoredImages:
        """The images of `files` (indices into listing.files), read by index as `channels` channels."""
        if self.pixels is not None:
            return StoredImages(CachedRows(self.path, files, channels))
        return StoredImages(DecodedFiles([self.listing.files[i] for i in files], self.side, self.fit, channels))

    def has_colour(self) -> bool:
        return bool(self.sums[self.keep, 0, 4].any())


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _size(count: float) -> str:
    return f"{count / 2 ** 30:.1f} GiB" if count >= 2 ** 30 else f"{count / 2 ** 20:.0f} MiB"


def check_disk(root: Path, folder: Path, need: int) -> None:
    """Refuse, in one line, a cache of `need` bytes that `folder`'s disk cannot hold (with DISK_MARGIN to spare)."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need + DISK_MARGIN > free:
        raise DatasetError(f"folder:{root}: its decoded cache needs {_size(need)} and {folder} has {_size(free)} "
                           "free; free some space, or decode each image when it is read: --dataset-options "
                           "'{\"cache\": false}'")


def decoded(root: Path, side: int, fit: str, quiet: bool = False, cache: bool = True) -> Decoded:
    """The folder's decoded set, from its cache or decoded now (and cached); with `cache` False, from its index
    of readable files and pixel sums (made now if need be), the images left in their files. Unless `quiet`,
    files that are not readable images are counted in one line on the standard error."""
    known = (root, side, fit, cache)
    if known not in _DECODED:
        while len(_DECODED) >= 4:  # the oldest goes
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[known] = _open_or_decode(root, side, fit, cache, quiet)
    result = _DECODED[known]
    if result.skipped and not quiet:
        print(skipped_line(result), file=sys.stderr)
    return result


_DECODED: dict[tuple, Decoded] = {}  # what `decoded` found, per folder and settings, in this process
decoded.cache_clear = _DECODED.clear


def _open_or_decode(root: Path, side: int, fit: str, cache: bool, quiet: bool) -> Decoded:
    listing = list_folder(root)
    key = listing.key(side, fit)
    count = len(listing.files)
    for folder in cache_folders(root):
        remove_stale_parts(folder)  # decodes that were killed: their writers are gone, and no one will finish them
        index_path, pixels_path, sums_path = (folder / f"{key}{end}" for end in (".json", ".npy", ".sums.npy"))
        found = _cached(index_path, pixels_path if cache else None, sums_path, count, side)
        if found is not None:
            bad, pixels, sums = found
            if sums is None:  # a cache made before the sums were kept beside it: one pass over it
                per_chunk = max(1, CHUNK_BYTES // (32 * side * side))  # image_sums widens 4 channels to int64
                sums = np.concatenate([image_sums(chunk) for chunk in pixels.chunks(per_chunk)] or
                                      [np.zeros((0, 2, 5), np.int64)])
                try:
                    atomic_write(sums_path, _npy_bytes(sums))
                except OSError:
                    pass  # a cache that cannot be written: the sums are made again next time
            return _result(listing, pixels, sums, bad, pixels_path if cache else sums_path, side, fit)
    folder = next((f for f in cache_folders(root) if _writable(f)), None)
    if folder is None:
        raise DatasetError(f"folder:{root}: nowhere to cache the decoded images ({' or '.join(map(str, cache_folders(root)))} "
                           "cannot be written)")
    pixels_path, sums_path = folder / f"{key}.npy", folder / f"{key}.sums.npy"
    if cache:
        check_disk(root, folder, count * 3 * side * side)
        sums, bad = _decode_all(listing, side, fit, pixels_path, quiet)
    else:
        sums, bad = _scan_all(listing, side, fit, quiet)
    atomic_write(sums_path, _npy_bytes(sums))
    atomic_write(folder / f"{key}.json", json.dumps({"version": CACHE_VERSION, "side": side, "fit": fit,
                                                     "files": count, "skipped": bad}).encode())
    pixels = StoredImages(CachedRows(pixels_path)) if cache else None
    return _result(listing, pixels, sums, bad, pixels_path if cache else sums_path, side, fit)


def _cached(index_path: Path, pixels_path: Path | None, sums_path: Path, count: int, side: int):
    """(skipped files, pixels or None, pixel sums or None: not kept by an older cache) of a finished decode, or
    None: not there, or damaged (a truncated or altered file, an index that does not parse, another version), in
    which case its files are removed so that it is decoded again."""
    wanted = [index_path, pixels_path if pixels_path else sums_path]
    if not all(path.is_file() for path in wanted):
        return None
    try:
        index = json.loads(index_path.read_text())
        bad = [(int(i), str(why)) for i, why in index["skipped"]]
        pixels = StoredImages(CachedRows(pixels_path)) if pixels_path else None
        sums = np.load(sums_path, allow_pickle=False) if sums_path.is_file() else None
        if index.get("version") == CACHE_VERSION and \
                (pixels is None or tuple(pixels.shape) == (count, 3, side, side)) and \
                (sums is None or (sums.shape == (count, 2, 5) and sums.dtype == np.int64)):
            return bad, pixels, sums
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DatasetError):
        pass
    for path in (index_path, pixels_path, sums_path):
        try:
            if path:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache: the next cache folder is used
    return None


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _result(listing: Listing, pixels: StoredImages | None, sums: np.ndarray, bad: list[tuple[int, str]], path: Path,
            side: int, fit: str) -> Decoded:
    failed = {i for i, _ in bad}
    keep = np.array([i for i in range(len(listing.files)) if i not in failed], np.int64)
    skipped = tuple((str(listing.files[i].relative_to(listing.root)), why) for i, why in bad)
    result = Decoded(listing, pixels, sums, keep, skipped, path, side, fit)
    left = np.bincount(result.labels, minlength=len(listing.classes))
    if (left == 0).any():
        empty = [listing.classes[c] for c in np.flatnonzero(left == 0)]
        raise DatasetError(f"folder:{listing.root}: no readable image in class folder{'s' if len(empty) > 1 else ''} "
                           f"{', '.join(empty[:5])}")
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


def pixel_sums(images) -> tuple[np.ndarray, np.ndarray, int]:
    """Per channel, the exact sums of uint8 [N, C, H, W] pixels and of their squares (int64), and the pixels per
    channel: from each channel's histogram, so that no wide copy of the pixels is made, and any order of summing
    (a stream of chunks, one file at a time) gives the same numbers."""
    channels = images.shape[1]
    values = np.arange(256, dtype=np.int64)
    sums, squares = np.zeros(channels, np.int64), np.zeros(channels, np.int64)
    for c in range(channels):
        counts = np.bincount(np.asarray(images[:, c]).reshape(-1), minlength=256)
        sums[c], squares[c] = counts @ values, counts @ (values * values)
    return sums, squares, images[0, 0].size * len(images)


def stats_of(sums: np.ndarray, squares: np.ndarray, count: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] from `pixel_sums`."""
    mean = sums / max(count, 1) / 255
    std = np.sqrt(np.maximum(squares / max(count, 1) / 255 ** 2 - mean ** 2, 0))
    return [round(float(m), 4) for m in mean], [round(float(max(s, 1e-3)), 4) for s in std]


def channel_stats(images) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 [N, C, H, W] (an array, or images on disk) scaled to [0, 1], read in
    chunks of CHUNK_BYTES."""
    chunk = max(1, CHUNK_BYTES // max(1, int(np.prod(images.shape[1:]))))
    channels = images.shape[1]
    sums, squares, count = np.zeros(channels, np.int64), np.zeros(channels, np.int64), 0
    for start in range(0, len(images), chunk):
        more = pixel_sums(images[start:start + chunk])
        sums, squares, count = sums + more[0], squares + more[1], count + more[2]
    return stats_of(sums, squares, count)


def is_colour(pixels: np.ndarray) -> bool:
    """Whether any stored image has a pixel whose channels differ."""
    chunk = max(1, CHUNK_BYTES // max(1, int(np.prod(pixels.shape[1:]))))
    for start in range(0, len(pixels), chunk):
        x = np.asarray(pixels[start:start + chunk])
        if (x[:, 0] != x[:, 1]).any() or (x[:, 1] != x[:, 2]).any():
            return True
    return False


# -- the dataset --------------------------------------------------------------------------------------------------
class FolderDataset(PlaceDataset):
    """The `DatasetInfo` of `folder:PATH` with its options (cnnlab.data.places)."""

    licence = "the folder's own"
    options = tuple(OPTIONS)

    def __init__(self, name: str, options: dict | None = None):
        self.name = name
        self.root = folder_path(name)
        self.settings = check_options(options)
        self.source = f"the images in {self.root}"

    def load(self, split: str, data_dir=None, quiet: bool = False, limit: int | None = None, **options) -> Split:
        images, labels = self.split_images(split, quiet)
        if limit is not None:
            images, labels = images.head(limit), labels[:limit]
        return Split(images, labels, self, split)

    def decoded(self, quiet: bool = True) -> Decoded:
        return decoded(self.root, self.settings["side"], self.settings["fit"], quiet, self.settings["cache"])

    def _classes(self) -> tuple[str, ...]:
        return list_folder(self.root).classes

    def _has_colour(self) -> bool:
        return self.decoded().has_colour()

    def _measure_stats(self) -> tuple[list[float], list[float]]:
        columns = slice(0, 3) if self.channels == 3 else slice(3, 4)
        chosen = self.decoded().sums[self._split_files("train")]
        pixels = len(chosen) * self.settings["side"] ** 2
        return stats_of(chosen[:, 0, columns].sum(0), chosen[:, 1, columns].sum(0), pixels)

    def _split_files(self, split: str) -> np.ndarray:
        """Indices into the listing's files of `split`'s images, in the split's order."""
        found = self.decoded()
        listing = found.listing
        if self.settings["classes"] is not None and tuple(self.settings["classes"]) != listing.classes:
            raise DatasetError(f"{self.name}: its classes ({', '.join(listing.classes)[:60]}) are not the run's "
                               f"({', '.join(self.settings['classes'])[:60]})")
        given = listing.given_split[found.keep] if listing.given_split is not None else None
        where = split_indices(found.labels, given, self.settings["test_fraction"], self.settings["split_seed"])
        chosen = found.keep[where[split]]
        if not len(chosen):
            raise DatasetError(f"{self.name}: its {split} split has no readable image")
        return chosen

    def split_files(self, split: str) -> list[Path]:
        """The readable image files of `split`, in its order."""
        return [self.decoded().listing.files[i] for i in self._split_files(split)]

    def split_images(self, split: str, quiet: bool = False) -> tuple[StoredImages, np.ndarray]:
        """(uint8 [N, C, side, side] read by index from disk, int64 labels) of one split."""
        found = self.decoded(quiet)
        chosen = self._split_files(split)
        return found.images(chosen, self.channels), found.listing.labels[chosen]


@functools.lru_cache(maxsize=32)
def _folder_dataset(name: str, options_json: str) -> FolderDataset:
    return FolderDataset(name, json.loads(options_json))


def folder_dataset(name: str, options: dict | None = None) -> FolderDataset:
    """The folder dataset `name` with `options`: one object per (name, options) in a process, so that what it
    has found out (classes, statistics) is found once."""
    return _folder_dataset(canonical(name), json.dumps(check_options(options), sort_keys=True))


PREFIXED["folder"] = folder_dataset
