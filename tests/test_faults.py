"""Faults of the machine and of names: a full disk, decodes killed half way, truncated caches, run names too long
for a file system, the umask, devices this machine lacks. Each leaves something usable or nothing, and says in
one line what happened and where."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.data import folders
from cnnlab.files import atomic_write
from cnnlab.train.config import TrainConfig
from cnnlab.train.runs import MAX_NAME_BYTES, check_destination, new_run_dir

from conftest import run_in_process
from test_folder_data import make_folder

TINY = ["--epochs", "2", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--threads", "1",
        "--device", "cpu", "--quiet"]


def full_disk(monkeypatch, file: str, at: int = 1) -> None:
    """Make the `at`-th fsync of a partial file of `file` fail as a full disk does (ENOSPC)."""
    real, seen = os.fsync, []

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name.startswith(f".{file}.") and name.endswith(".part"):
            seen.append(name)
            if len(seen) == at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds a descriptor's file in /proc")
@pytest.mark.parametrize("file, at, kept", [("config.json", 1, False), ("checkpoint.pt", 1, False),
                                            ("checkpoint.pt", 2, True)])
def test_a_full_disk_names_the_file_and_leaves_a_resumable_run_or_nothing(tmp_path, capsys, monkeypatch, file, at,
                                                                          kept):
    """The disk fills while config.json, epoch 1's or epoch 2's checkpoint is written: one line naming the file,
    and either no run folder at all or one that `--resume` finishes."""
    with monkeypatch.context() as patch:
        full_disk(patch, file, at)
        code, _, err = run_in_process(capsys, "train", *TINY, "--runs-dir", tmp_path, "--name", "full")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{tmp_path / 'full' / file}: No space left on device" in err
    if not kept:
        assert list(tmp_path.iterdir()) == []
        return
    assert not list((tmp_path / "full").glob(".*.part"))
    code, out, err = run_in_process(capsys, "train", "--resume", tmp_path / "full", "--quiet")
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_partial_files_of_killed_writers_are_removed_on_the_next_start(tmp_path):
    """A decode killed with SIGKILL leaves `.<hash>.npy.<pid>.part` (and an atomic write `.NAME.<pid>.<rand>.part`):
    the next load removes those whose process is gone and keeps a running writer's."""
    root = make_folder(tmp_path / "photos", per_class=3)
    load_dataset(f"folder:{root}", "train", quiet=True)
    cache = root / folders.CACHE_FOLDER
    gone, running = dead_pid(), os.getppid()
    stale = [cache / f".{'a' * 16}.npy.{gone}.part", cache / f".{'b' * 16}.json.{gone}.0123abcd.part"]
    alive = cache / f".{'c' * 16}.npy.{running}.part"
    for path in [*stale, alive]:
        path.write_bytes(b"\0" * 4096)
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    load_dataset(f"folder:{root}", "test", quiet=True)
    assert not any(path.exists() for path in stale) and alive.exists()


@pytest.mark.parametrize("damage", ["truncated array", "broken index"])
def test_a_damaged_cache_is_decoded_again(tmp_path, damage):
    root = make_folder(tmp_path / "photos", per_class=3)
    first = load_dataset(f"folder:{root}", "train", quiet=True).images[:]  # read from the cache, by index
    cache = root / folders.CACHE_FOLDER
    array = next(p for p in cache.glob("*.npy") if not p.name.endswith(".sums.npy"))  # the pixels, not their sums
    index = next(cache.glob("*.json"))
    size = array.stat().st_size
    if damage == "truncated array":
        array.write_bytes(array.read_bytes()[:array.stat().st_size // 2])
    else:
        index.write_text("{")
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    again = load_dataset(f"folder:{root}", "train", quiet=True).images[:]
    assert np.array_equal(again, first)
    assert array.stat().st_size == size and json.loads(index.read_text())["files"] == 9


def test_run_names_are_counted_in_bytes_before_any_data_is_read(tmp_path, capsys):
    """100 CJK letters are 300 bytes: refused before the dataset (here a folder that does not exist) is read."""
    code, _, err = run_in_process(capsys, "train", *TINY, "--runs-dir", tmp_path, "--name", "字" * 100,
                                  "--dataset", f"folder:{tmp_path / 'nowhere'}")
    assert code == 2 and err.count("\n") == 1 and f"at most {MAX_NAME_BYTES} bytes (this one: 300)" in err, err
    check_destination("字" * (MAX_NAME_BYTES // 3), tmp_path)  # 198 bytes: fits


@pytest.mark.parametrize("folder", ["é" * 240, "x" * 250, "photos: 2024?"])
def test_a_default_run_name_always_fits(tmp_path, folder):
    """A folder dataset's name goes into the default run name: shortened (in bytes) and cleaned to fit."""
    config = TrainConfig(dataset=f"folder:{tmp_path / folder}")
    path = new_run_dir(config, None, tmp_path / "runs")
    assert path.is_dir() and len(os.fsencode(path.name)) <= MAX_NAME_BYTES
    assert path.name.startswith("simple-cnn-" + folder[:5].replace(":", "_").replace("?", "_"))
    check_destination(path.name, tmp_path / "runs")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomically_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "config.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("device", ["mps", "cuda", "cuda:7"])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, device):
    from cnnlab.hardware import usable_devices

    if device in usable_devices() or (device == "cuda" and "cuda:0" in usable_devices()):
        pytest.skip(f"this machine has {device}")
    code, _, err = run_in_process(capsys, "train", *TINY, "--runs-dir", tmp_path, "--device", device)
    assert code == 2 and err.count("\n") == 1 and f"--device {device}: not available" in err, err
    assert "usable here: cpu" in err and list(tmp_path.iterdir()) == []
    code, out, _ = run_in_process(capsys, "info", "--json")
    assert code == 0 and json.loads(out)["devices"][0] == "cpu"


@pytest.mark.parametrize("grown_to, refused", [(3_000, False), (5_000, True)])
def test_a_file_that_grows_after_its_size_is_read_is_read_whole_or_refused(tmp_path, monkeypatch, grown_to, refused):
    """A file is read as long as stat said, then on: bytes written after the stat are read up to the kind's
    limit (4,096 bytes here), and a file that grew past the limit is refused in one line, never cut short."""
    from cnnlab import files
    from cnnlab.errors import ImageError

    path = tmp_path / "growing.jpg"
    path.write_bytes(bytes(range(256)) * 4)  # 1,024 bytes when stat looks
    real_stat = files.regular_file

    def stat_then_grow(*args):
        info = real_stat(*args)
        path.write_bytes(bytes(range(256)) * (grown_to // 256) + bytes(grown_to % 256))
        return info

    monkeypatch.setattr(files, "regular_file", stat_then_grow)
    monkeypatch.setitem(files.LIMITS, "image", 4_096)
    if refused:
        with pytest.raises(ImageError, match="over the 0 MiB limit .image; it grew while being read"):
            files.read_bytes(path, "image", ImageError, "image")
    else:
        assert files.read_bytes(path, "image", ImageError, "image") == path.read_bytes()
        assert len(path.read_bytes()) == grown_to
