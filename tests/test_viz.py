"""Looking inside models: feature maps, kernels, random filters, saliency, Grad-CAM, `cnnlab show` and
`cnnlab report`, for a trained run and for other registered models."""

import base64
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.models import get_model
from cnnlab.train.config import recipe_config
from cnnlab.train.runs import Run, save_weights
from cnnlab.train.trainer import Trainer
from cnnlab.viz.activations import conv_layer, feature_maps, normalize_input
from cnnlab.viz.features import random_filter_responses
from cnnlab.viz.handcrafted import by_short_name
from cnnlab.viz.kernels import plot_kernels
from cnnlab.viz.saliency import default_cam_layer, grad_cam, gradient_saliency


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (small) MNIST run of the default CNN: 1 epoch on 1,000 images."""
    config = recipe_config("default", epochs=1, train_limit=1000, test_limit=300, threads=1, device="cpu")
    result = Trainer(config, name="tiny", runs_dir=tmp_path_factory.mktemp("runs"), progress=False).fit()
    # chance is 0.1: the pictures below are of a model that learned (measured 62.3-73.0% over seeds 0-4 x 1 and
    # 2 threads: 16 steps)
    assert result.final_test_acc > 0.5
    return result.run_dir


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    """MNIST test image 0 (a 7) as a black-on-white PNG, as a user would draw it."""
    path = tmp_path_factory.mktemp("images") / "seven.png"
    Image.fromarray(255 - load_dataset("mnist", "test").images[0]).resize((112, 112)).save(path)
    return path


def test_feature_maps_are_every_conv_and_pool_output_before_inplace_relu():
    torch.manual_seed(0)
    model = get_model("simple-cnn").eval()
    x = torch.randn(1, 1, 28, 28)
    maps, logits = feature_maps(model, x)
    assert [(n, tuple(m.shape)) for n, m in maps] == [("conv1", (16, 24, 24)), ("pool1", (16, 12, 12)),
                                                      ("conv2", (32, 8, 8)), ("pool2", (32, 4, 4))]
    conv1 = F.conv2d(x, model.conv1.weight, model.conv1.bias)[0]
    assert (conv1 < 0).any()  # the in-place ReLU after conv1 must not have zeroed the recorded map
    torch.testing.assert_close(maps[0][1], conv1)
    torch.testing.assert_close(maps[1][1], F.max_pool2d(F.relu(conv1), 2))
    torch.testing.assert_close(logits, model(x)[0])


@pytest.mark.parametrize("name, layers", [
    ("resnet20", ["conv1"] + [f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in range(3) for c in (1, 2)]
     + ["avgpool"]),
    ("lenet5", ["c1", "s2", "c3", "s4", "c5"]),  # LeNet-5's own partial conv and subsampling layers count too
])
def test_feature_maps_of_other_registered_models(name, layers):
    model = get_model(name, num_classes=10, in_channels=1, input_size=28).eval()
    maps, logits = feature_maps(model, torch.randn(1, 1, 28, 28))
    assert [n for n, _ in maps] == layers
    assert logits.shape == (10,)


def test_kernel_figure_uses_one_scale_centred_on_zero():
    conv = nn.Conv2d(1, 6, 5)
    fig = plot_kernels("conv1", conv, by_short_name())
    limit = conv.weight.abs().max().item()
    learned = [im for ax in fig.axes for im in ax.images if im.get_array().shape == (5, 5)]
    assert len(learned) == 6
    for image in learned:
        assert image.norm.vmin == pytest.approx(-limit) and image.norm.vmax == pytest.approx(limit)
    hand = [im for ax in fig.axes for im in ax.images if im.get_array().shape == (3, 3)]
    assert len(hand) == 7  # every filter of the catalogue is shown


def test_random_filter_responses_are_zero_padded_correlations():
    image = np.random.default_rng(1).random((10, 12))
    filters, responses = random_filter_responses(image, count=3, size=3, seed=4)
    padded = np.pad(image, 1)
    assert responses.shape == (3, 10, 12)
    for i, (r, c) in enumerate([(0, 0), (4, 7), (9, 11)]):
        assert responses[i, r, c] == pytest.approx((filters[i] * padded[r:r + 3, c:c + 3]).sum(), abs=1e-5)


class QuadrantModel(nn.Module):
    """Class 0 is the sum of a 1x1 conv's output over the top-left quadrant; class 1 its negation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        total = self.conv(x)[:, 0, :4, :4].sum((1, 2))
        return torch.stack([total, -total], 1)


def test_gradient_saliency_is_the_input_gradient():
    x = torch.rand(1, 1, 8, 8)
    saliency = gradient_saliency(QuadrantModel(), x, target=1)
    expected = np.zeros((8, 8))
    expected[:4, :4] = 2.0  # |d(-sum 2x)/dx| inside the quadrant, 0 outside
    np.testing.assert_allclose(saliency, expected)


def test_grad_cam_weights_maps_by_their_mean_gradient():
    x = torch.rand(1, 1, 8, 8) + 0.1
    cam, layer = grad_cam(QuadrantModel(), x, target=0)
    # channel 0 gets mean gradient 16/64, channel 1 none: the map is relu(0.25 * 2x), normalized to max 1
    assert layer == "conv"
    np.testing.assert_allclose(cam, (x[0, 0] / x.max()).numpy(), rtol=1e-5)


