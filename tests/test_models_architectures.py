"""Architecture details the papers specify: LeNet-5's connection table, AlexNet's groups and LRN, VGG's table,
GoogLeNet's Table 1 and auxiliary heads; and cnnlab's own small nets' options and tables."""

import json

import pytest
import torch

from cnnlab.models import get_model
from cnnlab.models.googlenet import TABLE_1, GoogLeNet, GoogLeNetOutputs
from cnnlab.models.lenet import C3_TABLE, PartialConv2d
from cnnlab.models.vgg import CONFIGS

from conftest import MANIFEST


def impulse_kernels(layer: torch.nn.Module, in_channels: int, size: int) -> torch.Tensor:
    """The (out, in, size, size) kernel a convolution layer applies, measured from outside: its response to a
    unit impulse in each input map, minus its response to zeros (the bias), flipped (conv2d correlates)."""
    with torch.no_grad():
        impulses = torch.zeros(in_channels, in_channels, 2 * size - 1, 2 * size - 1)
        impulses[range(in_channels), range(in_channels), size - 1, size - 1] = 1
        responses = layer(impulses) - layer(torch.zeros_like(impulses[:1]))
    return responses.flip(2, 3).transpose(0, 1)


def test_lenet_c3_connects_as_table_1():
    """Section II.B: maps 0-5 see 3 contiguous S2 maps, 6-11 see 4 contiguous, 12-14 see 4 non-contiguous
    ({0,1,3,4}, {1,2,4,5}, {0,2,3,5}), 15 sees all 6."""
    expected = [{(j + k) % 6 for k in range(3)} for j in range(6)]
    expected += [{(j + k) % 6 for k in range(4)} for j in range(6)]
    expected += [{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}, set(range(6))]
    torch.manual_seed(0)
    c3 = PartialConv2d(C3_TABLE, 5)
    connected = impulse_kernels(c3, 6, 5).abs().sum((2, 3)) > 0  # (16 outputs, 6 inputs)
    assert [set(row.nonzero().flatten().tolist()) for row in connected] == expected
    assert sum(p.numel() for p in c3.parameters()) == 60 * 25 + 16  # the paper's 1,516: 60 connections, 16 biases


def test_lenet_c3_computes_the_masked_convolution():
    """The layer is a convolution: what it does to random maps is what a dense conv2d does with the kernel
    measured from its impulse responses (an independent reference, not the layer's own masking code)."""
    torch.manual_seed(0)
    c3 = PartialConv2d(C3_TABLE, 5)
    x = torch.randn(2, 6, 14, 14)
    kernel = impulse_kernels(c3, 6, 5)
    torch.testing.assert_close(c3(x), torch.nn.functional.conv2d(x, kernel, c3.bias), atol=1e-5, rtol=1e-5)
    # An output map does not move when an input map it is not connected to changes.
    y = c3(x)
    x[:, 3] += 1.0  # map 0 sees inputs 0, 1, 2 only
    assert torch.equal(c3(x)[:, 0], y[:, 0]) and not torch.equal(c3(x)[:, 15], y[:, 15])


def test_lenet_pads_28x28_to_the_papers_32x32_field():
    model = get_model("lenet5", input_size=28)
    assert model.c1.padding == (2, 2)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in get_model("lenet5").parameters())


def test_alexnet_2012_has_the_papers_groups_and_lrn():
    model = meta("alexnet-2012", 1000, 3)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.features) == 2
    assert model.features(torch.empty(1, 3, 227, 227, device="meta")).shape == (1, 256, 6, 6)


def test_local_response_norm_uses_the_papers_alpha():
    """PyTorch divides alpha by the window: b = a / (k + alpha/n * sum a^2)^beta; the paper has alpha * sum."""
    lrn = get_model("alexnet-2012", 10, 3, input_size=32).features[2]
    x = torch.zeros(1, 5, 1, 1)
    x[0, 2] = 10.0
    expected = 10.0 / (2 + 1e-4 * 100) ** 0.75  # the paper's formula with k=2, alpha=1e-4, beta=0.75
    assert lrn(x)[0, 2].item() == pytest.approx(expected, rel=1e-6)


def meta(name: str, *args, **options) -> torch.nn.Module:
    """Built on the meta device: the structure without 138 M random numbers."""
    with torch.device("meta"):
        return get_model(name, *args, **options)


