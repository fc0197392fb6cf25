"""The lecture's claims as experiments: the building blocks checked with exact numbers, and every experiment's
quick setting run end to end through `cnnlab experiment`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.experiments import EXPERIMENTS
from cnnlab.experiments.common import train
from cnnlab.experiments.depth import cifar_net
from cnnlab.experiments.explanation_sanity import spearman, weighted_layers
from cnnlab.experiments.hand_vs_learned import first_layer_model
from cnnlab.experiments.invariance import POOLINGS, SumPool2d, pooled_cnn, transform
from cnnlab.experiments.weight_sharing import conv_as_dense, mlp
from cnnlab.viz.handcrafted import CATALOGUE
from cnnlab.models import get_model
from cnnlab.train.config import recipe_config


def test_sum_pooling_is_the_window_sum():
    x = torch.arange(32.0).view(1, 2, 4, 4)
    expected = x.view(1, 2, 2, 2, 2, 2).sum((3, 5))  # rows and columns split into 2x2 windows
    torch.testing.assert_close(SumPool2d(2)(x), expected)
    assert SumPool2d(2)(x)[0, 0, 0, 0].item() == 0 + 1 + 4 + 5


def test_pooling_variants_differ_only_in_downsampling():
    x = torch.randn(2, 1, 28, 28)
    shapes = {}
    for pooling in POOLINGS:
        model = pooled_cnn(pooling)
        assert model(x).shape == (2, 10)
        shapes[pooling] = [tuple(p.shape) for n, p in model.named_parameters() if n.startswith("fc")]
    assert len({tuple(s) for s in shapes.values()}) == 1  # same fully connected layers: same map sizes (4x4)
    assert pooled_cnn("strided conv").conv1.stride == (2, 2)


def test_transform_moves_pixels_exactly():
    x = torch.full((1, 1, 28, 28), -0.5)
    x[0, 0, 10, 10] = 1.0
    assert (transform(x, shift_px=4)[0, 0] > 0).nonzero().tolist() == [[10, 14]]
    torch.testing.assert_close(transform(x), x)
    # 90 degrees clockwise about the centre (13.5, 13.5): (row 10, col 10) -> (row 10, col 17)
    assert (transform(x, rotate_deg=90)[0, 0] > 0.5).nonzero().tolist() == [[10, 17]]
    assert transform(x, shift_px=6).min().item() == pytest.approx(-0.5)  # background fills in


def test_conv_layers_counted_as_dense_layers():
    rows = conv_as_dense(get_model("simple-cnn"))
    assert [(r["layer"], r["conv"]) for r in rows] == [("conv1", 16 * 25 + 16), ("conv2", 32 * 16 * 25 + 32)]
    # conv1 maps 1x28x28 to 16x24x24 = 9216 outputs: locally connected, each has its own 5x5 window + bias;
    # fully connected, each sees all 784 inputs + bias
    assert rows[0]["locally_connected"] == 9216 * 26 and rows[0]["fully_connected"] == 9216 * 785
    assert rows[1]["locally_connected"] == 2048 * 401 and rows[1]["fully_connected"] == 2048 * 2305
    assert sum(p.numel() for p in mlp([100]).parameters()) == 784 * 100 + 100 + 100 * 10 + 10


def test_frozen_first_layer_stays_hand_crafted_while_learned_one_trains():
    config = recipe_config("default", epochs=1, train_limit=256, test_limit=64, threads=1)
    kernels = torch.from_numpy(np.stack([f.kernel for f in CATALOGUE]))[:, None]
    hand, learned = first_layer_model("hand-crafted (frozen)"), first_layer_model("learned")
    before = learned.conv1.weight.detach().clone()
    train(config, hand)
    train(config, learned)
    torch.testing.assert_close(hand.conv1.weight, kernels)
    assert hand.conv1.bias.abs().max() == 0
    assert not torch.allclose(learned.conv1.weight, before)
    assert hand.conv2.weight.requires_grad and not hand.conv1.weight.requires_grad


@pytest.mark.parametrize("depth, convs", [(20, 19), (56, 55)])
def test_depth_nets_have_the_papers_layer_count(depth, convs):
    plain, residual = cifar_net(depth, (4, 8, 16), False), cifar_net(depth, (4, 8, 16), True)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in plain.modules()) == convs  # + 1 fc = depth
    # option A shortcuts add no parameters: plain and residual nets are the same size
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in residual.parameters())
    with pytest.raises(ValueError, match="depth 6n\\+2, got 21"):
        cifar_net(21, (4, 8, 16), True)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_experiment_writes_numbers_and_a_figure(name, tmp_path):
    assert main(["experiment", name, "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    record = json.loads((tmp_path / name / "result.json").read_text())
    assert record["experiment"] == name and record["setting"] == "quick" and record["claim"]
    with Image.open(tmp_path / name / f"{name}.png") as figure:
        assert figure.width > 600
    result = record["result"]
    # The quick setting trains each net for 10 steps with the experiments' fixed seed 0; measured with 1 and 2
    # threads (chance 10%): CNN 57.3% / 58.0%, the pooling nets unshifted 50.5-63.0%, the hand-vs-learned arms
    # 57.3-65.3% (the same with both thread counts).
    if name == "weight-sharing":
        cnn = result["nets"]["CNN (simple-cnn)"]
        assert cnn["parameters"] == 80_202 and cnn["test_acc"] > 0.3
        assert result["cnn_if_fully_connected"] == 80_202 - 416 - 12_832 + 9216 * 785 + 2048 * 2305
    elif name == "invariance":
        for net in result["nets"].values():
            unmoved = net["shift"][record["settings"]["shifts"].index(0)]
            assert unmoved > 0.2 and unmoved == net["rotation"][record["settings"]["rotations"].index(0)]
    elif name == "depth":
        assert set(result["nets"]) == {"plain-8", "plain-14", "resnet-8", "resnet-14"}
        assert all(len(n["train_acc"]) == record["settings"]["epochs"] for n in result["nets"].values())
    elif name == "explanation-sanity":
        assert result["layers"] == ["fc2", "fc1", "conv2", "conv1"]
        for method, row in result["rank_correlation"].items():
            assert row["mean"][0] == 1.0 and len(row["mean"]) == 5 and all(-1 <= r <= 1 for r in row["mean"])
        # the quick setting's 3 images: with every layer random, Grad-CAM's maps are unrelated to the trained
        # net's (measured -0.24) while guided backprop's still follow the ink (+0.58), as the paper found
        final = {m: row["mean"][-1] for m, row in result["rank_correlation"].items()}
        assert final["Grad-CAM"] < 0.2 < final["guided backprop"]
    elif name == "hand-vs-learned":
        assert set(result["datasets"]["mnist"]) == {"hand-crafted (frozen)", "random (frozen)", "learned"}
        assert all(arm["test_acc"] > 0.2 for arm in result["datasets"]["mnist"].values())


def test_spearman_ranks_maps_with_ties_and_randomization_runs_from_the_top():
    a = np.array([[0.0, 0.0], [1.0, 5.0]])
    assert spearman(a, a * 3 + 1) == pytest.approx(1.0)  # a rank correlation ignores any increasing map
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ties take their average rank: ranks (0.5, 0.5, 2, 3) against (0, 1, 2, 3) -> Pearson of the ranks
    assert spearman(a, np.array([[0.0, 1.0], [2.0, 3.0]])) == pytest.approx(np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
    assert spearman(a, np.zeros((2, 2))) == 0.0  # a constant map ranks nothing
    assert weighted_layers(get_model("simple-cnn")) == ["fc2", "fc1", "conv2", "conv1"]


def test_unknown_experiment_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "dpeth"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'dpeth'" in capsys.readouterr().err


def test_replot_redraws_from_result_json_and_names_a_missing_one(tmp_path, capsys):
    assert main(["experiment", "depth", "--replot", "--out", str(tmp_path)]) == 2
    assert f"{tmp_path}/depth/result.json: no result yet" in capsys.readouterr().err
    measured = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "depth" / "result.json"
    (tmp_path / "depth").mkdir()
    shutil.copy(measured, tmp_path / "depth" / "result.json")
    assert main(["experiment", "depth", "--replot", "--out", str(tmp_path)]) == 0
    with Image.open(tmp_path / "depth" / "depth.png") as figure:
        assert figure.width > 600


def test_seeds_give_each_headline_number_as_mean_and_spread(tmp_path, capsys):
    """`--seeds 2`: the experiment runs with seeds 0 and 1 (initial weights and data order differ, so the numbers
    do), and each headline number is the mean and sample standard deviation of the two; `--seeds 0` is refused."""
    assert main(["experiment", "weight-sharing", "--quick", "--seeds", "2", "--out", str(tmp_path),
                 "--threads", "1"]) == 0
    assert "mean ± std over 2 seeds" in capsys.readouterr().out
    record = json.loads((tmp_path / "weight-sharing" / "result.json").read_text())
    assert record["seeds"] == 2 and record["settings"]["seed"] == [0, 1] and len(record["other_seeds"]) == 1
    row = record["summary"]["CNN (simple-cnn): test accuracy"]
    seeds = [r["nets"]["CNN (simple-cnn)"]["test_acc"] for r in [record["result"], *record["other_seeds"]]]
    assert row["values"] == seeds and seeds[0] != seeds[1]
    assert row["mean"] == pytest.approx(np.mean(seeds), abs=1e-5)
    assert row["std"] == pytest.approx(np.std(seeds, ddof=1), abs=1e-5)
    from cnnlab.errors import ConfigError
    from cnnlab.experiments.runner import run_experiment

    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        run_experiment("weight-sharing", "quick", tmp_path, seeds=0)
