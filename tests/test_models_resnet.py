"""Shortcut options A/B/C and plain nets behave as Section 3.3 of the ResNet paper says."""

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.models import get_model
from cnnlab.models.resnet import BasicBlock, ZeroPadShortcut


def projections(model) -> list[torch.nn.Conv2d]:
    return [m for name, m in model.named_modules() if ".downsample." in f"{name}." and isinstance(m, torch.nn.Conv2d)]


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_option_a_has_no_projection_parameters():
    a, plain = get_model("resnet34", 1000, 3, shortcut="A"), get_model("plain34", 1000, 3)
    assert projections(a) == []
    assert count(a) == count(plain)  # shortcuts "free": the paper's plain/residual comparison is like for like
    assert sum(isinstance(m, ZeroPadShortcut) for m in a.modules()) == 3  # one per stage transition


def test_option_b_projects_only_where_the_shape_changes():
    b = get_model("resnet34", 1000, 3, shortcut="B")
    assert [c.stride for c in projections(b)] == [(2, 2)] * 3
    assert [c.kernel_size for c in projections(b)] == [(1, 1)] * 3


def test_option_c_projects_on_every_block():
    c = get_model("resnet34", 1000, 3, shortcut="C")
    assert len(projections(c)) == 3 + 4 + 6 + 3  # one per block
    assert count(c) > count(get_model("resnet34", 1000, 3, shortcut="B"))


def test_zero_pad_shortcut_is_subsampled_identity_plus_zero_channels():
    x = torch.randn(2, 16, 7, 7)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


@pytest.mark.parametrize("shortcut,expected", [("A", "identity"), ("B", "identity"), ("C", "projection"),
                                               (None, "zero")])
def test_a_block_with_zero_weights_passes_its_input_through_the_shortcut(shortcut, expected):
    """With both convolutions zeroed (and BN the identity), a residual block outputs relu(shortcut(x)):
    the input itself for A/B, a projection for C, and nothing at all in a plain net."""
    torch.manual_seed(0)
    block = BasicBlock(8, 8, stride=1, shortcut=shortcut, act="relu").eval()
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
    x = torch.rand(2, 8, 5, 5)  # non-negative, so relu(x) == x
    y = block(x)
    if expected == "identity":
        assert torch.equal(y, x)
    elif expected == "projection":
        assert torch.allclose(y, torch.relu(block.downsample(x)))
    else:
        assert torch.count_nonzero(y) == 0


def test_plain_nets_refuse_a_shortcut_and_basic_blocks_refuse_stride_in_1x1():
    with pytest.raises(ConfigError, match="plain net"):
        get_model("plain34", shortcut="B")
    with pytest.raises(ConfigError, match="shortcut must be one of"):
        get_model("resnet20", shortcut="D")
    with pytest.raises(ConfigError, match="bottleneck"):
        get_model("resnet18", stride_in_1x1=True)


def test_cifar_nets_default_to_option_a_and_imagenet_nets_to_b():
    assert projections(get_model("resnet20")) == []
    assert len(projections(get_model("resnet18", 1000, 3))) == 3


def test_small_inputs_swap_the_imagenet_stem():
    large, small = get_model("resnet18", 10, 3, input_size=224), get_model("resnet18", 10, 3, input_size=32)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, torch.nn.MaxPool2d)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and isinstance(small.maxpool, torch.nn.Identity)
    with torch.device("meta"):
        features = torch.nn.Sequential(*list(get_model("resnet18", 10, 3, input_size=32).children())[:-2])
        assert features(torch.empty(1, 3, 32, 32)).shape == (1, 512, 4, 4)  # 32 -> 32, 16, 8, 4 over the stages
