"""Every registered model, through the registry only: small inputs, any class count, gradients everywhere."""

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.models import get_model, list_models, model_info
from cnnlab.tasks import TASKS

ALL_MODELS = list_models()


def output_shape(name: str, n: int, classes: int, side_h: int, side_w: int) -> tuple:
    """What the model's task says its output is: a classifier's score per class, a segmentation model's at every
    pixel, ..."""
    return TASKS[model_info(name).task].output_shape(n, classes, side_h, side_w)


def test_the_zoo_is_complete():
    expected = {"simple-cnn", "deep-cnn", "mlp", "lenet5", "alexnet", "alexnet-2012", "googlenet",
                *(f"vgg-{c}" for c in ("a", "a-lrn", "b", "c", "d", "e")),
                *(f"vgg-{c}-bn" for c in ("a", "b", "c", "d", "e")),
                "plain18", "plain34", *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
                *(f"{kind}{d}" for kind in ("resnet", "plain") for d in (20, 32, 44, 56, 110))}
    assert expected <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward(name):
    """Forward a batch of two 1x16x16 images with 7 classes; finite logits; the loss reaches every parameter.
    16x16 keeps ResNet-152 cheap on 2 cores; the 28x28 and 32x32 shapes are checked on the meta device below."""
    torch.manual_seed(0)
    model = get_model(name, num_classes=7, in_channels=1, input_size=16)
    x = torch.randn(2, 1, 16, 16)
    logits = model(x)
    assert logits.shape == output_shape(name, 2, 7, 16, 16)
    assert torch.isfinite(logits).all()
    target = torch.tensor([0, 6]).view(2, *[1] * (logits.dim() - 2)).expand(2, *logits.shape[2:])
    torch.nn.functional.cross_entropy(logits, target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_and_runs_in_float64(name):
    """Built while torch's default dtype is float64, every parameter and buffer is float64 (the FCN's bilinear
    kernels too) and the forward pass computes in float64 (no float32 constant drags it down)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = get_model(name, num_classes=7, in_channels=1, input_size=16).eval()
    finally:
        torch.set_default_dtype(default)
    assert {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()} == {torch.float64}
    with torch.no_grad():
        scores = model(torch.randn(2, 1, 16, 16, dtype=torch.float64))
    assert scores.dtype == torch.float64 and scores.shape == output_shape(name, 2, 7, 16, 16)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 32, 32)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL_MODELS)
def test_small_input_shapes(name, shape):
    """Shapes only, on the meta device (no compute): every model adapts to the three small inputs."""
    with torch.device("meta"):
        model = get_model(name, num_classes=10, in_channels=shape[0], input_size=shape[-1]).eval()
        assert model(torch.empty(2, *shape)).shape == output_shape(name, 2, 10, *shape[1:])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_native_input_shape(name):
    entry = model_info(name)
    with torch.device("meta"):
        model = get_model(name, num_classes=entry.num_classes, in_channels=entry.input_size[0]).eval()
        assert model(torch.empty(1, *entry.input_size)).shape == output_shape(name, 1, entry.num_classes,
                                                                              *entry.input_size[1:])


@pytest.mark.parametrize("alias,name", [("vgg16", "vgg-d"), ("VGG11_bn", "vgg-a-bn"), ("vgg19-bn", "vgg-e-bn"),
                                        ("resnet-34", "resnet34"), ("plain-20", "plain20"), ("lenet-5", "lenet5"),
                                        ("inception-v1", "googlenet")])
def test_aliases(alias, name):
    assert model_info(alias).name == name


def test_unknown_model_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean"):
        get_model("resnet35")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'widht'"):
        get_model("vgg16", widht=3)
    with pytest.raises(ConfigError, match="activation must be one of"):
        get_model("vgg16", activation="gelu")


def test_prelu_option_learns_a_slope_per_channel():
    model = get_model("resnet20", num_classes=10, in_channels=1, input_size=28, activation="prelu")
    prelus = [m for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 1 + 2 * 9  # one after the stem, two in each of the 9 blocks
    assert prelus[0].weight.shape == (16,) and torch.all(prelus[0].weight == 0.25)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert all(p.weight.grad.abs().sum() > 0 for p in prelus)


@pytest.mark.parametrize("name", ["alexnet", "alexnet-2012", "vgg-a", "googlenet", "resnet50", "resnet20"])
def test_prelu_option_in_every_family(name):
    with torch.device("meta"):
        relu, prelu = get_model(name, 10, 1, 28), get_model(name, 10, 1, 28, activation="prelu")
        assert prelu(torch.empty(2, 1, 28, 28)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.ReLU) for m in prelu.modules())
    slopes = sum(m.weight.numel() for m in prelu.modules() if isinstance(m, torch.nn.PReLU))
    assert slopes > 0
    assert sum(p.numel() for p in prelu.parameters()) == sum(p.numel() for p in relu.parameters()) + slopes
