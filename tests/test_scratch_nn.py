"""Layers, state_dict interchange with the PyTorch twin, optimizers step for step, and clear errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn as tnn

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.models import get_model
from cnnlab.scratch import ShapeError, Tensor, nn, optim, output_size
from cnnlab.scratch import functional as F
from cnnlab.scratch.gradcheck import relative_error
from cnnlab.scratch.twin import twin


def _every_layer_torch() -> tnn.Sequential:
    """One of each layer the engine has, in a model that runs on 1x12x12 inputs (no conv bias before batch norm:
    its gradient is exactly zero, so only rounding noise would be compared)."""
    return tnn.Sequential(OrderedDict([
        ("conv", tnn.Conv2d(1, 4, 3, padding=1, bias=False)), ("bn", tnn.BatchNorm2d(4)), ("prelu", tnn.PReLU(4)),
        ("lrn", tnn.LocalResponseNorm(3)), ("pool", tnn.MaxPool2d(2)),
        ("grouped", tnn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)), ("leaky", tnn.LeakyReLU(0.1)),
        ("up", tnn.ConvTranspose2d(4, 2, 2, stride=2)), ("tanh", tnn.Tanh()), ("avg", tnn.AvgPool2d(3, 2, 1)),
        ("flatten", tnn.Flatten()), ("drop", tnn.Dropout(0.5)), ("fc", tnn.Linear(72, 10)), ("sigmoid", tnn.Sigmoid()),
    ]))


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)


@pytest.mark.parametrize("options", [{}, {"batch_norm": True, "dropout": 0.5}], ids=["default", "bn-dropout"])
def test_torch_weights_give_the_same_logits_in_scratch(images, options):
    torch.manual_seed(0)
    model = get_model("simple-cnn", **options).eval()
    scratch_model = twin(model)
    assert list(scratch_model.state_dict()) == list(model.state_dict())
    expected = model(torch.from_numpy(images)).detach().numpy()
    assert relative_error(scratch_model(Tensor(images)).data, expected) <= 1e-5


def test_scratch_weights_load_into_torch_and_give_the_same_logits(images):
    torch.manual_seed(0)
    model = get_model("simple-cnn").eval()
    scratch_model = twin(model)
    for p in scratch_model.parameters():  # new weights, so agreement means they really travelled
        p.data = np.random.default_rng(1).normal(0, 0.1, size=p.shape).astype(np.float32)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in scratch_model.state_dict().items()}, strict=True)
    expected = model(torch.from_numpy(images)).detach().numpy()
    assert relative_error(scratch_model(Tensor(images)).data, expected) <= 1e-5


def test_every_layer_matches_torch_in_float64_forward_backward_and_running_stats():
    torch.manual_seed(0)
    model = _every_layer_torch().double().train()
    model.drop.p = 0.0  # dropout's random mask is the one thing the two engines cannot share
    scratch_model = twin(model).to(np.float64)
    assert {k: v.shape for k, v in scratch_model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(3, 1, 12, 12))
    out, expected = scratch_model(Tensor(x, dtype=np.float64)), model(torch.from_numpy(x))
    assert relative_error(out.data, expected.detach().numpy()) <= 1e-8
    out.sum().backward()
    expected.sum().backward()
    grads = dict(scratch_model.named_parameters())
    for name, p in model.named_parameters():
        assert relative_error(grads[name].grad, p.grad.numpy()) <= 1e-8, name
    for name, value in model.state_dict().items():
        assert relative_error(scratch_model.state_dict()[name], value.numpy()) <= 1e-8, name


@pytest.mark.parametrize("name, settings", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, weight_decay=1e-2)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
], ids=["sgd", "sgd-momentum-wd", "nesterov", "adam", "adamw"])
def test_optimizers_follow_pytorch_step_for_step(name, settings):
    """The same settings given to both: every default left out (betas, eps, dampening, AdamW's decay) is each
    library's own, so a wrong default in the NumPy optimizers shows."""
    torch.manual_seed(0)
    model = tnn.Sequential(tnn.Conv2d(1, 3, 3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(12, 4)).double()
    scratch_model = twin(model).to(np.float64)
    theirs = getattr(torch.optim, name)(model.parameters(), **settings)
    ours = getattr(optim, name)(scratch_model.parameters(), **settings)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.normal(size=(5, 1, 4, 4)), rng.integers(0, 4, size=5)
        ours.zero_grad()
        F.cross_entropy(scratch_model(Tensor(x, dtype=np.float64)), y).backward()
        ours.step()
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        theirs.step()
    for name, p in model.named_parameters():
        assert relative_error(dict(scratch_model.named_parameters())[name].data, p.detach().numpy()) <= 1e-10


def test_learning_rate_is_set_through_param_groups():
    w = Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    opt.param_groups[0]["lr"] = 0.5
    w.grad = np.ones(2, dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(w.data, [0.5, 0.5])


@pytest.mark.parametrize("call, message", [
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 4, 4))), Tensor(np.zeros((1, 1, 5, 5)))),
     "kernel 5x5 is larger than the padded input 4x4"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 4, 4))), Tensor(np.zeros((1, 1, 3, 3))), dilation=2),
     "kernel 3x3 (dilated to 5x5) is larger than the padded input 4x4"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 3, 8, 8))), Tensor(np.zeros((4, 1, 3, 3)))),
     "input has 3 channels but the weight (4, 1, 3, 3) with groups=1 expects 1"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 4, 8, 8))), Tensor(np.zeros((6, 2, 3, 3))), groups=4),
     "groups=4 must be a positive int dividing both the input channels (8) and the output channels (6)"),
    (lambda: F.conv2d(Tensor(np.zeros((8, 8))), Tensor(np.zeros((1, 1, 3, 3)))), "input must be (N, C, H, W)"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 8, 8))), Tensor(np.zeros((1, 1, 3, 3))), stride=0), "must be >= 1"),
    (lambda: F.conv_transpose2d(Tensor(np.zeros((1, 2, 4, 4))), Tensor(np.zeros((2, 1, 3, 3))), stride=2,
                                output_padding=2), "output_padding (2, 2) must be smaller than stride"),
    (lambda: F.max_pool2d(Tensor(np.zeros((1, 1, 2, 2))), 3), "kernel 3x3 is larger than the padded input 2x2"),
    (lambda: F.max_pool2d(Tensor(np.zeros((1, 1, 8, 8))), 2, padding=2), "at most half the kernel"),
    (lambda: F.linear(Tensor(np.zeros((2, 5))), Tensor(np.zeros((3, 4)))), "does not fit weight (3, 4)"),
    (lambda: F.cross_entropy(Tensor(np.zeros((2, 3))), [0, 3]), "class indices in [0, 3)"),
    (lambda: Tensor(np.zeros((2, 3))).reshape(4, 2), "cannot reshape a tensor of shape (2, 3)"),
    (lambda: Tensor(np.zeros((2, 3))) @ Tensor(np.zeros((2, 3))), "inner sizes 3 and 2 differ"),
    (lambda: nn.BatchNorm2d(4)(Tensor(np.zeros((2, 3, 5, 5)))), "input has 3 channels but the running statistics have 4"),
], ids=["kernel-too-large", "dilated-kernel-too-large", "channel-mismatch", "groups-not-dividing", "not-4d",
        "zero-stride", "output-padding", "pool-too-large", "pool-padding", "linear", "labels", "reshape", "matmul",
        "batch-norm"])
