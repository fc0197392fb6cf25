"""`folder:PATH` datasets: layout, split, decoding, the cache, bad files, and a run trained on one."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import folders, load_dataset
from cnnlab.data.folders import FolderDataset, as_channels, split_indices
from cnnlab.errors import ConfigError, DatasetError

COLOURS = {"blue": (40, 60, 210), "green": (40, 190, 60), "red": (210, 50, 40)}


def make_folder(root, per_class=12, size=(40, 30), grey=False, seed=0):
    """Noisy tinted images, PNG and JPEG alternately, of sizes around `size`: separable by colour."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = size[1] + i % 5, size[0] + 2 * (i % 3)
            pixels = np.clip(rng.normal(colour, 35, (h, w, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels).convert("L") if grey else Image.fromarray(pixels)
            image.save(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(autouse=True)
def _fresh():
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    yield
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()


def test_loads_a_folder_in_colour_with_a_stratified_split(tmp_path):
    root = make_folder(tmp_path / "photos")
    train = load_dataset(f"folder:{root}", "train", quiet=True)
    test = load_dataset(f"folder:{root}", "test", quiet=True)
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.info.classes == ("blue", "green", "red")
    # 20% of 12 per class is 2.4 -> 2 held out from each class, 10 left
    assert np.bincount(train.labels).tolist() == [10] * 3 and np.bincount(test.labels).tolist() == [2] * 3
    # the red images' red channel is brighter than their blue one, and the blue images' the other way round
    red, blue = train.images[train.labels == 2].mean((0, 2, 3)), train.images[train.labels == 0].mean((0, 2, 3))
    assert red[0] > red[2] + 100 and blue[2] > blue[0] + 100
    # per-channel statistics of the training images, in [0, 1]
    mean, std = np.array(train.info.mean), np.array(train.info.std)
    pixels = np.asarray(train.images) / 255
    np.testing.assert_allclose(mean, pixels.mean((0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(std, pixels.std((0, 2, 3)), atol=1e-4)


def test_split_is_seeded_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 5, 1])
    a = split_indices(labels, None, 0.3, seed=0)
    assert not set(a["train"]) & set(a["test"]) and len(a["train"]) + len(a["test"]) == len(labels)
    assert np.bincount(labels[a["test"]], minlength=4).tolist() == [3, 6, 2, 0]  # a lone image stays in train
    assert all(np.array_equal(a[k], split_indices(labels, None, 0.3, seed=0)[k]) for k in a)
    # in a random order: the first 12 training images are not all of class 0 (the first folder)
    assert len(set(labels[a["train"][:12]])) > 1
    assert not np.array_equal(a["test"], split_indices(labels, None, 0.3, seed=1)["test"])


def test_a_folder_with_train_and_test_keeps_its_split(tmp_path):
    make_folder(tmp_path / "set" / "train", per_class=6)
    make_folder(tmp_path / "set" / "test", per_class=2, seed=1)
    train = load_dataset(f"folder:{tmp_path / 'set'}", "train", quiet=True)
    test = load_dataset(f"folder:{tmp_path / 'set'}", "test", quiet=True)
    assert len(train) == 18 and len(test) == 6


def test_grey_images_load_as_one_channel_unless_colour_is_asked_for(tmp_path):
    root = make_folder(tmp_path / "grey", per_class=4, grey=True)
    grey = load_dataset(f"folder:{root}", "train", quiet=True)
    assert grey.images.shape[1] == 1 and isinstance(grey.info.mean, float)
    rgb = load_dataset(f"folder:{root}", "train", quiet=True, options={"color": "rgb"})
    assert rgb.images.shape[1] == 3
    assert np.array_equal(rgb.images[:, 0], grey.images[:, 0])  # grey is exact for grey images


def test_luminance_is_pillows(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    expected = [np.asarray(Image.fromarray(p.transpose(1, 2, 0)).convert("L")) for p in pixels]
    assert np.array_equal(as_channels(pixels, 1)[:, 0], np.stack(expected))


def test_crop_or_pad_keeps_the_aspect(tmp_path):
    root = tmp_path / "wide"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 16), (255, 255, 255)).save(root / name / f"{i}.png")
    cropped = load_dataset(f"folder:{root}", "train", quiet=True, options={"side": 16, "color": "gray"})
    padded = load_dataset(f"folder:{root}", "train", quiet=True, options={"side": 16, "fit": "pad", "color": "gray"})
    assert (np.asarray(cropped.images) == 255).all()  # the centre 16x16 of a white strip
    rows = padded.images[0, 0].mean(1)
    assert rows[:6].max() == 0 and rows[-6:].max() == 0 and rows[7:9].min() == 255  # a 16x4 strip, centred


def test_the_second_load_reads_the_cache_and_a_change_decodes_again(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "photos", per_class=4)
    first = load_dataset(f"folder:{root}", "train", quiet=True)
    cached = list((root / ".cnnlab-cache").glob("*[0-9a-f].npy"))  # the pixels (beside them: *.sums.npy)
    assert len(cached) == 1
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "_decode_one", no_decoding)
    second = load_dataset(f"folder:{root}", "train", quiet=True)
    assert np.array_equal(first.images, second.images)
    assert isinstance(folders.decoded(root, 32, "crop").pixels, folders.StoredImages)  # read by index, not loaded
    monkeypatch.undo()
    os.utime(root / "red" / "000.jpg", ns=(1, 1))  # the same file with another time is another folder
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    load_dataset(f"folder:{root}", "train", quiet=True)
    assert len(list((root / ".cnnlab-cache").glob("*[0-9a-f].npy"))) == 2


def test_an_unwritable_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "photos", per_class=3)
    user_cache = folders.cache_folders(root)[1]
    monkeypatch.setattr(folders, "_writable", lambda folder: folder == user_cache)
    load_dataset(f"folder:{root}", "train", quiet=True)
    assert not (root / ".cnnlab-cache").exists() and len(list(user_cache.glob("*[0-9a-f].npy"))) == 1


def test_workers_decode_the_same_pixels(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "photos", per_class=8)
    alone = np.asarray(load_dataset(f"folder:{root}", "train", quiet=True).images)
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    for path in (root / ".cnnlab-cache").iterdir():
        path.unlink()
    monkeypatch.setattr(folders, "POOL_FROM", 4)
    monkeypatch.setattr(folders, "workers", lambda: 2)
    assert np.array_equal(load_dataset(f"folder:{root}", "train", quiet=True).images, alone)


def test_bad_files_are_skipped_in_one_line(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", per_class=5)
    (root / "red" / "notes.txt").write_text("not a picture")
    (root / "green" / "cut.jpg").write_bytes((root / "green" / "000.jpg").read_bytes()[:400])
    (root / "blue" / "empty.png").write_bytes(b"")
    (root / "blue" / ".hidden.png").write_bytes(b"ignored: hidden files are not the dataset's")
    train = load_dataset(f"folder:{root}", "train")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err.rstrip("\n")) <= 80, err
    assert err.startswith("skipped 3 of 18 files, not readable images: blue/empty.png (empty)"), err
    assert len(train) + len(load_dataset(f"folder:{root}", "test", quiet=True)) == 15
    skipped = dict(folders.decoded(root, 32, "crop").skipped)
    assert skipped == {"blue/empty.png": "empty", "green/cut.jpg": "truncated or corrupt",
                       "red/notes.txt": "not an image"}


@pytest.mark.parametrize("layout, message", [
    ({"a": 3}, "1 class folder in"),
    ({}, "no class folders in"),
    ({"a": 3, "b": 0}, "class folder b in"),
    ({"a": 3, "b": ["bad"]}, "no readable image in class folder b"),
])
def test_a_folder_that_is_no_classification_dataset_is_one_error(tmp_path, layout, message):
    root = tmp_path / "set"
    root.mkdir()
    for name, content in layout.items():
        (root / name).mkdir()
        for i in range(content if isinstance(content, int) else 0):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / name / f"{i}.png")
        for bad in content if isinstance(content, list) else []:
            (root / name / f"{bad}.png").write_text("no image")
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"folder:{root}", "train", quiet=True)


