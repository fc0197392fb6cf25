"""Reader for the IDX format of MNIST-style datasets (raw or gzip), validating everything it reads.

Layout (LeCun): two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the data in C order, big-endian.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab import files
from cnnlab.errors import DatasetError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed if it is gzip (detected by its magic bytes, not its name), within the
    dataset caps of `cnnlab.files`."""
    raw = files.read_bytes(path, "dataset", DatasetError, "dataset file")
    if raw[:2] != b"\x1f\x8b":
        return raw
    return files.gunzip(raw, files.LIMITS["dataset-decompressed"], path, DatasetError)


def parse_idx(data: bytes, source: str | Path = "<bytes>") -> np.ndarray:
    if len(data) < 4:
        raise DatasetError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{source}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DatasetError(f"{source}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DatasetError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if 0 in shape:
        raise DatasetError(f"{source}: IDX header declares an empty dimension (shape {shape})")
    dtype = np.dtype(IDX_DTYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize  # Python integers: a crafted header cannot overflow
    if len(data) < expected:
        raise DatasetError(f"{source}: truncated: {len(data)} bytes, expected {expected} for shape {shape}")
    if len(data) > expected:
        raise DatasetError(f"{source}: {len(data) - expected} unexpected trailing bytes after shape {shape}")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a NumPy array; any defect raises `DatasetError` naming the file."""
    path = Path(path)
    return parse_idx(read_bytes(path), path)
