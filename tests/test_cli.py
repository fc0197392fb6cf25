import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnnlab.cli import COMMANDS
from cnnlab.data import load_dataset

from conftest import metrics_without_timings, run_in_process, run_cli


def cnnlab(*args, cwd=None, env=None, process=False):
    """`cnnlab ARGS`: in this process (conftest.run_cli), or as a real `process` where starting one is what is
    tested."""
    if not process:
        return run_cli(*args, cwd=cwd, env=env)
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("cli-runs")
    result = cnnlab("train", "--train-limit", 2000, "--test-limit", 1000, "--epochs", 2, "--batch-size", 32,
                    "--threads", 1, "--device", "cpu", "--name", "cli", "--runs-dir", runs_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    run_dir = result.stdout.strip()
    assert run_dir.endswith("cli")
    return runs_dir, run_dir


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_in_process(capsys, command, "--help")
    assert code == 0 and "examples:" in out and "cnnlab " + command in out


def test_help_needs_neither_torch_nor_matplotlib():
    """`cnnlab --help` and every command's `--help` are instant: building the whole parser imports no heavy
    package (they load when a command runs). Checked from the modules loaded, not the clock."""
    code = ("import sys; from cnnlab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'fastapi', 'PIL', 'safetensors') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def _example_value(field):
    """A value for `field` other than its default, as the command line spells it, and as the config holds it."""
    kind = field.type.split("|")[0].strip()
    if field.metadata["choices"]:
        value = next(c for c in field.metadata["choices"] if c != field.default)
        return [value], value
    return {"int": (["7"], 7), "float": (["0.5"], 0.5), "str": (["cpu"], "cpu"), "bool": ([], True),
            "dict": (['{"max_shift": 1}'], {"max_shift": 1})}[kind]


def test_every_training_option_is_one_flag_that_reaches_the_config():
    """Declared once, in TrainConfig: each field's flag parses into the same field, with the field's help."""
    from cnnlab.cli import build_parser
    from cnnlab.commands.options import config_fields, config_overrides
    from cnnlab.train.config import TrainConfig

    parser = build_parser()
    fields = config_fields()
    assert {f.name for f in fields} == {f.name for f in dataclasses.fields(TrainConfig)} - {"transfer"}
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        words, value = _example_value(field)
        args = parser.parse_args(["train", flag, *words])
        assert config_overrides(args) == {field.name: value}, flag
    help_text = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--help"], capture_output=True,
                               text=True, env={**os.environ, "COLUMNS": "200"}).stdout
    for field in fields:
        assert field.metadata["help"].split("(")[0].strip()[:30] in " ".join(help_text.split()), field.name


def test_evaluate_and_runs(trained):
    runs_dir, run_dir = trained
    result = cnnlab("evaluate", run_dir, "--json")
    numbers = json.loads(result.stdout)
    # 2 epochs of 2,000 images: measured 93.27-94.25% on the 10,000 test images over seeds 0-4 x 1 and 2 threads
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
    (["train", "--bogus"], "unknown option --bogus"),
    (["evaluate", "no/such/run"], "no such run folder"),
    (["predict", "no/such/run", "x.png"], "no such run folder"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    code, _, err = run_in_process(capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_errors_through_the_real_entry_point_have_no_traceback():
    result = cnnlab("train", "--dataset", "cifar10", process=True)
    assert result.returncode == 2 and result.stderr.startswith("cnnlab train: error: unknown dataset")
    assert "Traceback" not in result.stderr


def test_predict_bad_image_names_the_file(trained, tmp_path):
    _, run_dir = trained
    (tmp_path / "notes.png").write_text("not an image")
    result = cnnlab("predict", run_dir, tmp_path / "notes.png")
    assert result.returncode == 2 and "notes.png: not a readable image" in result.stderr


# -- the paths `make demo` and a user take, beyond --quiet and --json ---------------------------------------------

TINY = ["--train-limit", "640", "--test-limit", "200", "--batch-size", "32", "--threads", "1", "--device", "cpu"]


def test_default_train_output_shows_the_run_progress_and_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width; no wrapping to match across
    code, out, err = run_in_process(capsys, "train", *TINY, "--epochs", "2", "--runs-dir", tmp_path, "--name", "loud")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "loud" / "metrics.jsonl").read_text().splitlines()]
    assert ("cnnlab train: simple-cnn on mnist (640 train / 200 test images), torch engine on cpu "
            "(fp32: auto, no native bf16 on this CPU), recipe default") in " ".join(out.split())  # rich wraps
    assert "epoch 1/2" in out and "epoch 2/2" in out and "20/20" in out  # the progress bars, 20 steps of 32
    assert f"Results — {tmp_path / 'loud'}" in out
    for row in rows:  # one table row per epoch, with the numbers of metrics.jsonl
        cells = [row["epoch"], f"{row['train_loss']:.4f}", f"{row['train_acc']:.2%}", f"{row['test_loss']:.4f}",
                 f"{row['test_acc']:.2%}"]
        assert re.search("".join(rf"│\s+{re.escape(str(cell))} " for cell in cells) + "│", out)
    assert f"final test accuracy {rows[-1]['test_acc']:.2%} (best {max(r['test_acc'] for r in rows):.2%})" in out
    # the sentence ends its line (it fits 80 columns); the run's summary follows on a line of its own
    assert re.search(r"final test accuracy [\d.]+% \(best [\d.]+%\) in [\d.]+ s\n", out)
    assert f"\nsee {tmp_path / 'loud'}/summary.md\n" in out


def test_ctrl_c_says_how_to_resume_and_the_command_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first checkpoint: exit 130 and a message with the command that continues the run; that
    command ends where an uninterrupted run ends."""
    from cnnlab.train.trainer import Trainer

    args = [*TINY, "--epochs", "2", "--runs-dir", tmp_path]
    assert run_in_process(capsys, "train", *args, "--name", "whole", "--quiet")[0] == 0
    save = Trainer._checkpoint

    def save_then_interrupt(self, row):
        save(self, row)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_checkpoint", save_then_interrupt)
    code, _, err = run_in_process(capsys, "train", *args, "--name", "cut")
    monkeypatch.setattr(Trainer, "_checkpoint", save)
    assert code == 130
    assert err.strip().splitlines()[-2:] == ["cnnlab train: interrupted after 1 finished epoch(s); resume with:",
                                              f"  cnnlab train --resume {tmp_path / 'cut'}"]
    resume = err.strip().splitlines()[-1].split()[1:]
    assert run_in_process(capsys, *resume, "--quiet")[0] == 0
    assert metrics_without_timings(tmp_path / "cut") == metrics_without_timings(tmp_path / "whole")


def test_a_runs_config_json_retrains_the_same_run(trained, tmp_path):
    _, run_dir = trained
    result = cnnlab("train", "--config", Path(run_dir) / "config.json", "--name", "again", "--runs-dir", tmp_path,
                    "--quiet")
    assert result.returncode == 0, result.stderr
    assert metrics_without_timings(tmp_path / "again") == metrics_without_timings(run_dir)


def test_checkpoint_best_and_split_train(trained, tmp_path):
    """--checkpoint best reads best.safetensors, not model.safetensors: a copy whose best weights are all zero
    (every class equally likely: the first class, '0', everywhere) shows which file was read."""
    from cnnlab.train.runs import read_weights, save_weights

    _, run_dir = trained
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    tensors, metadata = read_weights(copy / "best.safetensors")
    save_weights(copy / "best.safetensors", {k: torch.zeros_like(v) for k, v in tensors.items()}, metadata)
    last = json.loads(cnnlab("evaluate", copy, "--json").stdout)
    best = json.loads(cnnlab("evaluate", copy, "--checkpoint", "best", "--json").stdout)
    test_labels = load_dataset("mnist", "test").labels
    assert last["accuracy"] > 0.85 and best["checkpoint"] == "best"
    assert best["accuracy"] == pytest.approx((test_labels == 0).mean())  # argmax of equal logits: class 0
    on_train = json.loads(cnnlab("evaluate", run_dir, "--split", "train", "--json").stdout)
    assert on_train["split"] == "train" and on_train["images"] == 60000 and on_train["accuracy"] > 0.85
    table = " ".join(cnnlab("evaluate", run_dir).stdout.split())  # the title wraps to the table's width
    assert f"cli (last) on mnist test, 10,000 images: accuracy {last['accuracy']:.2%}, loss {last['loss']:.4f}" in table


def test_predict_plain_text_top_and_save_inputs(trained, tmp_path):
    from cnnlab.data.preprocess import load_digit

    _, run_dir = trained
    image = Image.new("RGB", (240, 320), "white")
    ImageDraw.Draw(image).line([(120, 40), (120, 280)], fill="black", width=22)  # a "1"
    image.save(tmp_path / "one.jpg")
    answer = json.loads(cnnlab("predict", run_dir, tmp_path / "one.jpg", "--json").stdout)[0]["probabilities"]
    result = cnnlab("predict", run_dir, tmp_path / "one.jpg", "--top", 2, "--out-dir", tmp_path / "seen")
    assert result.returncode == 0, result.stderr
    ranked = sorted(answer.items(), key=lambda item: -item[1])[:2]
    expected = "  ".join(f"{c} {p:.1%}" for c, p in ranked)
    assert result.stdout == f"{tmp_path / 'one.jpg'}: 1   ({expected})  -> {tmp_path / 'seen' / 'one_28x28.png'}\n"
    saved = np.asarray(Image.open(tmp_path / "seen" / "one_28x28.png"))
    assert np.array_equal(saved, load_digit(tmp_path / "one.jpg"))  # what the model saw


def test_predict_json_top_lists_that_many_classes_likeliest_first(trained, tmp_path, capsys):
    _, run_dir = trained
    image = Image.new("RGB", (240, 320), "white")
    ImageDraw.Draw(image).line([(120, 40), (120, 280)], fill="black", width=22)  # a "1"
    image.save(tmp_path / "one.png")
    code, out, _ = run_in_process(capsys, "predict", run_dir, tmp_path / "one.png", "--json")
    every = json.loads(out)[0]["probabilities"]
    code, out, _ = run_in_process(capsys, "predict", run_dir, tmp_path / "one.png", "--json", "--top", 2)
    top = json.loads(out)[0]["probabilities"]
    assert code == 0 and len(every) == 10 and list(top) == sorted(every, key=every.get, reverse=True)[:2]


def test_a_default_run_name_says_a_lab_engine(tmp_path):
    from cnnlab.train.config import recipe_config
    from cnnlab.train.runs import new_run_dir

    assert re.fullmatch(r"simple-cnn-mnist-\d{8}-\d{6}", new_run_dir(recipe_config(), root=tmp_path).name)
    for engine in ("keras", "pytensor", "scratch"):
        name = new_run_dir(recipe_config(engine=engine), root=tmp_path).name
        assert re.fullmatch(rf"simple-cnn-mnist-{engine}-\d{{8}}-\d{{6}}", name)


def test_runs_table(trained):
    runs_dir, run_dir = trained
    listing = json.loads(cnnlab("runs", "--runs-dir", runs_dir, "--json").stdout)[0]
    out = cnnlab("runs", "--runs-dir", runs_dir, env={"COLUMNS": "200"}).stdout
    assert f"Runs in {runs_dir}/" in out
    assert re.search(rf"\ncli\s+simple-cnn  mnist\s+torch\s+2/2  {listing['best_test_acc']:.2%}  "
                     rf"{listing['final_test_acc']:.2%}\s+\d+ s\n", out)
    markdown = cnnlab("runs", "--runs-dir", runs_dir, "--markdown").stdout
    assert re.search(rf"\| cli\s+\| simple-cnn \| mnist\s+\| torch\s+\|\s+2/2 \| {listing['best_test_acc']:.2%} \|",
                     markdown)
    assert cnnlab("runs", "--runs-dir", runs_dir / "empty").stdout.startswith("no runs in")


def test_the_best_recipe_builds_and_trains_with_its_own_settings():
    """Not its 12 epochs: its model, optimizer, augmentation and label smoothing, for 32 steps (after 8, batch
    norm's running statistics are still far from the data's: 13% whatever was learned)."""
    from cnnlab.train.config import RECIPES, recipe_config
    from cnnlab.train.trainer import Trainer

    trainer = Trainer(recipe_config("best", train_limit=4096, test_limit=1000, epochs=1, threads=1, device="cpu"),
                      progress=False, save=False)
    model, optimizer = trainer.engine.model, trainer.engine.optimizer
    best = RECIPES["best"]
    a, b, c = best["model_options"]["widths"]
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [a, a, a, b, b, b, c]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 7
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == best["weight_decay"]
    assert trainer.augment is not None and trainer.engine.label_smoothing == best["label_smoothing"]
    result = trainer.fit()
    # 32 steps of 128 augmented images: measured 87.3-92.1% over seeds 0-4 x 1 and 2 threads and with AVX2
    # kernels (chance 10%; a model that does not learn stays near it)
    assert result.final_test_acc > 0.6


def _every_parser(parser, name="cnnlab"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _every_parser(subparser, f"{name} {sub}")


def test_every_help_fits_80_columns(monkeypatch):
    from cnnlab.cli import build_parser

    monkeypatch.setenv("COLUMNS", "80")
    parsers = dict(_every_parser(build_parser()))
    assert {"cnnlab train", "cnnlab segment train", "cnnlab show features"} <= set(parsers)
    for name, parser in parsers.items():
        wide = [line for line in parser.format_help().splitlines() if len(line) > 80]
        assert wide == [], name


def test_segment_train_help_is_its_own(monkeypatch):
    from cnnlab.cli import build_parser

    monkeypatch.setenv("COLUMNS", "300")  # one line per option: the phrases below are not wrapped

    parsers = dict(_every_parser(build_parser()))
    segment, train = parsers["cnnlab segment train"].format_help(), parsers["cnnlab train"].format_help()
    flat = " ".join(segment.split())
    assert "(default unet)" in flat and "(default mnist-scenes)" in flat and "recipes: segmentation" not in flat
    assert "--recipe RECIPE starting settings (flags override them): segmentation" in flat
    for classification_only in ("--engine", "--augment", "--labels-per-class", "--stop-at"):
        assert classification_only not in segment and classification_only in train
    assert "(default simple-cnn)" in " ".join(train.split())


@pytest.mark.parametrize("command", [
    ["train", "--epochs", "2", "--train-limit", "640", "--test-limit", "200", "--threads", "1"],
    ["segment", "train", "--epochs", "1", "--dataset-options", '{"train_scenes": 48}', "--test-limit", "8",
     "--model-options", '{"widths": [4, 8]}', "--batch-size", "16", "--threads", "1"],
])
def test_training_output_fits_80_columns(tmp_path, command):
    """The progress lines, the results table and the closing lines of a run, in an 80-column terminal: nothing
    wider, nothing cut short with an ellipsis (a path may run on: the terminal wraps it, copying still works)."""
    name = "a-run-name-as-long-as-the-ones-cnnlab-makes-20261130-120000"
    result = cnnlab(*command, "--runs-dir", tmp_path, "--name", name, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if str(tmp_path) not in line]
    assert "epoch 1/" in result.stdout and len(lines) > 5
    assert [line for line in lines if len(line) > 80 or "…" in line] == []
    listing = cnnlab("runs", "--runs-dir", tmp_path, env={"COLUMNS": "80"}).stdout
    assert [line for line in listing.splitlines() if (len(line) > 80 and str(tmp_path) not in line) or "…" in line] == []
    assert f"\n{name}\n" in listing  # whole, on a line of its own, above its numbers
    assert listing.splitlines()[2].split() == ["model", "dataset", "engine", "epochs", "best", "final", "time"]