@pytest.mark.parametrize("config", CONFIGS)
def test_vgg_features_follow_the_table(config):
    model = meta(f"vgg-{config.lower()}", 1000, 3)
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
    model = meta("googlenet", 1000, 3)
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
    paper, torchvision = meta("googlenet", 1000, 3, five_by_five=True), meta("googlenet", 1000, 3)
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert torchvision.inception3a.branch3[1].conv.kernel_size == (3, 3)
    # From torchvision's count (6,624,904, the reference manifest) and the paper's table: a 5x5 kernel has 25 - 9
    # = 16 more weights than a 3x3 per (reduce channel, output channel) pair, and the branch has no bias (batch
    # norm follows). Not the model's own sum of parameters.
    extra = sum(16 * row[4] * row[5] for row in TABLE_1 if not isinstance(row, str))
    torchvision_count = json.loads(MANIFEST.read_text())["models"]["googlenet"]["parameters"]
    assert sum(p.numel() for p in paper.parameters()) == torchvision_count + extra == 7_005_832


def test_googlenet_aux_heads_train_with_the_papers_weighting():
    torch.manual_seed(0)
    model = get_model("googlenet", 5, 1, input_size=16, aux_heads=True)
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([1, 4])
    outputs = model(x)
    assert isinstance(outputs, GoogLeNetOutputs) and all(o.shape == (2, 5) for o in outputs)
    ce = torch.nn.functional.cross_entropy
    expected = ce(outputs.logits, y) + 0.3 * (ce(outputs.aux1, y) + ce(outputs.aux2, y))
    assert GoogLeNet.loss(outputs, y).item() == pytest.approx(expected.item())
    GoogLeNet.loss(outputs, y).backward()
    assert model.aux1.fc2.weight.grad.abs().sum() > 0
    model.eval()
    assert isinstance(model(x), torch.Tensor)  # the heads only train


def test_simple_cnn_pool_first_is_the_same_function_without_batch_norm_and_quarters_its_work():
    """ReLU commutes with max-pooling, so without batch norm the pool-first order computes the same function from
    the same weights; with batch norm it normalizes the pooled map (the fast recipe's order)."""
    torch.manual_seed(0)
    default, pool_first = get_model("simple-cnn"), get_model("simple-cnn", pool_first=True)
    pool_first.load_state_dict(default.state_dict())  # the same parameters under the same names
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(pool_first(x), default(x), atol=1e-6)
    normed = get_model("simple-cnn", batch_norm=True, pool_first=True)
    assert [name for name, _ in normed.named_children()][:8] == ["conv1", "pool1", "bn1", "relu1",
                                                                 "conv2", "pool2", "bn2", "relu2"]
    sizes = []
    normed.bn1.register_forward_hook(lambda module, args, out: sizes.append(out.shape[-1]) and None)
    normed(x)
    assert sizes == [12]  # the 24x24 convolution output, pooled before it is normalized


def test_simple_cnn_strided_first_replaces_the_first_pooling_by_a_stride():
    model = get_model("simple-cnn", batch_norm=True, pool_first=True, strided_first=True)
    assert [name for name, _ in model.named_children()][:7] == ["conv1", "bn1", "relu1", "conv2", "pool2", "bn2",
                                                                "relu2"]
    assert model.conv1.stride == (2, 2) and model.conv2.stride == (1, 1)
    assert model.fc1.in_features == 32 * 4 * 4  # 28 -> 12 (5x5, stride 2) -> 8 -> 4, as with the pooling
    for side in (16, 28, 32):  # the first layer's output side follows the stride's arithmetic at every size
        assert get_model("simple-cnn", input_size=side, strided_first=True)(torch.randn(1, 1, side, side)).shape == (1, 10)


def test_deep_cnn_follows_its_table():
    model = get_model("deep-cnn", widths=(24, 48, 96))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (24, 3, 1, 1), (24, 3, 1, 1), (24, 5, 2, 2), (48, 3, 1, 1), (48, 3, 1, 1), (48, 5, 2, 2), (96, 4, 1, 0)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 7
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.4] * 3
    # no dropout: no dropout layers (the explorer would show three that do nothing), the same parameters
    plain = get_model("deep-cnn", widths=(24, 48, 96), dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    assert plain.state_dict().keys() == model.state_dict().keys()
    assert model.fc.in_features == 96 * 4 * 4  # 28 -> 14 -> 7 -> 4 (the 4x4 convolution without padding)
    assert get_model("deep-cnn", in_channels=3, input_size=32).fc.in_features == 128 * 5 * 5
    with pytest.raises(Exception, match="too small for deep-cnn"):
        get_model("deep-cnn", input_size=8)
