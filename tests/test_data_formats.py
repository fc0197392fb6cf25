"""The formats large image sets are kept in: WebDataset tar shards (`shards:PATTERN`, written by `cnnlab data
--to-shards`) and Hugging Face datasets saved to disk or as Parquet (`hf:PATH`); all from local files."""

import contextlib
import hashlib
import io
import sys

import numpy as np
import pytest
import torch

from cnnlab.data import folders, load_dataset, shards
from cnnlab.errors import CnnlabError, DatasetError
from cnnlab.train.batches import Augment
from cnnlab.train.streaming import ShardSplit, _ShardStream, split_for

from cnnlab.cli import main

from test_folder_data import COLOURS, make_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("formats") / "photos", per_class=20, size=(24, 20))


@pytest.fixture(scope="module")
def written(photos, tmp_path_factory):
    """The folder as shards of 8 images (6 train shards, 2 test shards), by the command."""
    out = tmp_path_factory.mktemp("shards")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["data", str(photos), "--to-shards", str(out), "--shard-size", "8"]) == 0
    assert f"train on them: --dataset 'shards:{out}/train-{{000000..000005}}.tar'" in printed.getvalue()
    return out


def test_shards_hold_the_folder_split_for_split_and_pixel_for_pixel(photos, written):
    folder = {split: load_dataset(f"folder:{photos}", split, quiet=True) for split in ("train", "test")}
    stream = {split: load_dataset(f"shards:{written}/train-{{000000..000005}}.tar", split) for split in folder}
    assert (written / "classes.txt").read_text().split() == list(COLOURS)
    for split in folder:
        assert stream[split].info.classes == tuple(COLOURS)
        assert np.array_equal(stream[split].labels, folder[split].labels)  # the split's order, kept
        # the same files decoded the same way (read in order from the shards)
        assert np.array_equal(np.asarray(stream[split].images), np.asarray(folder[split].images))
    assert stream["train"].info.mean == folder["train"].info.mean  # all 48 training images measured
    assert stream["train"].images[5:9].shape == (4, 3, 32, 32) and isinstance(split_for(stream["train"]), ShardSplit)


def test_each_process_and_worker_streams_its_own_shards_and_together_every_sample_once(written):
    paths = sorted(written.glob("train-*.tar"))
    seen = []
    for rank in range(2):
        for worker in range(3):
            stream = _ShardStream(paths, None, seed=7, rank=rank, size=2, share=4, buffer=5, skip=0)
            first_cycle = stream._samples(worker, 3)  # 6 shards, 2 x 3 streams: one shard of 8 each
            seen.append([hashlib.sha1(image).hexdigest() for image, _ in (next(first_cycle) for _ in range(8))])
    flat = sum(seen, [])
    assert len(flat) == len(set(flat)) == 48  # disjoint, and all of them


def test_a_shard_stream_resumed_mid_epoch_continues_exactly(written):
    """Batches 3.. of an epoch, the stream replayed and the generator restored where the whole epoch had it."""
    train = load_dataset(f"shards:{written}/train-{{000000..000005}}.tar", "train")
    data = ShardSplit(train, workers=2)
    augment = Augment(crop_padding=2, flip=0.5)
    generator = torch.Generator().manual_seed(3)
    whole, states = [], []
    for x, y in data.batches(8, True, generator, augment):
        whole.append((x, y))
        states.append(generator.get_state())
    assert len(whole) == data.num_batches(8) == 6
    generator = torch.Generator().manual_seed(3)
    resumed = list(data.batches(8, True, generator, augment, skip=3, resume_state=states[2]))
    assert len(resumed) == 3 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                     for a, b in zip(resumed, whole[3:]))
    # the next epoch draws another order
    again = torch.cat([y for _, y in data.batches(8, True, torch.Generator().manual_seed(4))])
    assert not torch.equal(again, torch.cat([y for _, y in whole]))


def test_hugging_face_sets_on_disk_and_as_parquet(photos, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {split: {"picture": [], "kind": []} for split in ("train", "validation")}
    for c, name in enumerate(COLOURS):
        for i, path in enumerate(sorted((photos / name).iterdir())[:8]):
            rows["validation" if i < 2 else "train"]["picture"].append(str(path))
            rows["validation" if i < 2 else "train"]["kind"].append(name)
    features = datasets.Features({"picture": datasets.Image(), "kind": datasets.Value("string")})
    saved = datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features) for k, v in rows.items()})
    saved.save_to_disk(str(tmp_path / "saved"))
    for split, table in saved.items():
        table.to_parquet(str(tmp_path / "parquet" / f"{split}-00000-of-00001.parquet"))
    expected = np.stack([folders.FolderDataset(f"folder:{photos}").prepare(p) for p in rows["train"]["picture"]])
    named = {"label_column": "kind"}  # a string column named otherwise than label: given
    for where in ("saved", "parquet"):
        train = load_dataset(f"hf:{tmp_path / where}", "train", options=named)
        test = load_dataset(f"hf:{tmp_path / where}", "test", options=named)  # the validation split
        assert train.info.classes == tuple(sorted(COLOURS)) and len(train) == 18 and len(test) == 6
        assert np.array_equal(np.asarray(train.images), expected)  # decoded as a folder's files are
        assert [train.info.classes[i] for i in train.labels] == rows["train"]["kind"]
    with pytest.raises(DatasetError, match=r"which column holds the labels\? .*give the option label_column"):
        load_dataset(f"hf:{tmp_path / 'saved'}", "train").info.classes
    with pytest.raises(DatasetError, match="no column 'nope'"):
        load_dataset(f"hf:{tmp_path / 'saved'}", "train", options={"image_column": "nope", **named})


def test_a_missing_package_is_one_line_naming_the_extra(written, monkeypatch):
    monkeypatch.setitem(sys.modules, "braceexpand", None)  # as if not installed: importing it fails
    shards.shard_set.cache_clear()
    with pytest.raises(CnnlabError, match=r"needs the package braceexpand: pip install 'cnnlab\[data\]'"):
        load_dataset(f"shards:{written}/train-{{000000..000005}}.tar", "train")