@pytest.mark.parametrize("options, message", [
    ({"side": 4}, "'side' must be an integer from 8 to 512"),
    ({"fit": "stretch"}, "'fit' must be one of crop, pad"),
    ({"color": "cmyk"}, "'color' must be one of auto, rgb, gray"),
    ({"test_fraction": 1}, "'test_fraction' must be a fraction between 0 and 1"),
    ({"sides": 32}, "'sides': a folder dataset has no such option"),
    ({"mean": [0.5, 0.5]}, "'mean' must be a list of 1 or 3 numbers"),
    ({"mean": [0.5], "std": [0.2, 0.2, 0.2]}, r"'std' must be as many numbers as mean \(1\)"),
    ({"mean": [0.5], "color": "rgb"}, r"'mean' must be 3 number\(s\) for color rgb"),
])
def test_bad_folder_options_are_one_error(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        FolderDataset(f"folder:{tmp_path}", options)


def test_train_evaluate_predict_on_a_colour_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", per_class=20)
    runs = tmp_path / "runs"
    assert main(["train", "--dataset", f"folder:{root}", "--dataset-options", '{"side": 16}', "--epochs", "4",
                 "--lr", "0.01", "--runs-dir", str(runs), "--name", "colours", "--threads", "1"]) == 0
    run = runs / "colours"
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == f"folder:{root.resolve()}"
    assert config["dataset_options"]["classes"] == ["blue", "green", "red"]
    assert len(config["dataset_options"]["mean"]) == 3
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # colours this far apart: every seed separates them (a model that did not learn scores 1/3)
    assert result["images"] == 12 and result["accuracy"] >= 0.9
    photo = tmp_path / "a_red_photo.jpg"
    Image.fromarray(np.full((90, 120, 3), COLOURS["red"], np.uint8)).save(photo)
    assert main(["predict", str(run), str(photo), "--json", "--out-dir", str(tmp_path / "seen")]) == 0
    assert json.loads(capsys.readouterr().out)[0]["class"] == "red"
    seen = Image.open(tmp_path / "seen" / "a_red_photo_16x16.png")
    assert seen.size == (16, 16) and seen.mode == "RGB"


def test_the_decode_benchmark_runs_in_its_short_mode():
    import re
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, REPO / "benchmarks" / "folder_decode.py", "--files", "30", "--repeat", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (first, 1 process|first, \d processes|cached start .*) \| ([\d.]+) \| ([\d,]+) \|$",
                      out.stdout, re.M)
    assert len(rows) == 3 and all(float(seconds) > 0 for _, seconds, _ in rows), out.stdout
