import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.models.segmentation import bilinear_kernel
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import recipe_config
from cnnlab.train.runs import Run
from cnnlab.train.tasks import confusion_matrix, evaluate_segmentation, iou_per_class
from cnnlab.train.trainer import Trainer

from conftest import interrupt_after_first_epoch, metrics_without_timings

# 250 steps of 16 on the dataset's own 1-3-digit scenes (the recipe's crowded 1-5-digit scenes pay over thousands
# of steps, not 250); fp32, which every CPU computes fast (bf16 is fast only where the CPU has it natively).
SMALL = dict(model="fcn-8s", dataset_options={}, train_limit=2000, test_limit=100, epochs=2, threads=1,
             precision="fp32")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    trainer = Trainer(recipe_config("segmentation", **SMALL), name="short", runs_dir=tmp_path_factory.mktemp("runs"),
                      progress=False)
    untrained = evaluate_segmentation(trainer.engine.logits, trainer.test_data)
    return trainer, untrained, trainer.fit()


def test_short_training_beats_the_untrained_model_and_the_best_constant_guess(short_run):
    trainer, untrained, result = short_run
    # FCN-8s with the segmentation recipe (class-weighted loss, logit adjustment), 2,000 scenes x 2 epochs (10 s on
    # one core). Measured (seed 0): mean IoU 0.087 -> 0.220, the digits' 0.146, background 0.963, test loss
    # 0.591 -> 0.115 where the best constant guess (the class frequencies) scores 0.246. Untrained, the adjusted
    # logits call every pixel background: the mean IoU of that guess, exactly.
    labels = trainer.test_data.labels
    assert untrained.mean_iou == pytest.approx((labels == 0).double().mean().item() / 11)
    assert result.final.mean_iou >= untrained.mean_iou + 0.1
    assert result.final.iou[1:].nanmean() > 0.1  # it names digits, not only where ink is
    assert result.final.iou[0] > 0.93
    frequency = torch.bincount(trainer.test_data.labels.flatten().long(), minlength=11).double()
    frequency = frequency[frequency > 0] / frequency.sum()
    best_constant_loss = -(frequency * frequency.log()).sum().item()  # predicting the class frequencies
    assert result.final.loss < best_constant_loss
    assert result.history[-1]["test_miou"] == result.final.mean_iou


