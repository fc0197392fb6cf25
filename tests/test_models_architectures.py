"""Architecture details the papers specify: LeNet-5's connection table, AlexNet's groups and LRN, VGG's table,
GoogLeNet's Table 1 and auxiliary heads."""

import pytest
import torch

from cnnlab.models import get_model
from cnnlab.models.googlenet import TABLE_1, GoogLeNet, GoogLeNetOutputs
from cnnlab.models.lenet import C3_TABLE, PartialConv2d
from cnnlab.models.vgg import CONFIGS


def test_lenet_c3_connects_as_table_1():
    """Section II.B: maps 0-5 see 3 contiguous S2 maps, 6-11 see 4 contiguous, 12-14 see 4 non-contiguous
    ({0,1,3,4}, {1,2,4,5}, {0,2,3,5}), 15 sees all 6."""
    expected = [{(j + k) % 6 for k in range(3)} for j in range(6)]
    expected += [{(j + k) % 6 for k in range(4)} for j in range(6)]
    expected += [{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}, set(range(6))]
    c3 = PartialConv2d(C3_TABLE, 5)
    kernel = torch.cat([c3.weight, c3.weight.new_zeros(1)])[c3.index]
    connected = kernel.abs().sum((2, 3)) > 0  # (16 outputs, 6 inputs)
    assert [set(row.nonzero().flatten().tolist()) for row in connected] == expected
    assert sum(p.numel() for p in c3.parameters()) == 1_516


def test_lenet_c3_computes_the_masked_convolution():
    torch.manual_seed(0)
    c3 = PartialConv2d(C3_TABLE, 5)
    x = torch.randn(2, 6, 14, 14)
    kernel = torch.cat([c3.weight, c3.weight.new_zeros(1)])[c3.index]
    assert torch.allclose(c3(x), torch.nn.functional.conv2d(x, kernel, c3.bias))
    # An output map does not move when an input map it is not connected to changes.
    y = c3(x)
    x[:, 3] += 1.0  # map 0 sees inputs 0, 1, 2 only
    assert torch.equal(c3(x)[:, 0], y[:, 0]) and not torch.equal(c3(x)[:, 15], y[:, 15])


def test_lenet_pads_28x28_to_the_papers_32x32_field():
    model = get_model("lenet5", input_size=28)
    assert model.c1.padding == (2, 2)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in get_model("lenet5").parameters())


def test_alexnet_2012_has_the_papers_groups_and_lrn():
    model = get_model("alexnet-2012", 1000, 3)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.features) == 2
    with torch.device("meta"):
        assert model.to("meta").features(torch.empty(1, 3, 227, 227)).shape == (1, 256, 6, 6)


def test_local_response_norm_uses_the_papers_alpha():
    """PyTorch divides alpha by the window: b = a / (k + alpha/n * sum a^2)^beta; the paper has alpha * sum."""
    lrn = get_model("alexnet-2012", 1000, 3).features[2]
    x = torch.zeros(1, 5, 1, 1)
    x[0, 2] = 10.0
    expected = 10.0 / (2 + 1e-4 * 100) ** 0.75  # the paper's formula with k=2, alpha=1e-4, beta=0.75
    assert lrn(x)[0, 2].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("config", CONFIGS)
def test_vgg_features_follow_the_table(config):
    model = get_model(f"vgg-{config.lower()}", 1000, 3)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    cells = [c for c in CONFIGS[config] if c.startswith("conv")]
    assert [f"conv{c.kernel_size[0]}-{c.out_channels}" for c in convs] == cells
    assert all(c.padding[0] == c.kernel_size[0] // 2 for c in convs)  # size-preserving, 1x1 included
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == 5


def test_vgg_small_inputs_use_a_small_classifier():
    model = get_model("vgg16", 10, 1, input_size=28)
    assert [m.in_features for m in model.classifier if isinstance(m, torch.nn.Linear)] == [512, 512, 512]
    assert all(m.ceil_mode for m in model.features if isinstance(m, torch.nn.MaxPool2d))


def test_googlenet_modules_follow_table_1():
    model = get_model("googlenet", 1000, 3)
    for row in TABLE_1:
        if isinstance(row, str):
            continue
        name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = row
        module = getattr(model, name)
        assert module.branch1.conv.out_channels == ch1x1
        assert [module.branch2[0].conv.out_channels, module.branch2[1].conv.out_channels] == [ch3x3red, ch3x3]
        assert [module.branch3[0].conv.out_channels, module.branch3[1].conv.out_channels] == [ch5x5red, ch5x5]
        assert module.branch4[1].conv.out_channels == pool_proj
    assert model.fc.in_features == 1024


def test_googlenet_five_by_five_option_gives_the_papers_kernel():
    model = get_model("googlenet", 1000, 3, five_by_five=True)
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert get_model("googlenet", 1000, 3).inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's


def test_googlenet_aux_heads_train_with_the_papers_weighting():
    torch.manual_seed(0)
    model = get_model("googlenet", 5, 1, input_size=32, aux_heads=True)
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([1, 4])
    outputs = model(x)
    assert isinstance(outputs, GoogLeNetOutputs) and all(o.shape == (2, 5) for o in outputs)
    ce = torch.nn.functional.cross_entropy
    expected = ce(outputs.logits, y) + 0.3 * (ce(outputs.aux1, y) + ce(outputs.aux2, y))
    assert GoogLeNet.loss(outputs, y).item() == pytest.approx(expected.item())
    GoogLeNet.loss(outputs, y).backward()
    assert model.aux1.fc2.weight.grad.abs().sum() > 0
    model.eval()
    assert isinstance(model(x), torch.Tensor)  # the heads only train
