import gzip
import struct

import numpy as np
import pytest

from cnnlab.data import read_idx
from cnnlab.errors import DatasetError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_reads_raw_and_gzip_identically(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize("dtype,code", [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
def test_big_endian_dtypes(tmp_path, dtype, code):
    array = (np.arange(6) * 1000 - 2500).astype(dtype).reshape(2, 3)
    (tmp_path / "f").write_bytes(idx_bytes(array, code))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), array)


def test_bundled_mnist_shapes():
    from cnnlab.data import load_mnist

    train, test = load_mnist("train"), load_mnist("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(train.images.mean() / 255 - train.info.mean) < 1e-3


GOOD = idx_bytes(np.zeros((2, 2, 2), np.uint8))


MALFORMED = [
    (b"", "too short"),
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x03" + GOOD[4:], "bad IDX magic"),
    (b"\x00\x00\x42\x03" + GOOD[4:], "unknown IDX dtype code 0x42"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (GOOD[:10], "truncated IDX header"),
    (GOOD[:-1], "truncated: 23 bytes, expected 24"),
    (GOOD + b"\x00", "1 unexpected trailing bytes"),
    # mtime=0: the gzip header must not depend on the clock, or xdist workers see different tests
    (gzip.compress(GOOD, mtime=0)[:-6], "corrupt gzip"),
]


@pytest.mark.parametrize("payload,message", MALFORMED, ids=[message for _, message in MALFORMED])
def test_malformed_files_name_file_and_problem(tmp_path, payload, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(payload)
    with pytest.raises(DatasetError) as err:
        read_idx(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        read_idx(tmp_path / "nope")
