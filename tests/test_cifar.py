"""CIFAR-10 and CIFAR-100 from tiny binary archives made here: found locally, downloaded from a local mirror with
the archive's md5 checked, never read from the pickled "python version"."""

import dataclasses
import hashlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest

from cnnlab.data import DATASETS, dataset_info, load_dataset
from cnnlab.data.datasets import _load
from cnnlab.errors import DatasetError

from test_datasets import mirror  # noqa: F401  (the fixture: a local HTTP mirror)

PER_BATCH = 4


def records(seed: int, count: int, label_bytes: int, classes: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """`count` CIFAR records: (bytes, images [count, 3, 32, 32], class labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, classes, count)
    coarse = rng.integers(0, 20, count)
    heads = np.stack([coarse, labels], 1)[:, -label_bytes:].astype(np.uint8)
    return np.concatenate([heads, images.reshape(count, -1)], 1).tobytes(), images, labels


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def tiny(name: str) -> tuple[bytes, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tiny archive in the layout of `name`'s official binary one, and what each split must load as."""
    info = dataset_info(name)
    label_bytes = 1 if info.num_classes == 10 else 2
    members, expected = {}, {}
    for split, files in info.files.items():
        parts = [records(sum(map(ord, name + file)), PER_BATCH, label_bytes, info.num_classes) for file in files]
        for file, (data, _, _) in zip(files, parts):
            members[info.archive.members[file]] = data
        expected[split] = (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
    return tar_gz(members), expected


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No CIFAR anywhere but where the test puts it."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setattr("cnnlab.data.datasets.BUNDLED", tmp_path / "no-bundle")
    _load.cache_clear()
    yield tmp_path / "user-cache"
    _load.cache_clear()


def registered(monkeypatch, name: str, archive: bytes, mirrors=()):
    """Register `name` with the tiny archive's md5 (and `mirrors`), as the real entry has the real one's."""
    info = dataset_info(name)
    md5 = hashlib.md5(archive).hexdigest()
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(
        info, mirrors=mirrors or info.mirrors, archive=dataclasses.replace(info.archive, md5=md5)))


@pytest.mark.parametrize("name", ["cifar-10", "cifar-100"])
def test_download_checks_the_md5_and_reads_the_records(name, mirror, fresh, monkeypatch):  # noqa: F811
    www, url = mirror
    archive, expected = tiny(name)
    (www / dataset_info(name).archive.name).write_bytes(archive)
    registered(monkeypatch, name, archive, mirrors=(url + "missing/", url))
    for split in ("train", "test"):
        loaded = load_dataset(name, split, quiet=True)
        assert np.array_equal(loaded.images, expected[split][0]) and np.array_equal(loaded.labels, expected[split][1])
    assert loaded.images.shape[1:] == (3, 32, 32) and loaded.info.num_classes == int(name.split("-")[1])
    assert not list(fresh.rglob("*.part"))
    # the unpacked files are found again without the network
    _load.cache_clear()
    registered(monkeypatch, name, archive, mirrors=("http://127.0.0.1:9/",))
    assert len(load_dataset(name, "train", quiet=True)) == PER_BATCH * len(dataset_info(name).files["train"])


def test_a_corrupted_download_is_refused_and_not_kept(mirror, fresh, monkeypatch):  # noqa: F811
    www, url = mirror
    archive, _ = tiny("cifar-10")
    registered(monkeypatch, "cifar-10", archive, mirrors=(url,))
    (www / "cifar-10-binary.tar.gz").write_bytes(archive[:-10] + bytes(10))
    with pytest.raises(DatasetError, match="could not download cifar-10 archive cifar-10-binary.tar.gz: .*md5"):
        load_dataset("cifar-10", "test", quiet=True)
    assert not fresh.exists() or not [p for p in fresh.rglob("*") if p.is_file()]


def test_a_local_archive_or_unpacked_folder_is_used(fresh, tmp_path, monkeypatch):
    archive, expected = tiny("cifar-10")
    registered(monkeypatch, "cifar-10", archive, mirrors=("http://127.0.0.1:9/",))
    (tmp_path / "data" / "cifar-10").mkdir(parents=True)
    (tmp_path / "data" / "cifar-10" / "cifar-10-binary.tar.gz").write_bytes(archive)
    test = load_dataset("cifar-10", "test", data_dir=tmp_path / "data", quiet=True)
    assert np.array_equal(test.images, expected["test"][0])
    # unpacked as the archive unpacks, with the pickled version beside it: only the binary batches are read
    unpacked = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "cifar-10-batches-py").mkdir()
    (unpacked / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": "never read"}))
    _load.cache_clear()
    assert np.array_equal(load_dataset("cifar-10", "train", data_dir=unpacked, quiet=True).labels,
                          expected["train"][1])


def test_a_wrong_local_archive_or_batch_is_one_error(fresh, tmp_path, monkeypatch):
    archive, _ = tiny("cifar-10")
    registered(monkeypatch, "cifar-10", archive)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-binary.tar.gz").write_bytes(archive + b"\0")
    with pytest.raises(DatasetError, match="checksum mismatch for cifar-10 .md5"):
        load_dataset("cifar-10", "test", data_dir=tmp_path / "data", download=False)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "test_batch.bin").write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DatasetError, match=r"test_batch.bin: 6,151 bytes is not a whole number of 3,073-byte"):
        load_dataset("cifar-10", "test", data_dir=tmp_path / "flat")


def test_a_photo_is_prepared_as_a_cifar_image(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48), (250, 10, 10)).save(tmp_path / "red.png")
    image = dataset_info("cifar-10").prepare(tmp_path / "red.png")
    assert image.shape == (3, 32, 32) and tuple(image[:, 16, 16]) == (250, 10, 10)


def test_train_evaluate_predict_on_cifar(fresh, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from conftest import run_in_process

    archive, _ = tiny("cifar-10")
    registered(monkeypatch, "cifar-10", archive)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-binary.tar.gz").write_bytes(archive)
    code, _, err = run_in_process(capsys, "train", "--dataset", "cifar-10", "--data-dir", tmp_path / "data",
                                  "--model", "resnet20", "--epochs", 1, "--batch-size", 8, "--threads", 1,
                                  "--augment", '{"crop_padding": 4, "flip": 0.5}', "--runs-dir", tmp_path / "runs",
                                  "--name", "cifar", "--quiet")
    assert code == 0, err
    code, out, err = run_in_process(capsys, "evaluate", tmp_path / "runs" / "cifar", "--json")
    assert code == 0 and json.loads(out)["images"] == PER_BATCH, err
    Image.new("RGB", (80, 60), (20, 90, 200)).save(tmp_path / "sky.jpg")
    code, out, err = run_in_process(capsys, "predict", tmp_path / "runs" / "cifar", tmp_path / "sky.jpg", "--json",
                                    "--out-dir", tmp_path / "seen")
    assert code == 0, err
    assert json.loads(out)[0]["class"] in dataset_info("cifar-10").classes
    assert Image.open(tmp_path / "seen" / "sky_32x32.png").size == (32, 32)
