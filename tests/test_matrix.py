"""Every command that takes a run, on every kind of run: each cell works, with output of the right kind, or refuses
with one line that says why. Never a traceback.

The runs are tiny (a few hundred images, one epoch): what is checked is that the features meet, not how well the
models learned. One test per kind of run, so that each is built once, on one worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.data import dataset_info, load_dataset
from cnnlab.data.shards import write_shards
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer
from cnnlab.transfer import prepare

from conftest import run_in_process

SMALL = dict(epochs=1, train_limit=384, test_limit=100, batch_size=32, threads=1, device="cpu")
SEGMENTATION = dict(model="unet", model_options={"widths": [4, 8]}, dataset_options={"train_scenes": 64},
                    epochs=1, test_limit=12, batch_size=16, threads=1, device="cpu")
LOCALIZATION = dict(model_options={"backbone_options": {"channels": [4, 8]}, "grid": 2, "hidden": 16}, epochs=1,
                    train_limit=128, test_limit=12, batch_size=32, threads=1, device="cpu")


def build(kind: str, shared) -> Path:
    """A finished run folder of `kind`, trained once per test session (conftest.SharedBuilds): read, never written."""
    return shared.get(f"matrix-{kind}", lambda root: train(kind, root, shared))


def train(kind: str, root: Path, shared) -> Path:
    if kind == "ddp":
        command = [sys.executable, "-m", "cnnlab", "train", "--nproc-per-node", "2", "--epochs", "1", "--train-limit",
                   "384", "--test-limit", "100", "--threads", "1", "--runs-dir", str(root), "--name", kind, "--quiet"]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        return root / kind
    if kind in ("segmentation", "localization"):
        config = recipe_config(kind, **{"segmentation": SEGMENTATION, "localization": LOCALIZATION}[kind])
        return Trainer(config, name=kind, runs_dir=root, progress=False).fit().run_dir
    if kind in ("streamed-folder", "shards"):  # MNIST digits as files, read a batch at a time from disk
        dataset = digits_folder(root / "digits")
        if kind == "shards":
            patterns = write_shards(dataset_info(dataset, {"side": 28}), root / "shards", per_shard=100)
            dataset = f"shards:{patterns['train']}"
        config = recipe_config(**{**SMALL, "train_limit": None}, dataset=dataset, dataset_options={"side": 28})
        return Trainer(config, name=kind, runs_dir=root, progress=False).fit().run_dir
    settings = {"torch": {}, "scratch": {"engine": "scratch"}, "keras": {"engine": "keras"},
                "pytensor": {"engine": "pytensor"},
                "batch-norm-dropout": {"model_options": {"batch_norm": True, "dropout": 0.25},
                                       "augment": {"max_shift": 2}}}
    if kind in settings:
        return Trainer(recipe_config(**SMALL, **settings[kind]), name=kind, runs_dir=root, progress=False).fit().run_dir
    source = build("torch", shared)
    modes = {"transfer-frozen": dict(mode="feature-extract"),
             "transfer-fine-tuned": dict(mode="fine-tune", freeze_until="conv1", lr_backbone=1e-4)}
    config, model = prepare(source, "mnist", **modes[kind], **SMALL)
    return Trainer(config, name=kind, runs_dir=root, progress=False, model=model).fit().run_dir


def digits_folder(root: Path, count: int = 500) -> str:
    """The first `count` MNIST test digits as PNG files, one folder per class: `folder:` dataset of 10 classes."""
    split = load_dataset("mnist", "test")
    for n in range(count):
        folder = root / str(split.labels[n])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(split.images[n]).save(folder / f"{n:05d}.png")
    return f"folder:{root}"


DATASETS = {"segmentation": "mnist-scenes", "localization": "mnist-boxes"}  # the others' is mnist


def input_image(tmp_path: Path, kind: str) -> Path:
    """A test digit for a classifier, a test scene or canvas (black on white: predict inverts it) for the others."""
    split = load_dataset(DATASETS.get(kind, "mnist"), "test", limit=1)
    path = tmp_path / ("scene.png" if kind in DATASETS else "digit.png")
    Image.fromarray(255 - split.images[0]).save(path)
    return path


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


KINDS = ["torch", "scratch", "keras",
         pytest.param("pytensor", marks=pytest.mark.xdist_group("pytensor-c")),  # tests/test_engines.py: COMPILED_C
         "batch-norm-dropout", "transfer-frozen", "transfer-fine-tuned", "segmentation", "localization", "ddp",
         "streamed-folder", "shards"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_command_on_a_run_of_kind(kind, tmp_path, capsys, shared):
    run = build(kind, shared)
    segmentation, localization = kind == "segmentation", kind == "localization"
    image = input_image(tmp_path, kind)
    problems = []

    def cell(name, args, check):
        try:
            code, out, err = run_in_process(capsys, *args)
        except Exception as error:  # noqa: BLE001  (what a user would see as a traceback)
            problems.append(f"{name}: traceback: {type(error).__name__}: {error}")
            return
        if code != 0 or err.count("\n") > 1:
            problems.append(f"{name}: exit {code}: {err.strip()[:300]}")
            return
        try:
            ok = check(out)
        except Exception as error:  # noqa: BLE001  (a wrong kind of output, reported with the cell's name)
            ok = f"{type(error).__name__}: {error}"
        if ok is not True:
            problems.append(f"{name}: {ok or 'wrong output'}: {out[:300]}")

    # evaluate: a classifier's accuracy, a segmentation's IoU, a localization's accuracy and box IoU
    def evaluated(out):
        numbers = json.loads(out)
        if segmentation:
            return 0 <= numbers["mean_iou"] <= 1 and len(numbers["iou"]) == 11 and numbers["scenes"] == 10
        if localization:
            return (0 <= numbers["localization_accuracy"] <= numbers["accuracy"] <= 1 and numbers["images"] == 10
                    and 0 <= numbers["mean_iou"] <= 1 and len(numbers["per_class"]) == 10)
        return 0 <= numbers["accuracy"] <= 1 and len(numbers["per_class_accuracy"]) == 10 and numbers["images"] == 10

    cell("evaluate", ["evaluate", run, "--json", "--limit", 10], evaluated)

    # predict: class probabilities, or the pixels of each class, or a class and its box, and a picture per image
    # with --out-dir
    def predicted(out):
        row = json.loads(out)[0]
        if segmentation:
            return (all(name in [str(d) for d in range(10)] for name in row["pixels_per_class"])
                    and is_png(tmp_path / "out" / "scene_segmented.png"))
        if localization:
            left, top, right, bottom = row["box"]
            return (0 <= left <= right <= 64 and 0 <= top <= bottom <= 64 and row["class"] in row["probabilities"]
                    and abs(sum(row["probabilities"].values()) - 1) < 1e-4
                    and is_png(tmp_path / "out" / "scene_box.png"))
        return (abs(sum(row["probabilities"].values()) - 1) < 1e-4 and row["class"] in row["probabilities"]
                and is_png(tmp_path / "out" / "digit_28x28.png"))

    cell("predict", ["predict", run, image, "--json", "--out-dir", tmp_path / "out"], predicted)

    # the pictures (a localization's saliency also of a box coordinate: --target 12 is the box's width)
    pictures = [("filters", []), ("features", ["--index", 0]), ("saliency", ["--index", 0]),
                ("dream", ["--features", 2, "--steps", 4, "--quiet"])]
    for what, extra in pictures + [("saliency", ["--index", 0, "--target", 12])] * localization:
        out = tmp_path / f"{what}{len(extra)}.png"
        cell(f"show {what} {' '.join(map(str, extra))}", ["show", what, run, *extra, "--out", out],
             lambda _, out=out: is_png(out))
    # occlusion and deconv pictures are of classifiers (a localizer's class too); a segmentation is refused in one
    # line, saying why
    for what, extra, why in [("occlusion", ["--index", 0, "--stride", 4], "labels every pixel"),
                             ("deconv", ["--limit", 40, "--features", 1], "segments")]:
        out = tmp_path / f"{what}.png"
        argv = ["show", what, run, *extra, "--out", out]
        if not segmentation:
            cell(f"show {what}", argv, lambda _, out=out: is_png(out))
            continue
        code, _, err = run_in_process(capsys, *argv)
        if not (code == 2 and err.count("\n") == 1 and why in err):
            problems.append(f"show {what}: expected a one-line refusal, got exit {code}: {err.strip()[:300]}")

    def reported(_):
        page = (tmp_path / "report.html").read_text()
        headline = "mean IoU" if segmentation else "localization accuracy" if localization else "accuracy"
        return headline in page and "<img" in page and "Traceback" not in page

    cell("report", ["report", run, "--samples", 1, "--out", tmp_path / "report.html"], reported)

    # export: an ONNX file (tests/test_export.py runs such files in ONNX Runtime)
    onnx_file = tmp_path / "model.onnx"
    cell("export", ["export", run, "--format", "onnx", "--out", onnx_file],
         lambda out: out.startswith(f"wrote {onnx_file}") and onnx_file.stat().st_size > 1000)

    # train --resume of a finished run: nothing left to train, the same folder
    cell("train --resume", ["train", "--resume", run, "--quiet"], lambda out: out.strip() == str(run))

    # transfer --from: a classifier is a source; a segmentation or a localization is refused in one line, saying why
    transfer = ["transfer", "--from", run, "--dataset", "mnist", "--mode", "feature-extract", "--epochs", 1,
                "--train-limit", 64, "--test-limit", 32, "--threads", 1, "--runs-dir", tmp_path / "transferred",
                "--quiet"]
    if segmentation or localization:
        code, _, err = run_in_process(capsys, *transfer)
        if not (code == 2 and err.count("\n") == 1 and kind in err):
            problems.append(f"transfer --from: expected a one-line refusal, got exit {code}: {err.strip()[:300]}")
    else:
        cell("transfer --from", transfer, lambda out: (Path(out.strip()) / "model.safetensors").is_file())

    # the explorer: a classifier's every layer and probabilities; a segmentation's every layer and class map; a
    # localization's probabilities and box
    from cnnlab.web import create_app

    client = TestClient(create_app(runs=[run]), base_url="http://localhost")
    listed = [s["id"] for s in client.get("/api/sources").json()]
    digit = load_dataset(DATASETS.get(kind, "mnist"), "test", limit=1).images[0].tolist()
    answer = client.post("/api/activations", json={"source": f"run:{run.name}", "digit": digit})
    shown = answer.json() if answer.status_code == 200 else {}
    works = (len(shown.get("class_map", [])) == 64 and len(shown["pixels"]) == 11 if segmentation
             else len(shown.get("probabilities", [])) == 10 and (not localization or len(shown.get("box", [])) == 4))
    if f"run:{run.name}" not in listed or not works or not shown["layers"]:
        problems.append(f"explorer: {answer.status_code} {answer.text[:300]}")

    assert problems == [], f"{kind} run:\n" + "\n".join(problems)


def test_the_matrix_sees_a_broken_cell(tmp_path, capsys, monkeypatch, shared):
    """The matrix reports a cell that crashes: here `show features` is broken on purpose."""
    import cnnlab.viz.features

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(cnnlab.viz.features, "plot_feature_maps", broken)
    with pytest.raises(AssertionError, match="show features --index 0: traceback: RuntimeError: broken on purpose"):
        test_every_command_on_a_run_of_kind("torch", tmp_path, capsys, shared)


# -- a run on a folder of colour photos (folder:PATH): the commands that take such runs, and the pictures that
# still take grey images only
@pytest.fixture(scope="session")
def colour_run(shared):
    """(run folder, photos folder): ResNet-20 trained once per session on 24 generated photos of three tints."""
    from test_folder_data import make_folder

    def train_colour(root: Path) -> Path:
        photos = make_folder(root / "photos", per_class=8)
        config = recipe_config(model="resnet20", dataset=f"folder:{photos}", epochs=1, batch_size=8, threads=1,
                               device="cpu", augment={"crop_padding": 2, "flip": 0.5, "brightness": 0.2})
        return Trainer(config, name="colour", runs_dir=root / "runs", progress=False).fit().run_dir

    run = shared.get("colour-run", train_colour)
    return run, run.parents[1] / "photos"


def test_every_command_on_a_colour_folder_run(colour_run, tmp_path, capsys):
    run, photos = colour_run
    photo = photos / "red" / "001.png"

    def works(*args):
        code, out, err = run_in_process(capsys, *args)
        assert code == 0 and "Traceback" not in err, f"{args[0]}: exit {code}: {err[-300:]}"
        return out

    numbers = json.loads(works("evaluate", run, "--json"))
    assert numbers["images"] == 6 and set(numbers["per_class_accuracy"]) == {"blue", "green", "red"}
    row = json.loads(works("predict", run, photo, "--json", "--out-dir", tmp_path / "out"))[0]
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-4 and is_png(tmp_path / "out" / "001_32x32.png")
    for what, extra in [("filters", []), ("dream", ["--features", 2, "--steps", 4, "--quiet"])]:
        works("show", what, run, *extra, "--out", tmp_path / f"{what}.png")
        assert is_png(tmp_path / f"{what}.png")
    onnx_file = tmp_path / "model.onnx"
    assert works("export", run, "--format", "onnx", "--out", onnx_file).startswith(f"wrote {onnx_file}")
    assert works("train", "--resume", run, "--quiet").strip() == str(run)
    out = works("transfer", "--from", run, "--dataset", f"folder:{photos}", "--mode", "feature-extract", "--epochs",
                1, "--threads", 1, "--runs-dir", tmp_path / "transferred", "--quiet")
    assert (Path(out.strip()) / "model.safetensors").is_file()
    assert "3 classes" in works("data", f"folder:{photos}", "--sheet", tmp_path / "sheet.png")


@pytest.mark.parametrize("args", [["show", "features", "--index", 0], ["show", "saliency", "--index", 0],
                                  ["show", "occlusion", "--index", 0, "--stride", 4], ["report", "--samples", 1]])
def test_colour_pictures(colour_run, args, tmp_path, capsys):
    """The figures of one input and the report draw a colour run's photos (and an image file, prepared as the
    folder's images were)."""
    run, _ = colour_run
    command = 2 if args[0] == "show" else 1
    out = tmp_path / ("out.png" if args[0] == "show" else "report.html")
    code, _, err = run_in_process(capsys, *args[:command], run, *args[command:], "--out", out)
    assert code == 0, err[-300:]
