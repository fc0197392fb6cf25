"""Receptive fields from the layers' parameters, checked against a measurement: the input pixels a unit's gradient
reaches, in a copy of the model whose weights are all positive and whose max-poolings are average-poolings (so
that no path is cut), for every layer of a model of each family."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnlab.models import get_model
from cnnlab.models.receptive import Field, field_box, receptive_fields

FAMILIES = [("simple-cnn", (1, 28, 28), {}), ("lenet5", (1, 32, 32), {}), ("vgg-a", (1, 32, 32), {}),
            ("alexnet", (1, 64, 64), {}), ("googlenet", (1, 32, 32), {}), ("resnet20", (1, 32, 32), {}),
            ("resnet18", (1, 32, 32), {}), ("fcn-8s", (1, 64, 84), {}), ("unet", (1, 64, 84), {"widths": [4, 8, 16]})]
MEASURED = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)


def measured_boxes(model: nn.Module, shape, layers: list[str]) -> dict:
    """{layer: (box of input pixels the centre unit of its output depends on, that unit's position)}."""
    probe = copy.deepcopy(model).eval()
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode))
    with torch.no_grad():
        for parameter in probe.parameters():
            parameter.fill_(0.01)
        for norm in probe.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0)
    x = (torch.rand(1, *shape) + 0.5).requires_grad_(True)
    outputs = {}
    modules = dict(probe.named_modules())
    def keep(layer):
        def hook(module, inputs, output):  # returns None: a hook's return value would replace the output
            outputs[layer] = output  # the last call, as receptive_fields keeps
        return hook

    handles = [modules[layer].register_forward_hook(keep(layer)) for layer in layers]
    probe(x)
    for handle in handles:
        handle.remove()
    boxes = {}
    for layer, out in outputs.items():
        y, x_ = (out.shape[2] // 2, out.shape[3] // 2) if out.ndim == 4 else (0, 0)
        unit = (out[0, :, y, x_] if out.ndim == 4 else out[0]).sum()  # every channel: the layer's field
        (grad,) = torch.autograd.grad(unit, x, retain_graph=True)
        rows, cols = torch.nonzero(grad[0].abs().sum(0) > 0, as_tuple=True)
        boxes[layer] = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1), (y, x_)
    return boxes


@pytest.mark.parametrize("name, shape, options", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_fields_match_the_measured_ones(name, shape, options):
    classes = 11 if name in ("fcn-8s", "unet") else 10
    model = get_model(name, num_classes=classes, in_channels=shape[0], input_size=shape[-1], **options).eval()
    fields = receptive_fields(model, shape)
    modules = dict(model.named_modules())
    checked = [layer for layer in fields if isinstance(modules[layer], MEASURED)]
    assert len(checked) >= 4
    boxes = measured_boxes(model, shape, checked)
    # Exact for convolutions and poolings. After a transposed convolution neighbouring outputs see alternate
    # sets of inputs, which one (start, jump) cannot follow: there, each edge holds to within 2 strides.
    upsampled = False
    for layer in checked:
        upsampled |= isinstance(modules[layer], nn.ConvTranspose2d)
        box, (y, x) = boxes[layer]
        predicted = field_box(fields[layer], y, x, shape[1], shape[2])
        if upsampled:
            assert max(abs(a - b) for a, b in zip(box, predicted)) <= 4, (layer, box, predicted)
        else:
            assert box == predicted, (layer, fields[layer], box, predicted)


def test_the_rule_by_hand():
    # LeNet-5's C1 (5x5), S2 (2x2 /2), C3 (5x5), S4 (2x2 /2): 5, 6, 14, 16 pixels; jumps 1, 2, 2, 4
    fields = receptive_fields(get_model("lenet5", input_size=32), (1, 32, 32))
    assert [fields[n].describe() for n in ("c1", "s2", "c3", "s4")] == ["5 /1", "6 /2", "14 /2", "16 /4"]
    assert fields["f6"].whole and fields["f6"].describe() == "all"
    assert field_box(Field((5, 5), (1, 1), (2.5, 2.5)), 0, 0, 28, 28) == (0, 5, 0, 5)
    assert field_box(Field((5, 5), (1, 1), (0.5, 0.5)), 0, 0, 28, 28) == (0, 3, 0, 3)  # 2 pixels of padding


def test_a_wrong_rule_is_caught():
    """The measurement can fail: a field two pixels too small does not match it."""
    model = get_model("simple-cnn").eval()
    box, (y, x) = measured_boxes(model, (1, 28, 28), ["conv2"])["conv2"]
    right = receptive_fields(model, (1, 28, 28))["conv2"]
    wrong = Field((right.size[0] - 2, right.size[1] - 2), right.jump, right.start)
    assert field_box(right, y, x, 28, 28) == box and field_box(wrong, y, x, 28, 28) != box
