"""Every operation of cnnlab.scratch: gradient check (float64 centered differences) and parity with PyTorch,
forward and every gradient (float64 relative error <= 1e-8, float32 <= 1e-4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from cnnlab.scratch import Tensor, gradcheck
from cnnlab.scratch import functional as F
from cnnlab.scratch.gradcheck import relative_error


@dataclass(frozen=True)
class Case:
    id: str
    shapes: tuple[tuple[int, ...], ...]  # one shape per differentiable input
    scratch: Callable
    torch: Callable
    positive: bool = False  # inputs in [0.5, 2]: for log, division, fractional powers


LABELS = np.array([0, 3, 4, 1])
RUNNING_MEAN, RUNNING_VAR = np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0])


def _conv(shape_x, shape_w, bias=True, **kw):
    shapes = (shape_x, shape_w, (shape_w[0],)) if bias else (shape_x, shape_w)
    return Case(f"conv2d-{shape_x}-{shape_w}-{kw}", shapes,
                lambda *t: F.conv2d(*t, **kw), lambda *t: TF.conv2d(*t, **kw))


def _deconv(shape_x, shape_w, groups=1, **kw):
    shapes = (shape_x, shape_w, (shape_w[1] * groups,))
    return Case(f"conv_transpose2d-{shape_x}-{shape_w}-g{groups}-{kw}", shapes,
                lambda *t: F.conv_transpose2d(*t, groups=groups, **kw),
                lambda *t: TF.conv_transpose2d(*t, groups=groups, **kw))


def _pool(name, shape, **kw):
    ours = getattr(F, name)
    if name == "sum_pool2d":  # PyTorch has no sum pooling: it is average pooling times the window area
        k = kw["kernel_size"]
        area = k[0] * k[1] if isinstance(k, tuple) else k * k
        theirs = lambda x: TF.avg_pool2d(x, **kw) * area  # noqa: E731
    else:
        theirs = lambda x: getattr(TF, name)(x, **kw)  # noqa: E731
    return Case(f"{name}-{shape}-{kw}", (shape,), lambda x: ours(x, **kw), theirs)


def _torch_bn(training):
    def run(x, w, b):
        mean, var = torch.tensor(RUNNING_MEAN, dtype=x.dtype), torch.tensor(RUNNING_VAR, dtype=x.dtype)
        return TF.batch_norm(x, mean, var, w, b, training=training)
    return run


def _scratch_bn(training):
    return lambda x, w, b: F.batch_norm(x, RUNNING_MEAN.astype(x.dtype), RUNNING_VAR.astype(x.dtype), w, b, training)


CASES = [
    # the Tensor's own operations
    Case("add-broadcast", ((3, 4), (4,)), lambda a, b: a + b, lambda a, b: a + b),
    Case("sub", ((3, 4), (3, 1)), lambda a, b: a - b, lambda a, b: a - b),
    Case("mul-broadcast", ((2, 3, 4), (3, 1)), lambda a, b: a * b, lambda a, b: a * b),
    Case("div", ((3, 4), (3, 4)), lambda a, b: a / b, lambda a, b: a / b, positive=True),
    Case("rdiv-scalar", ((5,),), lambda a: 2.0 / a, lambda a: 2.0 / a, positive=True),
    Case("pow", ((3, 4),), lambda a: a**1.5, lambda a: a**1.5, positive=True),
    Case("exp", ((3, 4),), lambda a: a.exp(), torch.exp),
    Case("log", ((3, 4),), lambda a: a.log(), torch.log, positive=True),
    Case("neg", ((3, 4),), lambda a: -a, lambda a: -a),
    Case("matmul", ((3, 4), (4, 5)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("matmul-batched", ((2, 3, 4), (4, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("reshape-transpose", ((2, 3, 4),), lambda a: a.reshape(4, 6).transpose(1, 0) * 1.5,
         lambda a: a.reshape(4, 6).permute(1, 0) * 1.5),
    Case("flatten", ((2, 3, 2, 2),), lambda a: a.flatten(1) * 2.0, lambda a: a.flatten(1) * 2.0),
    Case("sum-axis", ((3, 4, 5),), lambda a: a.sum(axis=1), lambda a: a.sum(dim=1)),
    Case("mean", ((3, 4),), lambda a: a.mean(axis=0, keepdims=True), lambda a: a.mean(dim=0, keepdim=True)),
    Case("mean-all", ((3, 4),), lambda a: a.mean(), lambda a: a.mean()),
    Case("max-axis", ((3, 4, 5),), lambda a: a.max(axis=2), lambda a: a.amax(dim=2)),
    # convolutions: strides, paddings, dilations, groups, with and without bias, non-square everything
    _conv((2, 3, 7, 7), (4, 3, 3, 3)),
    _conv((2, 3, 8, 9), (4, 3, 3, 2), stride=2, padding=1),
    _conv((1, 2, 9, 9), (3, 2, 3, 3), padding=2, dilation=2),
    _conv((2, 4, 6, 7), (6, 2, 3, 3), stride=(1, 2), padding=(1, 0), groups=2),
    _conv((1, 3, 5, 5), (3, 1, 3, 3), bias=False, padding=1, groups=3),  # depthwise
    _conv((2, 2, 5, 6), (3, 2, 1, 1)),  # 1x1
    _deconv((2, 3, 4, 4), (3, 2, 3, 3), stride=2, padding=1, output_padding=1),
    _deconv((1, 4, 3, 5), (4, 3, 2, 2), groups=2, stride=(2, 1)),
    _deconv((1, 2, 3, 3), (2, 2, 3, 3), padding=1, dilation=2),
    # pooling
    _pool("max_pool2d", (2, 3, 8, 8), kernel_size=2),
    _pool("max_pool2d", (2, 2, 7, 7), kernel_size=3, stride=2, padding=1),
    _pool("max_pool2d", (1, 2, 6, 7), kernel_size=(2, 3), stride=(1, 2)),
    _pool("max_pool2d", (1, 2, 5, 5), kernel_size=2),  # odd size: the last row and column are dropped
    _pool("avg_pool2d", (2, 3, 8, 8), kernel_size=2),
    _pool("avg_pool2d", (2, 2, 7, 7), kernel_size=3, stride=2, padding=1),
    _pool("sum_pool2d", (2, 2, 6, 6), kernel_size=(2, 3), stride=1),
    _pool("sum_pool2d", (1, 2, 7, 7), kernel_size=3, stride=2, padding=1),
    # activations, softmax, losses
    Case("linear", ((4, 5), (3, 5), (3,)), F.linear, TF.linear),
    Case("relu", ((3, 4, 5),), F.relu, TF.relu),
    Case("leaky_relu", ((3, 4, 5),), lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    Case("prelu-per-channel", ((2, 3, 4, 4), (3,)), F.prelu, TF.prelu),
    Case("prelu-shared", ((2, 3, 4), (1,)), F.prelu, TF.prelu),
    Case("sigmoid", ((3, 4),), F.sigmoid, torch.sigmoid),
    Case("tanh", ((3, 4),), F.tanh, torch.tanh),
    Case("softmax", ((3, 5),), lambda x: F.softmax(x, dim=1), lambda x: TF.softmax(x, dim=1)),
    Case("softmax-dim0", ((3, 5),), lambda x: F.softmax(x, dim=0), lambda x: TF.softmax(x, dim=0)),
    Case("log_softmax", ((3, 5),), lambda x: F.log_softmax(x, dim=1), lambda x: TF.log_softmax(x, dim=1)),
    Case("cross_entropy", ((4, 5),), lambda x: F.cross_entropy(x, LABELS),
         lambda x: TF.cross_entropy(x, torch.tensor(LABELS))),
    Case("cross_entropy-smoothing-sum", ((4, 5),), lambda x: F.cross_entropy(x, LABELS, 0.1, "sum"),
         lambda x: TF.cross_entropy(x, torch.tensor(LABELS), label_smoothing=0.1, reduction="sum")),
    Case("mse_loss", ((3, 4), (3, 4)), F.mse_loss, TF.mse_loss),
    # normalizations
    Case("batch_norm-train", ((4, 3, 2, 2), (3,), (3,)), _scratch_bn(True), _torch_bn(True)),
    Case("batch_norm-eval", ((4, 3, 2, 2), (3,), (3,)), _scratch_bn(False), _torch_bn(False)),
    Case("local_response_norm-3", ((2, 5, 3, 3),), lambda x: F.local_response_norm(x, 3, alpha=0.5, k=2.0),
         lambda x: TF.local_response_norm(x, 3, alpha=0.5, k=2.0)),
    Case("local_response_norm-4", ((2, 6, 2, 3),), lambda x: F.local_response_norm(x, 4, alpha=1.0, beta=0.6),
         lambda x: TF.local_response_norm(x, 4, alpha=1.0, beta=0.6)),
]


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if case.positive:
        return [rng.uniform(0.5, 2.0, size=s) for s in case.shapes]
    return [rng.normal(size=s) for s in case.shapes]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case):
    assert gradcheck(case.scratch, *_inputs(case), tol=1e-6) < 1e-6


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-8), (np.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients_match_pytorch(case, dtype, tol):
    arrays = [a.astype(dtype) for a in _inputs(case)]
    ours = [Tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = case.scratch(*ours), case.torch(*theirs)
    assert out.dtype == dtype and out.shape == tuple(expected.shape)
    assert relative_error(out.data, expected.detach().numpy()) <= tol

    upstream = np.random.default_rng(1).normal(size=out.shape).astype(dtype)
    (out * upstream).sum().backward()
    (expected * torch.tensor(upstream)).sum().backward()
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert relative_error(a.grad, b.grad.numpy()) <= tol, f"gradient of input {i}"


def test_seed_worked_example():
    """The lecture's 5x5 image convolved with the 3x3 'X' filter, stride 1, no padding."""
    image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    feature_map = F.conv2d(Tensor(image[None, None]), Tensor(kernel[None, None])).data[0, 0]
    np.testing.assert_array_equal(feature_map, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_batch_norm_updates_running_statistics_like_pytorch():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 3, 4, 4))
    mean, var = RUNNING_MEAN.copy(), RUNNING_VAR.copy()
    F.batch_norm(Tensor(x, dtype=np.float64), mean, var, training=True, momentum=0.2)
    t_mean, t_var = torch.tensor(RUNNING_MEAN), torch.tensor(RUNNING_VAR)
    TF.batch_norm(torch.tensor(x), t_mean, t_var, training=True, momentum=0.2)
    np.testing.assert_allclose(mean, t_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(var, t_var.numpy(), rtol=1e-12)


def test_dropout_zeroes_a_fraction_p_and_rescales_the_rest():
    x = Tensor(np.ones((200, 100)), requires_grad=True, dtype=np.float64)
    y = F.dropout(x, 0.3, rng=np.random.default_rng(0))
    assert abs((y.data == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(y.data[y.data != 0], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # the gradient passes exactly where the value did
    assert F.dropout(x, 0.3, training=False) is x


def test_cross_entropy_is_stable_for_huge_logits():
    logits = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    loss = F.cross_entropy(logits, [0])
    loss.backward()
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(0.0)
    assert np.all(np.isfinite(logits.grad))
