import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.models.segmentation import bilinear_kernel
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import TrainConfig, recipe_config
from cnnlab.train.runs import Run, read_weights
from cnnlab.tasks.classification import confusion_matrix
from cnnlab.tasks.segmentation import SegmentationEvaluation, evaluate_segmentation, iou_per_class
from cnnlab.train.trainer import Trainer

from conftest import killed_run, metrics_without_timings, run_script

# 250 steps of 16 on the dataset's own 1-3-digit scenes (the recipe's crowded 1-5-digit scenes pay over thousands
# of steps, not 250); fp32, which every CPU computes fast (bf16 is fast only where the CPU has it natively).
# Every setting the floors below depend on is pinned here: the segmentation recipe is tuned for the full run and
# changes with it, and must not move this run's trajectory.
SMALL = dict(model="fcn-8s", model_options={}, dataset_options={}, train_limit=2000, test_limit=100, epochs=2,
             batch_size=16, optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="onecycle", warmup=0.25,
             label_smoothing=0.0, class_weights="inverse-sqrt-frequency", logit_adjustment=True, precision="fp32",
             channels_last=True, eval_batch_size=100, seed=0, threads=1, device="cpu")


def train_short_run(folder: Path) -> Path:
    """The short run, trained once per test session for every worker and file (conftest.SharedBuilds; the explorer's
    browser test draws it too), with what its Trainer measured beside it in short_run.json: the untrained and
    the final evaluations, and the test labels' class counts."""
    trainer = Trainer(recipe_config("segmentation", **SMALL), name="short", runs_dir=folder, progress=False)
    assert not trainer.engine.autocast and trainer.engine.logit_shift is not None
    untrained = evaluate_segmentation(trainer.engine.logits, trainer.test_data)
    result = trainer.fit()
    measured = {name: {"loss": evaluation.loss, "confusion": evaluation.confusion.tolist()}
                for name, evaluation in (("untrained", untrained), ("final", result.final))}
    measured["label_counts"] = torch.bincount(trainer.test_data.labels.flatten().long(), minlength=11).tolist()
    (folder / "short_run.json").write_text(json.dumps(measured))
    return result.run_dir


@pytest.fixture(scope="session")
def short_run(shared) -> SimpleNamespace:
    """The short run's folder, history, untrained and final evaluations (their numbers: no predictions kept) and
    its test labels' class counts."""
    run_dir = shared.get("seg-short-run", train_short_run)
    measured = json.loads((run_dir.parent / "short_run.json").read_text())

    def evaluation(numbers) -> SegmentationEvaluation:
        return SegmentationEvaluation(numbers["loss"], torch.tensor(numbers["confusion"]),
                                      torch.empty(0, dtype=torch.uint8))

    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return SimpleNamespace(run_dir=run_dir, history=history, untrained=evaluation(measured["untrained"]),
                           final=evaluation(measured["final"]), label_counts=torch.tensor(measured["label_counts"]))


def test_short_training_beats_the_untrained_model_and_the_best_constant_guess(short_run):
    run, counts = short_run, short_run.label_counts.double()
    # FCN-8s with the recipe's class-weighted loss and logit adjustment, 2,000 scenes x 2 epochs (10 s on one
    # core). Measured over seeds 0-4 x 1 and 2 threads, with this CPU's kernels (AVX-512) and with PyTorch's AVX2
    # ones (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): mean IoU 0.184-0.243 (untrained 0.0875: +0.096 to
    # +0.155; the lowest with AVX2, 1 thread), the digits' 0.106-0.170, background 0.962-0.965, test loss
    # 0.110-0.121 where the best constant guess (the class frequencies) scores 0.246. Untrained, the adjusted logits
    # call every pixel background: the mean IoU of that guess, exactly. The same run with an unweighted loss ends
    # as that guess (mean IoU 0.0875-0.0886, digits 0.000-0.001; seeds 0-2): the digit floor fails it.
    background_only = (counts[0] / counts.sum()).item()  # the background IoU of calling every pixel background
    assert run.untrained.mean_iou == pytest.approx(background_only / 11)
    assert run.final.mean_iou >= run.untrained.mean_iou + 0.06
    assert run.final.iou[1:].nanmean() > 0.06  # it names digits, not only where ink is
    # No floor on the background's IoU: calling every pixel background scores 0.962 there, as much as training.
    frequency = counts[counts > 0] / counts.sum()
    best_constant_loss = -(frequency * frequency.log()).sum().item()  # predicting the class frequencies
    assert run.final.loss < best_constant_loss
    assert run.history[-1]["test_miou"] == run.final.mean_iou


