"""Data at any size: splits on disk read a batch at a time, exactly as if held in memory; each process reads only its
share; a run killed mid-epoch resumes from its last step checkpoint; memory does not grow with the dataset; a cache
that cannot fit the disk is refused in one line."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import folders, load_dataset
from cnnlab.data.stored import StoredImages
from cnnlab.errors import DatasetError
from cnnlab.train.batches import Augment, TensorSplit
from cnnlab.train.config import recipe_config
from cnnlab.train.streaming import StreamSplit, split_for
from cnnlab.train.trainer import CHECKPOINT, Trainer, load_checkpoint

from conftest import _KILLED_CHILD, MANIFEST, killed_run, metrics_without_timings, run_in_process
from test_folder_data import COLOURS, _fresh, make_folder  # noqa: F401  (_fresh: each test decodes anew)
from test_transfer import resnet_pth  # noqa: F401  (a fixture: ResNet-18 saved as torchvision saves it)

AUGMENT = {"crop_padding": 2, "flip": 0.5, "brightness": 0.2, "max_rotate_deg": 5, "erase": 0.3}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("stream") / "photos", per_class=16, size=(20, 16))


def epoch_of(data, seed=0, **share):
    generator = torch.Generator().manual_seed(seed)
    return list(data.batches(7, shuffle=True, generator=generator, augment=Augment(**AUGMENT), **share))


def test_streamed_batches_are_the_in_memory_ones_whatever_the_workers_or_the_cache(photos):
    split = load_dataset(f"folder:{photos}", "train", quiet=True)
    assert isinstance(split.images, StoredImages) and isinstance(split_for(split), StreamSplit)
    expected = epoch_of(TensorSplit(split))
    on_the_fly = load_dataset(f"folder:{photos}", "train", quiet=True, options={"cache": False})
    assert isinstance(on_the_fly.images.rows, folders.DecodedFiles)
    for data in (StreamSplit(split, workers=0), StreamSplit(split, workers=2), StreamSplit(on_the_fly, workers=1)):
        got = epoch_of(data)
        assert len(got) == len(expected) == 6  # 40 images, 7 a batch
        for (x, y), (ex, ey) in zip(got, expected):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    assert on_the_fly.info.mean == split.info.mean and on_the_fly.info.std == split.info.std  # exact integer sums
    # nothing of the pixels was written for the files decoded on the fly: a small index of sums
    assert [p.name.endswith(".sums.npy") for p in (photos / ".cnnlab-cache").glob("*.npy")].count(True) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("augment", [None, {"crop_padding": 2, "flip": 0.5}, AUGMENT],
                         ids=["plain", "cropped", "augmented"])
def test_a_batch_is_written_over_only_once_nothing_holds_it(photos, stream, augment, monkeypatch):
    """The loaders write each batch into one of two kept batches of floats (a fresh one of photos costs its page
    faults again, as much as normalizing it): a loop that lets each batch go gets the same two back (the colour
    and affine changes make new tensors of the crop), and no batch still held (in a list, by a view) is ever
    written over."""
    from cnnlab.train import batches

    monkeypatch.setattr(batches, "MAPPED_AFRESH_BYTES", 0)  # these small batches kept as large ones are
    split = load_dataset(f"folder:{photos}", "train", quiet=True)

    def epoch(data=None, **drop_last):
        data = data or (StreamSplit(split, workers=0) if stream else TensorSplit(split))
        return data.batches(5, shuffle=True, generator=torch.Generator().manual_seed(0),
                            augment=augment and Augment(**augment), **drop_last)

    cloned = [x.clone() for x, _ in epoch()]
    assert len(cloned) > 4
    if augment != AUGMENT:
        assert len({x.data_ptr() for x, _ in epoch(drop_last=True)}) == 2
    held = [x for x, _ in epoch()]
    assert len({x.data_ptr() for x in held}) == len(held)
    assert all(torch.equal(x, expected) for x, expected in zip(held, cloned, strict=True))
    views = [x[1:3] for x, _ in epoch()]
    assert all(torch.equal(view, expected[1:3]) for view, expected in zip(views, cloned, strict=True))


@pytest.mark.parametrize("size", [2, 3])
def test_each_process_reads_only_its_share_and_together_they_read_the_epoch_once(photos, size, monkeypatch):
    split = load_dataset(f"folder:{photos}", "train", quiet=True)
    read = {rank: [] for rank in range(size)}
    whole = epoch_of(StreamSplit(split))
    for rank in range(size):
        data = StreamSplit(dataclasses.replace(split, images=StoredImages(split.images.rows)))  # its own reader
        take = data.images.take
        monkeypatch.setattr(data.images, "take", lambda positions, rank=rank, take=take:
                            read[rank].append(list(positions)) or take(positions))
        shares = epoch_of(data, rank=rank, size=size)
        # a process's share of each global batch, augmented as the whole batch would have been
        for (x, y), (wx, wy) in zip(shares, whole):
            ours = torch.tensor_split(torch.arange(len(wy)), size)[rank]
            torch.testing.assert_close(x, wx[ours], rtol=0, atol=1e-6)
            assert torch.equal(y, wy[ours])
    seen = [sum(read[rank], []) for rank in range(size)]
    assert all(not set(seen[a]) & set(seen[b]) for a in range(size) for b in range(a + 1, size))
    assert sorted(sum(seen, [])) == list(range(len(split)))  # every image once
    # the next epoch (the generator moved on) reads them in another order
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.cat([y for _, y in StreamSplit(split).batches(7, True, generator)]) for _ in range(2))
    assert not torch.equal(first, second) and torch.equal(first.sort().values, second.sort().values)


def test_a_cache_that_cannot_fit_the_disk_is_refused_in_one_line(photos, tmp_path, monkeypatch):
    root = make_folder(tmp_path / "big", per_class=2)
    monkeypatch.setattr(folders.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10 * 2 ** 20}))
    with pytest.raises(DatasetError) as refused:
        load_dataset(f"folder:{root}", "train", quiet=True, options={"side": 64})
    message = str(refused.value)
    assert "\n" not in message and "free" in message and '"cache": false' in message
    assert not list((root / ".cnnlab-cache").glob("*.npy"))
    # decoded on the fly, it trains without the cache
    assert len(load_dataset(f"folder:{root}", "train", quiet=True, options={"side": 64, "cache": False})) == 3


MEMORY_CHILD = """
import sys, numpy as np, torch
from types import SimpleNamespace
from cnnlab.data import Split
from cnnlab.data.stored import CachedRows, StoredImages
from cnnlab.train.batches import Augment, TensorSplit
from cnnlab.train.streaming import StreamSplit