def test_saliency_of_a_trained_run_concentrates_on_the_digit(run_dir):
    model = Run.open(run_dir).build_model()
    digit = load_dataset("mnist", "test").images[0]
    x = normalize_input(digit, 0.1307, 0.3081)
    saliency = gradient_saliency(model, x, target=7)
    ink = digit > 50
    assert saliency[ink].mean() > 3 * saliency[~ink].mean()
    cam, layer = grad_cam(model, x, target=7)
    assert layer == "relu2" and cam.shape == (28, 28) and cam.max() == pytest.approx(1.0)


def test_grad_cam_defaults_to_the_rectified_maps_after_the_last_conv():
    x = torch.randn(1, 1, 28, 28)
    assert default_cam_layer(get_model("simple-cnn").eval(), x) == "relu2"
    assert default_cam_layer(get_model("resnet20", in_channels=1, input_size=28).eval(), x) == "layer3.2.act2"
    with pytest.raises(ConfigError, match="layer 'fc1' outputs \\(128,\\), not feature maps"):
        grad_cam(get_model("simple-cnn").eval(), x, 0, layer="fc1")


def test_show_commands_write_pictures(run_dir, digit_png, tmp_path, capsys):
    for argv in (["filters", str(run_dir)], ["filters", str(run_dir), "--layer", "conv2"],
                 ["features", str(run_dir), "--index", "3"], ["features", str(run_dir), str(digit_png)],
                 ["saliency", str(run_dir), str(digit_png)], ["random-filters", str(digit_png), "--count", "4"], ["random-filters"]):
        out = tmp_path / f"{'-'.join(a for a in argv if '/' not in a)}{len(argv)}.png"
        assert main(["show", *argv, "--out", str(out)]) == 0
        with Image.open(out) as image:
            assert image.width > 400 and image.height > 250


@pytest.mark.parametrize("argv, message", [
    (["filters", "{run}", "--layer", "fc1"], "layer 'fc1': is a Linear, not a 2-D convolution; its conv layers: conv1, conv2"),
    (["features", "{run}", "--index", "10000"], "--index 10000: the mnist test set has images 0..9999"),
    (["features", "{run}", "missing.png"], "missing.png: file not found"),
    (["saliency", "{run}", "--index", "0", "--target", "12"], "--target 12: classes are 0..9"),
    (["filters", "no/such/run"], "no/such/run: no such run folder"),
    (["features", "{run}", "--index", "0", "--out", "no/such/dir/x.png"], "folder no/such/dir does not exist"),
])
def test_show_errors_are_one_line(run_dir, argv, message, capsys):
    assert main(["show", *[a.format(run=run_dir) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_report_is_one_self_contained_html_file(run_dir, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out), "--samples", "2"]) == 0
    page = out.read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: the page works offline
    images = re.findall(r'alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    alts = [alt for alt, _ in images]
    assert alts[:5] == ["training curves", "confusion matrix", "mistakes", "kernels of conv1", "kernels of conv2"]
    assert sum(a.startswith("feature maps") for a in alts) == 2 and sum(a.startswith("saliency") for a in alts) == 2
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<td>train_limit</td><td>1000</td>" in page  # the configuration table
    assert f"<td>_meta.torch</td><td>&quot;{torch.__version__}&quot;</td>" in page  # and how the run was made


def test_report_redraws_missing_figures_for_a_run_of_another_model(tmp_path):
    """A run folder with weights but no figures (as an interrupted run leaves it), for a ResNet."""
    config = recipe_config("default", model="resnet20", test_limit=50)
    run_path = tmp_path / "resnet-run"
    run_path.mkdir()
    (run_path / "config.json").write_text(json.dumps(config.to_dict()))
    torch.manual_seed(0)
    save_weights(run_path / "model.safetensors", get_model("resnet20", in_channels=1, input_size=28).state_dict(),
                 {"model": "resnet20"})
    assert main(["report", str(run_path), "--samples", "1"]) == 0
    alts = re.findall(r'alt="([^"]+)"', (run_path / "report.html").read_text())
    assert alts[:3] == ["confusion matrix", "mistakes", "kernels of conv1"]  # no metrics: no curves
    assert conv_layer(Run.open(run_path).build_model())[0] == "conv1"


def test_conv_layer_lookup_names_the_choices():
    with pytest.raises(ConfigError, match="layer 'x': no such layer; its conv layers: conv1, conv2"):
        conv_layer(get_model("simple-cnn"), "x")


def test_show_works_for_a_run_of_the_scratch_engine(tmp_path):
    config = recipe_config("default", engine="scratch", epochs=1, train_limit=200, test_limit=50)
    trainer = Trainer(config, name="scratch", runs_dir=tmp_path, progress=False)
    initial = trainer.engine.weights()["conv1.weight"].clone()
    run_dir = trainer.fit().run_dir
    trained = trainer.engine.weights()  # the NumPy engine's own arrays, not what was written to the run folder
    assert not torch.allclose(trained["conv1.weight"], initial, atol=1e-3)  # training moved conv1
    model = Run.open(run_dir).build_model()
    x = trainer.test_data.normalize(trainer.test_data.images[:1])  # a real digit: the maps depend on every weight
    maps, _ = feature_maps(model, x)
    assert [n for n, _ in maps] == ["conv1", "pool1", "conv2", "pool2"]
    torch.testing.assert_close(maps[0][1], F.conv2d(x, trained["conv1.weight"], trained["conv1.bias"])[0],
                               atol=1e-5, rtol=1e-5)
    for kind in ("filters", "features"):
        argv = ["show", kind, str(run_dir), "--out", str(tmp_path / f"{kind}.png")]
        assert main(argv + (["--index", "0"] if kind == "features" else [])) == 0
