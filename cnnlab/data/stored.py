"""Images kept on disk and read by index, never held whole: a dataset of any size costs memory for its labels only.

`StoredImages` looks like the uint8 array [N, C, H, W] a small dataset holds in memory (`len`, `shape`, `ndim`,
`dtype`, and indexing by an integer, a slice or an array of indices), and reads only the rows asked for from its
`rows` source:

- `CachedRows`: a decoded cache (`.npy`), read with positioned reads: the operating system's page cache keeps
  what fits, and the process holds a batch;
- `DecodedFiles`: the image files themselves, each decoded and resized when it is read (no cache on disk).

Both can be pickled small (a path and the row numbers, never the pixels), so that `DataLoader` workers reopen
them on their side.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

LUMA = np.array([299, 587, 114], dtype=np.uint32)  # Pillow's "L" weights (ITU-R 601-2), in thousandths


def as_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Stored RGB uint8 [N, 3, H, W] -> [N, channels, H, W]; grey is Pillow's rounded "L" luminance."""
    if channels == 3:
        return np.asarray(pixels)
    gray = np.tensordot(LUMA, np.asarray(pixels, np.uint32), axes=([0], [1]))
    return ((gray + 500) // 1000).astype(np.uint8)[:, None]


class CachedRows:
    """Rows `rows` (default: all) of the uint8 [M, 3, H, W] array file (`.npy`) at `path`, as `channels` channels.

    Each batch is read with positioned reads (`preadv`, straight into the batch's array, consecutive rows in one
    read) rather than through a memory map: the page cache still keeps what fits, but the pages are not mapped
    into the process, whose resident memory stays the size of a batch however much of the file it has read."""

    def __init__(self, path: Path, rows: np.ndarray | None = None, channels: int = 3):
        self.path, self.channels = Path(path), channels
        with open(self.path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                           np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(file)
            self.offset = file.tell()
        if fortran or dtype != np.uint8 or len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"{self.path}: not a uint8 [N, 3, H, W] array")
        if self.path.stat().st_size < self.offset + int(np.prod(shape)):
            raise ValueError(f"{self.path}: truncated (shorter than the {shape} array its header describes)")
        self.stored_shape = shape
        self.rows = np.arange(shape[0]) if rows is None else np.asarray(rows, np.int64)
        self._file = None

    def __getstate__(self):
        return {**self.__dict__, "_file": None}  # a worker opens the file again

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, positions: np.ndarray) -> "CachedRows":
        chosen = copy.copy(self)
        chosen.rows, chosen._file = self.rows[positions], None
        return chosen

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.stored_shape[2:])

    def read(self, positions: np.ndarray) -> np.ndarray:
        if self._file is None:
            self._file = open(self.path, "rb", buffering=0)
        rows = self.rows[positions]
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.stored_shape[1:]), np.uint8)
        size = out[0].nbytes if len(out) else 0
        # runs of consecutive rows: one read each
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        target = out  # filled in sorted order, then put back in the order asked for
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(ordered)]):
            view = memoryview(target[first:last].reshape(-1))
            offset, done = self.offset + int(ordered[first]) * size, 0
            while done < len(view):
                got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
                if got <= 0:
                    raise OSError(f"{self.path}: ends before row {int(ordered[first])}")
                done += got
        if not np.array_equal(order, np.arange(len(order))):
            out[order] = out.copy()
        return as_channels(out, self.channels)


class DecodedFiles:
    """The image files `paths`, each decoded when read as `load_photo` decodes them into a folder's cache
    (`side` pixels a side, `fit`), as `channels` channels."""

    def __init__(self, paths: list[Path], side: int, fit: str, channels: int):
        self.paths, self.side, self.fit, self.channels = [str(p) for p in paths], side, fit, channels

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, positions: np.ndarray) -> "DecodedFiles":
        chosen = copy.copy(self)
        chosen.paths = [self.paths[p] for p in positions]
        return chosen

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.side, self.side)

    def read(self, positions: np.ndarray) -> np.ndarray:
        from cnnlab.data.preprocess import load_photo

        out = np.empty((len(positions), 3, self.side, self.side), np.uint8)
        for n, position in enumerate(positions):
            out[n] = load_photo(Path(self.paths[position]), self.side, self.fit)
        return as_channels(out, self.channels)


class StoredImages:
    """uint8 images [N, C, H, W] read by index from `rows` (a `CachedRows` or `DecodedFiles`)."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, rows):
        self.rows = rows
        self.count = len(rows)

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, *self.rows.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def take(self, positions) -> np.ndarray:
        """uint8 [len(positions), C, H, W]: the images at `positions` (0..N-1), in that order."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        if len(positions) and (positions.min() < -self.count or positions.max() >= self.count):
            raise IndexError(f"index out of range for {self.count} images")
        return self.rows.read(positions % max(self.count, 1))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # the images first, then the rest of the index on what was read
            rows = self[key[0]]
            return rows[key[1:]] if isinstance(key[0], (int, np.integer)) else rows[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            return self.take([key])[0]
        if isinstance(key, slice):
            return self.take(np.arange(self.count)[key])
        key = np.asarray(key)
        return self.take(np.flatnonzero(key) if key.dtype == bool else key)

    def subset(self, positions) -> "StoredImages":
        """The images at `positions`, still on disk."""
        return StoredImages(self.rows.select(np.asarray(positions, np.int64)))

    def head(self, count: int) -> "StoredImages":
        """The first `count` images, still on disk."""
        return self.subset(np.arange(min(count, self.count)))

    def chunks(self, size: int = 4096):
        """The images in order, `size` at a time."""
        for start in range(0, self.count, size):
            yield self.take(np.arange(start, min(start + size, self.count)))

    def __array__(self, dtype=None, copy=None):
        array = self.take(np.arange(self.count))
        return array if dtype is None else array.astype(dtype)