def test_run_folder_checkpoint_and_cli(short_run, tmp_path, capsys):
    run = short_run
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "model.safetensors", "best.safetensors", "curves.png", "iou.png",
            "scenes.png", "summary.md"} <= names
    row = json.loads((run.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"test_acc", "test_miou"} <= set(row)

    code = main(["segment", "evaluate", str(run.run_dir), "--json", "--limit", "100"])
    numbers = json.loads(capsys.readouterr().out)
    assert code == 0 and numbers["scenes"] == 100 and numbers["mean_iou_includes_background"]
    assert numbers["mean_iou"] == pytest.approx(run.final.mean_iou, abs=1e-9)  # the checkpoint is the model

    scene = load_dataset("mnist-scenes", "test").images[0]
    from PIL import Image

    Image.fromarray(255 - scene).save(tmp_path / "scene.png")  # black on white: predict inverts it back
    code = main(["segment", "predict", str(run.run_dir), str(tmp_path / "scene.png"), "--out-dir", str(tmp_path),
                 "--json"])
    predicted = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and (tmp_path / "scene_segmented.png").is_file()
    model = Run.open(run.run_dir).build_model()
    data = TensorSplit(load_dataset("mnist-scenes", "test"), limit=1)
    with torch.inference_mode():
        expected = model(next(data.batches(1))[0]).argmax(1)[0]
    counts = torch.bincount(expected.flatten(), minlength=11)
    assert predicted["pixels_per_class"] == {data.info.classes[c]: int(counts[c]) for c in range(1, 11) if counts[c]}


@pytest.mark.parametrize("settings, message", [
    (dict(model="unet", dataset="mnist"), "does segmentation but dataset 'mnist' is for classification"),
    (dict(model="simple-cnn", dataset="mnist-scenes"), "does classification but dataset 'mnist-scenes'"),
    (dict(model="fcn-8s", dataset="mnist-scenes", engine="scratch"), "torch engine only"),
    (dict(model="unet", dataset="mnist-scenes", augment={"max_shift": 2}), "not their pixel labels"),
])
def test_mismatched_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(recipe_config(**settings, train_limit=10, test_limit=10), save=False, progress=False)


def test_segment_commands_refuse_a_classification_run(tmp_path, capsys):
    run_dir = Trainer(recipe_config(epochs=1, train_limit=64, test_limit=64, threads=1), name="cls",
                      runs_dir=tmp_path, progress=False).fit().run_dir
    assert main(["segment", "evaluate", str(run_dir)]) == 2
    assert "not a segmentation model" in capsys.readouterr().err


def test_a_small_fcn_trains_in_the_scratch_engine():
    """An FCN (two conv+pool stages, 1x1 class scores, a bilinear-initialized x4 ConvTranspose2d) trained by the
    NumPy engine: it starts from the same function as its PyTorch twin, and learns where the digits are."""
    from cnnlab.scratch import Tensor, no_grad, optim
    from cnnlab.scratch import functional as SF
    from cnnlab.scratch.twin import twin

    torch.manual_seed(0)
    upscore = nn.ConvTranspose2d(11, 11, 8, stride=4, padding=2, bias=False)  # interior-exact bilinear x4
    with torch.no_grad():
        upscore.weight.zero_()
        upscore.weight[range(11), range(11)] = bilinear_kernel(4)
    fcn = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 11, 1), upscore)
    scratch = twin(fcn)
    data = TensorSplit(load_dataset("mnist-scenes", "train"), limit=96)
    x, y = next(data.batches(96))
    with no_grad():
        np.testing.assert_allclose(scratch(Tensor(x.numpy())).data, fcn(x).detach().numpy(), atol=2e-5)

    def ink_found_and_background_kept() -> tuple[float, float]:
        """(share of digit pixels predicted as some digit, share of background pixels predicted as background)"""
        with no_grad():
            predicted = scratch(Tensor(x.numpy())).data.argmax(1)
        ink = (y > 0).numpy()
        return (predicted[ink] > 0).mean(), (predicted[~ink] == 0).mean()

    # The recipe's loss, written with the engine's own operations: cross-entropy weighted by class frequency^-1/2
    # (plain cross-entropy teaches so small a net to call every pixel background: background is 96% of them).
    frequency = np.bincount(y.numpy().ravel(), minlength=11) / y.numel()
    weight = (frequency ** -0.5 / (frequency ** -0.5 * frequency).sum()).astype(np.float32)
    optimizer = optim.Adam(scratch.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        batch = slice(step % 6 * 16, step % 6 * 16 + 16)
        logits = scratch(Tensor(x[batch].numpy())).transpose(0, 2, 3, 1).reshape(-1, 11)
        labels = y[batch].numpy().reshape(-1)
        chosen = np.eye(11, dtype=np.float32)[labels] * weight[labels][:, None]
        loss = -(SF.log_softmax(logits) * Tensor(chosen)).sum() / float(weight[labels].sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # Measured over torch seeds 0-4 (1 and 2 threads: equal): 72-93% of the digit pixels found, 97-98% of the
    # background kept, mean IoU 0.100-0.169. Untrained it calls every pixel a digit (ink 100%, background 0%);
    # predicting background everywhere gives ink 0%, background 100%: each fails one floor.
    ink, background = ink_found_and_background_kept()
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    assert ink >= 0.5 and background >= 0.9


def test_segment_train_prints_the_iou_table_and_resumes_a_killed_run(tmp_path, capsys, monkeypatch):
    """`cnnlab segment train` is `cnnlab train` from the segmentation recipe: without --quiet it ends with the
    IoU table, and --resume continues a run killed mid-epoch to the same metrics as an uninterrupted one."""
    monkeypatch.setenv("COLUMNS", "200")
    config = recipe_config("segmentation", **{**SMALL, "train_limit": 64, "test_limit": 16})
    args = ["segment", "train", "--model", "fcn-8s", "--model-options", "{}", "--dataset-options", "{}", "--epochs",
            "2", "--batch-size", "16", "--lr", "3e-3", "--precision", "fp32", "--channels-last", "--threads", "1", "--device", "cpu",
            "--train-limit", "64", "--test-limit", "16", "--runs-dir", str(tmp_path), "--name", "whole"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert TrainConfig.load(tmp_path / "whole" / "config.json") == config  # the command line says what SMALL says
    final = json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"final test mean IoU {final['test_miou']:.4f} (best " in out
    assert re.search(r"│ background\s+│\s+[\d,]+ │ [01]\.\d{4} │", out)

    killed_run(config, "killed", tmp_path)
    assert main(["segment", "train", "--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    killed, whole = metrics_without_timings(tmp_path / "killed"), metrics_without_timings(tmp_path / "whole")
    assert len(killed) == 2 and killed == whole


@pytest.mark.slow
def test_segment_train_in_two_processes_equals_one(tmp_path):
    """--nproc-per-node relaunches `segment train` itself under torchrun: the class-weighted loss summed over
    both processes' shares is the one-process loss of the global batch, so the weights agree. Without batch norm
    and dropout, whose statistics and masks are per process, and with SGD: Adam's normalized step turns the
    rounding of a near-zero gradient into a step of up to lr."""
    args = ["segment", "train", "--model", "fcn-8s", "--model-options", '{"batch_norm": false, "dropout": 0.0}',
            "--epochs", "1", "--train-limit", "32", "--test-limit", "16",
            "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.01", "--precision", "fp32", "--threads", "1",
            "--device", "cpu", "--runs-dir", tmp_path, "--quiet"]
    assert main([*map(str, args), "--name", "single"]) == 0  # in this process; the two-process run is torchrun's
    command = [sys.executable, "-m", "cnnlab", *map(str, args)]
    ddp = subprocess.run([*command, "--name", "ddp", "--nproc-per-node", "2"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["_meta"]["world_size"] == 2
    single, double = read_weights(tmp_path / "single" / "model.safetensors")[0], \
        read_weights(tmp_path / "ddp" / "model.safetensors")[0]
    for key in single:
        torch.testing.assert_close(double[key], single[key], atol=1e-5, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # only rank 0 wrote


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_error_analysis_benchmark_agrees_with_the_evaluation(short_run):
    """benchmarks/segmentation_errors.py on a real run: its mean IoU is the evaluation's, its pixel counts add up."""
    run = short_run
    code, out, err = run_script(BENCHMARKS / "segmentation_errors.py", run.run_dir, "--limit", "100")
    assert code == 0, err[-2000:]
    numbers = json.loads(out)
    assert numbers["mean_iou"] == pytest.approx(run.final.mean_iou, abs=1e-4)  # same 100 test scenes
    pixels = numbers["pixels"]
    assert pixels["wrong"] == pixels["digit_as_other_digit"] + pixels["background_as_digit"] + pixels["digit_as_background"]
    assert pixels["wrong"] == run.final.confusion.sum() - run.final.confusion.diag().sum()
    assert "logit_adjusted_mean_iou" not in numbers  # the recipe's saved model has the adjustment in already


def test_error_analysis_reports_what_logit_adjustment_would_change(tmp_path):
    config = recipe_config("segmentation", model="fcn-8s", epochs=1, train_limit=64, test_limit=16, threads=1,
                           precision="fp32", logit_adjustment=False)
    trainer = Trainer(config, name="weighted", runs_dir=tmp_path, progress=False)
    run_dir = trainer.fit().run_dir
    code, out, err = run_script(BENCHMARKS / "segmentation_errors.py", run_dir, "--limit", "16")
    assert code == 0, err[-2000:]
    numbers = json.loads(out)
    # The same figure computed here: the saved model's logits minus log of the training labels' class weights.
    x, y = next(trainer.test_data.batches(16))
    with torch.inference_mode():
        logits = Run.open(run_dir).build_model().eval()(x) - trainer.engine.class_weights.log().view(-1, 1, 1)
    expected = iou_per_class(confusion_matrix(logits.argmax(1), y, 11)).nanmean().item()
    assert numbers["logit_adjusted_mean_iou"] == pytest.approx(expected, abs=1e-4)


def test_probe_benchmark_trains_and_reports():
    # A budget of one microsecond: exactly one step on any machine (a step takes longer), then its evaluation and
    # the summary — no count that depends on the machine's speed.
    code, out, err = run_script(BENCHMARKS / "segmentation_probe.py", "--model", "fcn-8s", "--seconds", "1e-6",
                          "--eval-every", "1e-6", "--threads", "1", "--loss", "dice", "--train-scenes", "64")
    assert code == 0, err[-2000:]
    evaluation, summary = [json.loads(line) for line in out.splitlines()]
    assert evaluation["steps"] == summary["steps"] == 1 and summary["settings"]["loss"] == "dice"
    assert 0 <= evaluation["test_miou"] <= 1 and 0 <= evaluation["train_miou"] <= 1
    assert summary["test_miou"] == evaluation["test_miou"]


def test_speed_benchmark_compares_fp32_and_bf16():
    code, out, err = run_script(BENCHMARKS / "segmentation_speed.py", "--widths", "4,8", "--batch-size", "2",
                          "--steps", "1", "--rounds", "1", "--threads", "1")
    assert code == 0, err[-2000:]
    row = next(line for line in out.splitlines() if line.startswith("| 4,8 |"))
    fp32, bf16, ratio, relative = (float(cell) for cell in row.strip("| ").split(" | ")[2:])
    assert fp32 > 0 and bf16 > 0 and ratio == pytest.approx(bf16 / fp32, rel=0.05)  # from unrounded rates
    assert relative == 1.0


def test_speed_benchmark_gives_the_recipes_budget_from_the_reference_rate():
    code, out, err = run_script(BENCHMARKS / "segmentation_speed.py", "--widths", "8,16,32,64,128", "4,8",
                          "--steps", "1", "--rounds", "1", "--threads", "1", "--fp32-only")
    assert code == 0, err[-2000:]
    row = next(line for line in out.splitlines() if line.startswith("| 8,16,32,64,128 |"))
    rate = float(row.split(" | ")[2])
    budget = next(line for line in out.splitlines() if line.startswith("segmentation recipe budget here"))
    # 15 minutes where the reference trains 146 scenes/s, scaled by this machine's rate (both rounded in print)
    assert 900 * 146 / (rate + 0.5) - 1 <= float(budget.split(": ")[1].split(" s")[0]) <= 900 * 146 / (rate - 0.5) + 1
    assert "bf16" not in out.split("\n")[0]
