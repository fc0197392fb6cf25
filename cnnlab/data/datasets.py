"""Find, verify and load registered datasets into memory as NumPy arrays (uint8 images, int64 labels).

Lookup order for each file: `data_dir` argument → `$CNNLAB_DATA` → the repository's bundled `data/` →
the user cache (`$CNNLAB_CACHE`, default `~/.cache/cnnlab`) → download into the cache.
A root may hold `<root>/<dataset>/<file>[.gz]`, or be the dataset folder itself.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import files
from cnnlab.data.download import download_archive, download_file, sha256_of, unpack
from cnnlab.data.idx import parse_idx, read_bytes
from cnnlab.data.registry import SPLITS, DatasetInfo, check_options, dataset_info
from cnnlab.errors import ConfigError, DatasetError

BUNDLED = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Split:
    """One split of a dataset, held in memory: images uint8 [N, H, W] (or [N, C, H, W]), labels int64 [N]."""
    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo
    split: str

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")


def search_roots(data_dir: str | Path | None = None) -> list[Path]:
    if data_dir and not Path(data_dir).expanduser().is_dir():  # never a silent fall-back to other copies
        raise DatasetError(f"--data-dir {data_dir}: no such folder")
    roots = [data_dir, os.environ.get("CNNLAB_DATA"), BUNDLED, cache_dir()]
    return [Path(r).expanduser() for r in roots if r]


def locate(info: DatasetInfo, file: str, data_dir: str | Path | None = None) -> Path | None:
    inside = info.archive.members.get(file) if info.archive else None  # as unpacked: CIFAR's batches folder
    for root in search_roots(data_dir):
        for folder in (root / info.name, root):
            for candidate in (folder / file, folder / f"{file}.gz", *([folder / inside] if inside else [])):
                # Whatever has the name is the file: one that is not readable (a folder, a pipe) is an error to
                # report, not a reason to train on another copy found further down.
                if candidate.exists() or candidate.is_symlink():
                    return candidate
    return None


def _read_verified(info: DatasetInfo, file: str, path: Path) -> np.ndarray:
    """An IDX file, checked against the sha256 the registry has for it: of its decompressed bytes, or of the
    gzip file itself where only that is published (a decompressed copy is then checked by its structure)."""
    data = read_bytes(path)
    array = parse_idx(data, path)  # structural problems first: they say more than a checksum mismatch
    expected = info.sha256.get(file)
    if expected is None and f"{file}.gz" in info.sha256 and path.name.endswith(".gz"):
        expected, data = info.sha256[f"{file}.gz"], files.read_bytes(path, "dataset", DatasetError, "dataset file")
    digest = sha256_of(data) if expected is not None else None
    if digest != expected:
        raise DatasetError(f"{path}: checksum mismatch for {info.name} (sha256 {digest[:12]}…, "
                           f"expected {expected[:12]}…): file is corrupt or not {info.name}")
    return array


def read_idx_pair(info: DatasetInfo, split: str, paths: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A split stored as an IDX images file and an IDX labels file."""
    (images_file, labels_file), (images_path, labels_path) = info.files[split], paths
    images = _read_verified(info, images_file, images_path)
    labels = _read_verified(info, labels_file, labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected a 1-D label array, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels")
    return (images.swapaxes(-1, -2).copy() if info.transposed else images), labels


def fetch_file(info: DatasetInfo, file: str, data_dir: str | Path | None = None, download: bool = True,
               quiet: bool = False) -> Path:
    path = locate(info, file, data_dir)
    if path is not None:
        return path
    if info.archive is not None:  # unpacked from the archive, found locally or downloaded into the cache
        archive = _locate_archive(info, data_dir)
        if archive is not None:
            return unpack(info, archive, cache_dir() / info.name)[file]
    where = ", ".join(map(str, search_roots(data_dir)))
    if not download:
        raise DatasetError(f"{info.name}: {file} not found in {where}")
    try:
        if info.archive is None:
            return download_file(info, file, cache_dir() / info.name, quiet=quiet)
        archive = download_archive(info, cache_dir() / info.name, quiet=quiet)
    except DatasetError as err:  # offline, most often: say where a copy is looked for
        raise DatasetError(f"{err}; not found in {where} either: give --data-dir DIR or set $CNNLAB_DATA=DIR, "
                           f"DIR holding {info.name}/") from None
    try:
        return unpack(info, archive, cache_dir() / info.name)[file]
    finally:
        archive.unlink()  # its files are unpacked beside it: no need to keep both


def _locate_archive(info: DatasetInfo, data_dir: str | Path | None) -> Path | None:
    for root in search_roots(data_dir):
        for candidate in (root / info.name / info.archive.name, root / info.archive.name):
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=8)
def _load(name: str, split: str, *paths: Path) -> Split:
    info = dataset_info(name)
    images, labels = (info.read or read_idx_pair)(info, split, paths)
    if labels.size and labels.max() >= info.num_classes:
        raise DatasetError(f"{paths[-1]}: label {labels.max()} out of range for {info.num_classes} classes")
    images.setflags(write=False)
    return Split(images, labels.astype(np.int64), info, split)


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, download: bool = True,
                 quiet: bool = False, options: dict | None = None, limit: int | None = None) -> Split:
    """Load a registered dataset split into memory (cached per process). `options`: a generated dataset's
    settings (`DatasetInfo.options`), such as how many mnist-scenes to draw. `limit`: the caller uses only the
    first `limit` items, so a generated dataset makes only those (a file dataset is read whole)."""
    info = dataset_info(name, options)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    options = check_options(name, options)
    if info.load:
        return info.load(split, data_dir, quiet, limit, **options)
    paths = [fetch_file(info, f, data_dir, download, quiet) for f in info.files[split]]
    return _load(info.name, split, *paths)