def test_run_folder_checkpoint_and_cli(short_run, tmp_path, capsys):
    _, _, result = short_run
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "model.safetensors", "best.safetensors", "curves.png", "iou.png",
            "scenes.png", "summary.md"} <= names
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"test_acc", "test_miou"} <= set(row)

    code = main(["segment", "evaluate", str(result.run_dir), "--json", "--limit", "100"])
    numbers = json.loads(capsys.readouterr().out)
    assert code == 0 and numbers["scenes"] == 100 and numbers["mean_iou_includes_background"]
    assert numbers["mean_iou"] == pytest.approx(result.final.mean_iou, abs=1e-9)  # the checkpoint is the model

    scene = load_dataset("mnist-scenes", "test").images[0]
    from PIL import Image

    Image.fromarray(255 - scene).save(tmp_path / "scene.png")  # black on white: predict inverts it back
    code = main(["segment", "predict", str(result.run_dir), str(tmp_path / "scene.png"), "--out", str(tmp_path),
                 "--json"])
    predicted = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and (tmp_path / "scene_segmented.png").is_file()
    model = Run.open(result.run_dir).build_model()
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
    NumPy engine: it starts from the same function as its PyTorch twin, and learning lifts its mean IoU."""
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

    def mean_iou() -> float:
        with no_grad():
            predicted = scratch(Tensor(x.numpy())).data.argmax(1)
        return iou_per_class(confusion_matrix(torch.from_numpy(predicted), y, 11)).nanmean().item()

    before = mean_iou()
    optimizer = optim.Adam(scratch.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        batch = slice(step % 6 * 16, step % 6 * 16 + 16)
        logits = scratch(Tensor(x[batch].numpy()))
        loss = SF.cross_entropy(logits.transpose(0, 2, 3, 1).reshape(-1, 11), y[batch].numpy().reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # measured (seed 0): mean IoU 0.008 -> 0.087, nearly all of it the background class; the receptive field of
    # 16 px is too small to tell most digits apart, which is what the bigger FCNs and the U-Net are for
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    assert mean_iou() >= before + 0.05


def test_segment_train_resumes_and_launches_like_train(tmp_path, monkeypatch, capsys):
    """`cnnlab segment train` is `cnnlab train` from the segmentation recipe: --resume continues an interrupted
    run to the same metrics as an uninterrupted one, and --nproc-per-node relaunches `segment train` itself."""
    config = recipe_config("segmentation", model="fcn-8s", epochs=2, train_limit=64, test_limit=16, threads=1)
    Trainer(config, name="whole", runs_dir=tmp_path, progress=False).fit()
    interrupt_after_first_epoch(config, "cut", tmp_path)
    assert main(["segment", "train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    cut, whole = metrics_without_timings(tmp_path / "cut"), metrics_without_timings(tmp_path / "whole")
    assert len(cut) == 2 and cut == whole

    launched = []
    monkeypatch.setattr("cnnlab.train.distributed.launch", lambda n, argv: launched.append((n, argv)) or 0)
    monkeypatch.setattr("sys.argv", ["cnnlab", "segment", "train", "--epochs", "1", "--nproc-per-node", "2"])
    assert main(["segment", "train", "--epochs", "1", "--nproc-per-node", "2"]) == 0
    assert launched == [(2, ["segment", "train", "--epochs", "1"])]


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_error_analysis_benchmark_agrees_with_the_evaluation(short_run):
    """benchmarks/segmentation_errors.py on a real run: its mean IoU is the evaluation's, its pixel counts add up."""
    _, _, result = short_run
    out = subprocess.run([sys.executable, BENCHMARKS / "segmentation_errors.py", result.run_dir, "--limit", "100"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    numbers = json.loads(out.stdout)
    assert numbers["mean_iou"] == pytest.approx(result.final.mean_iou, abs=1e-4)  # same 100 test scenes
    pixels = numbers["pixels"]
    assert pixels["wrong"] == pixels["digit_as_other_digit"] + pixels["background_as_digit"] + pixels["digit_as_background"]
    assert pixels["wrong"] == result.final.confusion.sum() - result.final.confusion.diag().sum()
    assert "logit_adjusted_mean_iou" not in numbers  # the recipe's saved model has the adjustment in already


def test_error_analysis_reports_what_logit_adjustment_would_change(tmp_path):
    config = recipe_config("segmentation", model="fcn-8s", epochs=1, train_limit=64, test_limit=16, threads=1,
                           precision="fp32", logit_adjustment=False)
    trainer = Trainer(config, name="weighted", runs_dir=tmp_path, progress=False)
    run_dir = trainer.fit().run_dir
    out = subprocess.run([sys.executable, BENCHMARKS / "segmentation_errors.py", run_dir, "--limit", "16"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    numbers = json.loads(out.stdout)
    # The same figure computed here: the saved model's logits minus log of the training labels' class weights.
    x, y = next(trainer.test_data.batches(16))
    with torch.inference_mode():
        logits = Run.open(run_dir).build_model().eval()(x) - trainer.engine.class_weights.log().view(-1, 1, 1)
    expected = iou_per_class(confusion_matrix(logits.argmax(1), y, 11)).nanmean().item()
    assert numbers["logit_adjusted_mean_iou"] == pytest.approx(expected, abs=1e-4)


def test_probe_benchmark_trains_and_reports():
    out = subprocess.run([sys.executable, BENCHMARKS / "segmentation_probe.py", "--model", "fcn-8s", "--seconds", "2",
                          "--eval-every", "1", "--threads", "1", "--loss", "dice"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[-1]["steps"] > 0 and rows[-1]["settings"]["loss"] == "dice"
    assert all(0 <= row["test_miou"] <= 1 and row["train_miou"] >= 0 for row in rows[:-1]) and len(rows) >= 3


def test_speed_benchmark_compares_fp32_and_bf16():
    out = subprocess.run([sys.executable, BENCHMARKS / "segmentation_speed.py", "--widths", "4,8", "--batch-size", "2",
                          "--steps", "1", "--rounds", "1", "--threads", "1"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 4,8 |"))
    fp32, bf16, ratio = (float(cell) for cell in row.strip("| ").split(" | ")[2:])
    assert fp32 > 0 and bf16 > 0 and ratio == pytest.approx(bf16 / fp32, rel=0.05)  # from unrounded rates
