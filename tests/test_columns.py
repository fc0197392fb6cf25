"""Every command's output fits an 80-column terminal: tables, progress and result lines, messages. Each command
runs in-process in a folder holding small runs under runs/, so that the paths printed are the short relative ones
a user sees; a one-line error (which names a file whatever its length) is the one exception."""

import os
import shutil
from pathlib import Path

import matplotlib
import pytest
from PIL import Image, ImageDraw

from cnnlab.cli import COMMANDS

from conftest import run_in_process

TINY = ["--train-limit", 160, "--test-limit", 100, "--batch-size", 32, "--threads", 1, "--device", "cpu"]
SCENES = ["--dataset-options", '{"train_scenes": 48}', "--test-limit", 8, "--model-options",
          '{"widths": [4, 8]}', "--batch-size", 16, "--threads", 1, "--device", "cpu"]


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > 80 or "…" in line]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with a digit, a scene and a portrait, as a user has them."""
    folder = tmp_path_factory.mktemp("columns")
    digit = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(digit).line([(60, 20), (60, 140)], fill=0, width=14)
    digit.save(folder / "digit.png")
    scene = Image.new("L", (84, 64), 0)
    ImageDraw.Draw(scene).line([(20, 15), (20, 45)], fill=255, width=3)
    scene.save(folder / "scene.png")
    shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", folder / "portrait.jpg")
    return folder


def test_every_command_fits_80_columns(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "80")
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # serve prints its line, then stops
    outputs, seen = {}, set()

    def fits(*argv):
        code, out, err = run_in_process(capsys, *argv)
        assert code == 0, f"cnnlab {' '.join(map(str, argv))}: {err[-400:]}"
        outputs[" ".join(map(str, argv))] = out + err
        seen.add(str(argv[0]))
        return out

    # a run with the name cnnlab gives it (with the progress, the results table and the closing lines) on a busy
    # machine, with the note that says what to do about it
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 8.0, 7.0))
    out = fits("train", *TINY[:-4], "--threads", 2, "--device", "cpu", "--epochs", 1)
    assert "--threads 1 can train faster here" in " ".join(out.split())
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    (clf,) = [f"runs/{path.name}" for path in (folder / "runs").iterdir()]
    assert len(clf) > 35  # simple-cnn-mnist-YYYYmmdd-HHMMSS: the runs table is too wide for one line per run
    seg = fits("segment", "train", *SCENES, "--epochs", 1, "--quiet").strip()
    fits("runs")
    for run in (clf, seg):
        fits("evaluate", run)
        fits("show", "features", run, "--index", 0)
    fits("report", seg, "--samples", 1, "--out", "report.html")  # one line each, whatever the run
    fits("export", seg, "--out", "model.onnx")
    fits("show", "filters", clf)
    fits("predict", clf, "digit.png", "--top", 5)
    fits("predict", clf, "portrait.jpg")  # with its note: unlike the training images
    fits("predict", seg, "scene.png")
    fits("show", "saliency", clf, "digit.png")
    fits("show", "occlusion", clf, "--index", 0, "--stride", 7)
    fits("show", "dream", clf, "--features", 2, "--steps", 2, "--quiet")
    fits("show", "random-filters")
    fits("transfer", "--from", clf, "--dataset", "mnist", "--mode", "feature-extract", *TINY, "--epochs", 1)
    fits("zoo", "--family", "alexnet")
    fits("zoo", "--family", "resnet")
    fits("zoo", "--family", "vgg")
    for model in ("googlenet", "vgg16", "resnet18", "unet"):
        fits("summary", model)
    fits("filters")
    fits("info")
    fits("data", "mnist", "--per-class", 1)
    fits("serve", "--port", 0)
    fits("experiment", "invariance", "--quick", "--out", "experiments")
    assert seen == set(COMMANDS)
    wide = [f"cnnlab {command}: {line}" for command, out in outputs.items() for line in too_wide(out)]
    assert wide == [], "\n".join(wide)


def test_the_busy_note_only_when_threads_wait_for_cores(monkeypatch):
    from cnnlab import hardware

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 0.5, 0, 0))
    assert f"load average {cores + 0.5:.1f} on {cores} cores" in hardware.busy_note(2)
    assert hardware.busy_note(1) is None  # one thread waits for nobody
    monkeypatch.setattr(os, "getloadavg", lambda: (cores - 0.5, 0, 0))
    assert hardware.busy_note(2) is None


def test_help_breaks_lines_between_words_never_at_a_hyphen(monkeypatch):
    """`mnist-` at the end of one line and `scenes` on the next is not a name anyone can copy."""
    import re

    from cnnlab.cli import build_parser
    from test_cli import _every_parser

    monkeypatch.setenv("COLUMNS", "80")
    broken = [f"{name}: {line}" for name, parser in _every_parser(build_parser())
              for line in parser.format_help().splitlines() if re.search(r"\w-$", line)]
    assert broken == []
