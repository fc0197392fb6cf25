import json
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from cnnlab.cli import COMMANDS, main


def cnnlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("cli-runs")
    result = cnnlab("train", "--train-limit", 2000, "--test-limit", 1000, "--epochs", 2, "--batch-size", 32,
                    "--threads", 1, "--name", "cli", "--runs-dir", runs_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    run_dir = result.stdout.strip()
    assert run_dir.endswith("cli")
    return runs_dir, run_dir


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_in_process(capsys, command, "--help")
    assert code == 0 and "examples:" in out and "cnnlab " + command in out


def test_evaluate_and_runs(trained):
    runs_dir, run_dir = trained
    result = cnnlab("evaluate", run_dir, "--json")
    numbers = json.loads(result.stdout)
    assert result.returncode == 0 and numbers["images"] == 10000 and numbers["accuracy"] > 0.85
    listing = json.loads(cnnlab("runs", "--runs-dir", runs_dir, "--json").stdout)
    assert [row["name"] for row in listing] == ["cli"] and listing[0]["epochs"] == "2/2"


def test_predict_a_drawn_digit(trained, tmp_path):
    _, run_dir = trained
    image = Image.new("RGB", (240, 320), "white")
    ImageDraw.Draw(image).line([(120, 40), (120, 280)], fill="black", width=22)  # a "1"
    image.save(tmp_path / "one.jpg")
    result = cnnlab("predict", run_dir, tmp_path / "one.jpg", "--json")
    assert result.returncode == 0, result.stderr
    (answer,) = json.loads(result.stdout)
    assert answer["class"] == "1" and sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("args,message", [
    (["train", "--epochs", "0"], "epochs must be at least 1"),
    (["train", "--lr", "fast"], "argument --lr: invalid float value"),
    (["train", "--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["train", "--dataset", "cifar10"], "unknown dataset 'cifar10'"),
    (["train", "--augment", "{shift: 2}"], "not valid JSON"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["evaluate", "no/such/run"], "no such run folder"),
    (["predict", "no/such/run", "x.png"], "no such run folder"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    code, _, err = run_in_process(capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_errors_through_the_real_entry_point_have_no_traceback():
    result = cnnlab("train", "--dataset", "cifar10")
    assert result.returncode == 2 and result.stderr.startswith("cnnlab train: error: unknown dataset")
    assert "Traceback" not in result.stderr


def test_predict_bad_image_names_the_file(trained, tmp_path):
    _, run_dir = trained
    (tmp_path / "notes.png").write_text("not an image")
    result = cnnlab("predict", run_dir, tmp_path / "notes.png")
    assert result.returncode == 2 and "notes.png: not a readable image" in result.stderr
