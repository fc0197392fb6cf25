"""KMNIST and EMNIST (balanced): IDX entries of the registry, downloaded from a local mirror serving tiny files
made here, with the checksums each set publishes (KMNIST: of each gzip file; EMNIST: of its zip archive)."""

import dataclasses
import gzip
import hashlib
import io
import struct
import zipfile

import numpy as np
import pytest

from cnnlab.data import DATASETS, dataset_info, load_dataset
from cnnlab.errors import DatasetError

from test_cifar import fresh  # noqa: F401  (the fixture: no dataset anywhere but where the test puts it)
from test_datasets import mirror  # noqa: F401  (the fixture: a local HTTP mirror)


def idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def tiny_split(seed: int, classes: int, count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, classes, count).astype(np.uint8)


def test_kmnist_downloads_with_each_gzip_files_sha256(mirror, fresh, monkeypatch):  # noqa: F811
    www, url = mirror
    info = dataset_info("kmnist")
    digests, expected = {}, {}
    for n, (split, (images_file, labels_file)) in enumerate(info.files.items()):
        expected[split] = tiny_split(n, 10)
        for file, array in zip((images_file, labels_file), expected[split]):
            payload = gzip.compress(idx(array))
            (www / f"{file}.gz").write_bytes(payload)
            digests[f"{file}.gz"] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(DATASETS, "kmnist", dataclasses.replace(info, sha256=digests, mirrors=(url,)))
    test = load_dataset("kmnist", "test", quiet=True)
    assert np.array_equal(test.images, expected["test"][0]) and np.array_equal(test.labels, expected["test"][1])
    # a later load checks the kept gzip file against the same digest
    (fresh / "kmnist" / f"{info.files['train'][1]}.gz").write_bytes(gzip.compress(idx(expected["train"][1] % 9)))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: checksum mismatch for kmnist"):
        load_dataset("kmnist", "train", quiet=True)


def test_kmnist_refuses_a_wrong_download(mirror, fresh, monkeypatch):  # noqa: F811
    www, url = mirror
    info = dataset_info("kmnist")
    for file in info.files["test"]:
        (www / f"{file}.gz").write_bytes(gzip.compress(idx(tiny_split(0, 10)[0])))
    monkeypatch.setitem(DATASETS, "kmnist", dataclasses.replace(info, mirrors=(url,)))
    with pytest.raises(DatasetError, match="could not download kmnist file t10k-images-idx3-ubyte: .*checksum mismatch"):
        load_dataset("kmnist", "test", quiet=True)
    assert not list(fresh.rglob("*.gz"))


def test_emnist_balanced_downloads_from_its_zip_and_is_transposed(mirror, fresh, monkeypatch):  # noqa: F811
    www, url = mirror
    info = dataset_info("emnist-balanced")
    assert info.num_classes == 47 and info.classes[36:] == tuple("abdefghnqrt")
    buffer, expected = io.BytesIO(), {}
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("gzip/emnist-letters-train-images-idx3-ubyte.gz", b"another split: not unpacked")
        for n, (split, files) in enumerate(info.files.items()):
            images, labels = expected[split] = tiny_split(n, 47)
            # EMNIST stores each image column by column: the file holds the transpose of the picture
            for file, array in zip(files, (images.transpose(0, 2, 1), labels)):
                zipped.writestr(info.archive.members[file], gzip.compress(idx(array)))
    (www / "gzip.zip").write_bytes(buffer.getvalue())
    archive = dataclasses.replace(info.archive, md5=hashlib.md5(buffer.getvalue()).hexdigest())
    monkeypatch.setitem(DATASETS, "emnist-balanced", dataclasses.replace(info, mirrors=(url,), archive=archive))
    train = load_dataset("emnist-balanced", "train", quiet=True)
    assert np.array_equal(train.images, expected["train"][0]) and np.array_equal(train.labels, expected["train"][1])
    assert sorted(p.name for p in (fresh / "emnist-balanced").iterdir()) == sorted(
        f"{f}.gz" for files in info.files.values() for f in files)  # the four files; the zip is not kept
