import dataclasses
import functools
import gzip
import http.server
import shutil
import struct
import threading

import numpy as np
import pytest

from cnnlab.data import DATASETS, dataset_info, load_dataset
from cnnlab.data.datasets import BUNDLED, _load, locate
from cnnlab.data.download import download_file
from cnnlab.errors import ConfigError, DatasetError

from conftest import fashion_data_dir


def test_registry_entries_are_complete():
    for info in DATASETS.values():
        assert info.num_classes >= 10 and len(info.mirrors) >= 1
        for split in ("train", "test"):
            for file in info.files[split]:
                # a checksum for every file: its own, its gzip file's, or its archive's (with the file in it)
                digest = info.sha256.get(file) or info.sha256.get(f"{file}.gz")
                assert len(digest) == 64 if digest else len(info.archive.md5) == 32 and file in info.archive.members


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean fashion-mnist"):
        dataset_info("fashion-mnst")


def test_fashion_mnist_loads_from_data_dir():
    split = load_dataset("fashion-mnist", "test", data_dir=fashion_data_dir())
    assert split.images.shape == (10000, 28, 28) and split.info.classes[9] == "Ankle boot"
    assert np.bincount(split.labels).tolist() == [1000] * 10


def test_lookup_order_data_dir_then_env_then_bundled(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)  # CI sets it; this test sets it itself below
    info = dataset_info("mnist")
    file = info.files["test"][1]
    assert locate(info, file) == BUNDLED / "mnist" / f"{file}.gz"
    env_dir = tmp_path / "env" / "mnist"
    env_dir.mkdir(parents=True)
    shutil.copy(BUNDLED / "mnist" / f"{file}.gz", env_dir)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert locate(info, file) == env_dir / f"{file}.gz"
    flat = tmp_path / "flat"  # --data-dir may also be the dataset folder itself, files uncompressed
    flat.mkdir()
    (flat / file).write_bytes(gzip.decompress((BUNDLED / "mnist" / f"{file}.gz").read_bytes()))
    assert locate(info, file, data_dir=flat) == flat / file


def test_checksum_mismatch_is_rejected(tmp_path):
    info = dataset_info("mnist")
    images, labels = info.files["test"]
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(BUNDLED / "mnist" / f"{images}.gz", folder)
    data = bytearray(gzip.decompress((BUNDLED / "mnist" / f"{labels}.gz").read_bytes()))
    data[100] = (data[100] + 1) % 10  # one wrong label
    (folder / labels).write_bytes(bytes(data))
    _load.cache_clear()
    with pytest.raises(DatasetError, match=rf"{labels}: checksum mismatch for mnist"):
        load_dataset("mnist", "test", data_dir=tmp_path)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP mirror on 127.0.0.1 serving the files in tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_verifies_and_writes_atomically(mirror, tmp_path):
    www, url = mirror
    info = dataset_info("mnist")
    file = info.files["test"][1]
    shutil.copy(BUNDLED / "mnist" / f"{file}.gz", www)
    dest = tmp_path / "cache" / "mnist"
    path = download_file(info, file, dest, mirrors=(url,), quiet=True)
    assert path == dest / f"{file}.gz"
    assert path.read_bytes() == (BUNDLED / "mnist" / f"{file}.gz").read_bytes()
    assert [p.name for p in dest.iterdir()] == [f"{file}.gz"]  # no temporary files left


def test_corrupted_download_is_rejected_and_not_cached(mirror, tmp_path):
    www, url = mirror
    info = dataset_info("mnist")
    file = info.files["test"][1]
    bogus = struct.pack(">BBBBI", 0, 0, 8, 1, 10000) + bytes(10000)
    (www / f"{file}.gz").write_bytes(gzip.compress(bogus))
    dest = tmp_path / "cache" / "mnist"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download_file(info, file, dest, mirrors=(url,), quiet=True)
    assert not dest.exists() or not any(dest.iterdir())


def test_download_falls_back_to_the_next_mirror(mirror, tmp_path):
    www, url = mirror
    info = dataset_info("mnist")
    file = info.files["test"][1]
    shutil.copy(BUNDLED / "mnist" / f"{file}.gz", www)
    path = download_file(info, file, tmp_path / "c", mirrors=(url + "missing/", url), quiet=True)
    assert path.exists()


def test_load_dataset_downloads_into_the_cache_when_missing(mirror, tmp_path, monkeypatch):
    www, url = mirror
    info = dataset_info("mnist")
    for file in info.files["test"]:
        shutil.copy(BUNDLED / "mnist" / f"{file}.gz", www)
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)  # nothing local may be found: the files must be downloaded
    monkeypatch.setattr("cnnlab.data.datasets.BUNDLED", tmp_path / "no-bundle")
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(info, mirrors=(url,)))
    _load.cache_clear()
    try:
        split = load_dataset("mnist", "test", quiet=True)
    finally:
        _load.cache_clear()
    assert len(split) == 10000
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(f"{f}.gz" for f in info.files["test"])
