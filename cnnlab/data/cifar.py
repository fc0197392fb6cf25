"""CIFAR-10 and CIFAR-100 read from their official *binary* archives: fixed-size records of label byte(s) and
3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row by row). The "python version" of the archives is never
read: its batches are pickles, and loading a pickle can run any code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab import files
from cnnlab.errors import DatasetError

SIDE = 32
PIXELS = 3 * SIDE * SIDE


def read_records(info, split: str, paths: tuple[Path, ...], label_bytes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 3, 32, 32], labels) of a split's batch files; with two label bytes (CIFAR-100: coarse,
    fine) the last, the fine label, is the class."""
    record = label_bytes + PIXELS
    parts = []
    for path in paths:
        data = files.read_bytes(path, "dataset", DatasetError, "dataset file")
        if not data or len(data) % record:
            raise DatasetError(f"{path}: {len(data):,} bytes is not a whole number of {record:,}-byte "
                               f"{info.name} records")
        parts.append(np.frombuffer(data, np.uint8).reshape(-1, record))
    records = np.concatenate(parts)
    return records[:, label_bytes:].reshape(-1, 3, SIDE, SIDE), records[:, label_bytes - 1].astype(np.int64)


def prepare(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """A photo as a CIFAR image: filling 32x32, centre-cropped, in colour."""
    from cnnlab.data.preprocess import load_photo

    return load_photo(source, SIDE, "crop", name)