path, count = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
info = SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=10)
split = Split(StoredImages(CachedRows(path, np.arange(count), 3)), np.zeros(count, np.int64), info, "train")

def epoch(data):
    for _ in data.batches(256, True, torch.Generator().manual_seed(0), Augment(flip=0.5)):
        pass
    # the peak of this program's own memory (getrusage's would count the parent's, copied by the fork before exec)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024

print(epoch(StreamSplit(split)), epoch(TensorSplit(split)) if count > 5000 else 0)
"""


def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    """An epoch over a cache of 3,000 and of 30,000 32-px images (9 and 92 MB) peaks at the same resident memory
    streamed; held in memory, the larger one costs its size."""
    peaks = {}
    # glibc's allocator otherwise keeps freed batches for reuse, up to a plateau reached after some 20 batches:
    # the same for any dataset, but it would hide what this compares within the small one's few batches
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2 ** 17)}
    for count in (3_000, 30_000):
        path = tmp_path / f"{count}.npy"
        cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 3, 32, 32))
        cache[:] = 7
        cache.flush()
        del cache
        child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(count)], capture_output=True,
                               text=True, timeout=300, env=env)
        assert child.returncode == 0, child.stderr[-2000:]
        peaks[count] = [int(v) for v in child.stdout.split()]
    streamed_small, streamed_large, in_memory = peaks[3_000][0], *peaks[30_000]
    assert streamed_large - streamed_small < 15, peaks  # MB: batches, not the set
    assert in_memory - streamed_large > 60, peaks  # the check can fail: a set held in memory costs its 88 MiB


def small_run(photos, **settings):
    return recipe_config(model="simple-cnn", model_options={"channels": [4, 8], "hidden": 16},
                         dataset=f"folder:{photos}", dataset_options={"side": 16}, epochs=2, batch_size=4,
                         threads=1, device="cpu", augment={"crop_padding": 2, "flip": 0.5}, checkpoint_every=3,
                         **settings)


def test_a_streamed_run_killed_mid_epoch_resumes_from_its_step_checkpoint_exactly(photos, tmp_path):
    """10 steps an epoch, a checkpoint every 3: killed at step 5 of epoch 2, resumed from its step 3."""
    config = small_run(photos)
    Trainer(config, name="whole", runs_dir=tmp_path, progress=False).fit()
    killed_run(config, "killed", tmp_path, epoch=2)
    position = load_checkpoint(tmp_path / "killed" / CHECKPOINT)["position"]
    assert (position["epoch"], position["step"]) == (2, 3)
    Trainer.resume(tmp_path / "killed", progress=False).fit()
    assert metrics_without_timings(tmp_path / "killed") == metrics_without_timings(tmp_path / "whole")


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def said(process: subprocess.CompletedProcess) -> str:
    """A failed torchrun's standard error for an assertion: the processes' own first lines (why one stopped), then
    torchrun's summary at the end."""
    err = process.stderr
    return err if len(err) < 4000 else f"{err[:2500]}\n...\n{err[-1500:]}"