def test_bad_shapes_give_clear_errors(call, message):
    with pytest.raises(ShapeError) as info:
        call()
    assert message in str(info.value)
    assert isinstance(info.value, CnnlabError)


def test_output_size_formula_and_non_integer_sizes():
    assert output_size(28, 5) == 24 and output_size(7, 3, stride=2, padding=1) == 4
    assert output_size(28, 5, stride=2) == 12  # what conv2d computes: PyTorch's floor, the last row dropped
    with pytest.raises(ShapeError, match=r"non-integer output size: \(28 \+ 2\*0 - 1\*\(5-1\) - 1\)/2 \+ 1 = 12.5"):
        output_size(28, 5, stride=2, exact=True)
    assert output_size(27, 5, stride=2, exact=True) == 12
    x = Tensor(np.zeros((1, 1, 28, 28)))
    assert F.conv2d(x, Tensor(np.zeros((1, 1, 5, 5))), stride=2).shape == (1, 1, 12, 12)


def test_load_state_dict_names_what_does_not_fit():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match=r"missing \['0.bias'\], unexpected \['0.b'\]"):
        model.load_state_dict({"0.weight": np.zeros((2, 3)), "0.b": np.zeros(2)})
    with pytest.raises(CheckpointError, match=r"0.weight has shape \(3, 3\), the model expects \(2, 3\)"):
        model.load_state_dict({"0.weight": np.zeros((3, 3)), "0.bias": np.zeros(2)})


def test_twin_refuses_layers_the_engine_lacks():
    with pytest.raises(ConfigError, match="no GELU layer"):
        twin(tnn.Sequential(tnn.GELU()))
    with pytest.raises(ConfigError, match="supports ceil_mode=False only, MaxPool2d has True"):
        twin(tnn.Sequential(tnn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(ConfigError, match="supports count_include_pad=True only"):
        twin(tnn.Sequential(tnn.AvgPool2d(3, padding=1, count_include_pad=False)))