def test_two_processes_killed_mid_epoch_resume_exactly(photos, tmp_path):
    """The same under torchrun: each process reads its share; the step checkpoint keeps both processes' running
    sums, and the resumed pair ends with the uninterrupted pair's metrics.jsonl, bit for bit."""
    config = small_run(photos)
    whole = torchrun("-m", "cnnlab", "train", "--config", write_config(config, tmp_path), "--runs-dir", tmp_path,
                     "--name", "whole", "--quiet")
    assert whole.returncode == 0, said(whole)
    child = tmp_path / "killed_child.py"
    child.write_text(_KILLED_CHILD)
    killed = torchrun(child, json.dumps([config.to_dict(), "killed", str(tmp_path), 2, "mid-epoch"]))
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-2000:]
    position = load_checkpoint(tmp_path / "killed" / CHECKPOINT)["position"]
    assert (position["epoch"], position["step"], len(position["accumulated"])) == (2, 3, 2)
    resumed = torchrun("-m", "cnnlab", "train", "--resume", tmp_path / "killed", "--quiet")
    assert resumed.returncode == 0, said(resumed)
    assert metrics_without_timings(tmp_path / "killed") == metrics_without_timings(tmp_path / "whole")


def write_config(config, folder):
    path = folder / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    return path


def test_a_torchvision_resnet18_fine_tuned_on_a_streamed_folder_of_photos(resnet_pth, tmp_path, capsys):
    """The practitioner's case of docs/data.md, small: ResNet-18 from a .pth in torchvision's layout (its keys are
    tests/reference's), fine-tuned on a folder of photos read from disk, then evaluated and asked about a photo
    (the report of such a run: tests/test_matrix.py's streamed-folder row)."""
    layout = json.loads(MANIFEST.read_text())["models"]["resnet18"]["state_dict"]
    assert set(torch.load(resnet_pth, weights_only=True)) == {name for name, _, _ in layout}
    photos = make_folder(tmp_path / "photos", per_class=6, size=(120, 100))
    code, out, err = run_in_process(capsys, "transfer", "--from", resnet_pth, "--dataset", f"folder:{photos}",
                                    "--dataset-options", '{"side": 64}', "--mode", "fine-tune", "--lr-backbone",
                                    "1e-4", "--epochs", 1, "--batch-size", 5, "--threads", 1, "--device", "cpu",
                                    "--runs-dir", tmp_path / "runs", "--quiet")
    assert code == 0, err
    run = Path(out.strip())
    assert json.loads((run / "config.json").read_text())["dataset_options"]["side"] == 64
    code, out, err = run_in_process(capsys, "evaluate", run, "--json")
    assert code == 0 and json.loads(out)["images"] == 3, err  # one of each class held out
    code, out, err = run_in_process(capsys, "predict", run, photos / "red" / "001.png", "--json")
    assert code == 0 and set(json.loads(out)[0]["probabilities"]) == set(COLOURS), err


def test_the_pixel_sums_kept_beside_a_cache_give_the_statistics_and_are_remade_when_missing(photos):
    """The mean, std and colour of a split come from each image's exact sums, kept beside the cache at decoding;
    a cache made before that has them made by one pass over it, and the numbers are the same."""
    expected = load_dataset(f"folder:{photos}", "train", quiet=True)
    direct = folders.channel_stats(np.asarray(expected.images))
    assert [list(expected.info.mean), list(expected.info.std)] == list(direct)
    pixels = expected.images.rows.path  # this decode's cache (the folder holds others, of other sides)
    sums = pixels.with_name(pixels.name.removesuffix(".npy") + ".sums.npy")
    sums.unlink()
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    again = load_dataset(f"folder:{photos}", "train", quiet=True)
    assert (again.info.mean, again.info.std, again.info.channels) == (expected.info.mean, expected.info.std, 3)
    assert sums.is_file()
