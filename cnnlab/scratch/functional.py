"""The operations of a CNN besides convolution and pooling, named as in `torch.nn.functional`:
fully connected layer, activations, softmax, losses, dropout and normalizations. Each is a forward in NumPy plus
its gradient; the convolutions and poolings are re-exported so that `F.conv2d` works as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.conv import conv2d, conv_transpose2d
from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.pool import avg_pool2d, max_pool2d, sum_pool2d
from cnnlab.scratch.rng import generator
from cnnlab.scratch.tensor import Tensor

__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "sum_pool2d", "linear", "relu", "leaky_relu",
           "prelu", "sigmoid", "tanh", "softmax", "log_softmax", "cross_entropy", "mse_loss", "dropout",
           "batch_norm", "local_response_norm"]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Fully connected layer: x (N, IN) @ weight.T (IN, OUT) + bias (OUT,) -> (N, OUT)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"linear: input {x.shape} does not fit weight {weight.shape} (expected (N, {weight.shape[-1]}))")
    y = x.data @ weight.data.T
    if bias is not None:
        y = y + bias.data

    def backward(g):
        return (g @ weight.data if x.requires_grad else None,
                g.T @ x.data if weight.requires_grad else None,
                g.sum(axis=0) if bias is not None and bias.requires_grad else None)

    return Tensor.from_op(y, (x, weight, bias), backward)


def relu(x: Tensor) -> Tensor:
    """max(x, 0); its gradient is 1 where x > 0, else 0."""
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    positive = x.data > 0
    y = np.where(positive, x.data, negative_slope * x.data)
    return Tensor.from_op(y, (x,), lambda g: (np.where(positive, g, negative_slope * g),))


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """Leaky ReLU whose slope is learned: one slope per channel (axis 1), or a single shared one."""
    if weight.ndim != 1 or (weight.shape[0] != 1 and (x.ndim < 2 or weight.shape[0] != x.shape[1])):
        raise ShapeError(f"prelu: weight {weight.shape} must have 1 or {x.shape[1] if x.ndim > 1 else 1} slopes")
    slope = weight.data.reshape(-1, *[1] * (x.ndim - 2)) if x.ndim > 1 else weight.data
    positive = x.data > 0
    y = np.where(positive, x.data, slope * x.data)

    def backward(g):
        gslope = np.where(positive, 0, g * x.data)
        shared = weight.shape[0] == 1
        gw = gslope.sum().reshape(1) if shared else gslope.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
        return np.where(positive, g, slope * g), gw

    return Tensor.from_op(y, (x, weight), backward)


def _shifted(x: np.ndarray, dim: int) -> np.ndarray:
    """x - max(x): exp() of it cannot overflow, and softmax does not change."""
    return x - x.max(axis=dim, keepdims=True)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`."""
    e = np.exp(_shifted(x.data, dim))
    y = e / e.sum(axis=dim, keepdims=True)
    return Tensor.from_op(y, (x,), lambda g: (y * (g - (g * y).sum(axis=dim, keepdims=True)),))


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - log(sum(exp(x))) along `dim`, computed as (x - max) - log(sum(exp(x - max))) so it never overflows."""
    s = _shifted(x.data, dim)
    y = s - np.log(np.exp(s).sum(axis=dim, keepdims=True))
    return Tensor.from_op(y, (x,), lambda g: (g - np.exp(y) * g.sum(axis=dim, keepdims=True),))


def cross_entropy(logits: Tensor, target, label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, K) against class indices (N,), as `F.cross_entropy`.

    With label smoothing e the target distribution is (1-e)*one_hot + e/K. The gradient is the classic
    (softmax(logits) - target distribution) / N, computed in one step.
    """
    labels = np.asarray(target.data if isinstance(target, Tensor) else target)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ShapeError(f"cross_entropy: logits must be (N, K) and target (N,), got {logits.shape} and {labels.shape}")
    n, k = logits.shape
    if not np.issubdtype(labels.dtype, np.integer) or (n and (labels.min() < 0 or labels.max() >= k)):
        raise ShapeError(f"cross_entropy: targets must be class indices in [0, {k}), got {labels[:8]}...")
    if reduction not in ("mean", "sum"):
        raise ShapeError(f"cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    logp = log_softmax(Tensor(logits.data, dtype=logits.dtype)).data
    wanted = np.full(logits.shape, label_smoothing / k, dtype=logits.dtype)
    wanted[np.arange(n), labels] += 1 - label_smoothing
    scale = 1.0 / n if reduction == "mean" else 1.0
    loss = np.asarray(-(wanted * logp).sum() * scale, dtype=logits.dtype)
    return Tensor.from_op(loss, (logits,), lambda g: (g * scale * (np.exp(logp) - wanted),))


def mse_loss(x: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of squared differences."""
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=x.dtype))
    if x.shape != target.shape:
        raise ShapeError(f"mse_loss: input {x.shape} and target {target.shape} differ in shape")
    diff = x - target
    return (diff * diff).mean() if reduction == "mean" else (diff * diff).sum()


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    """Zero each value with probability p and scale the rest by 1/(1-p), so the expected value is unchanged
    and evaluation (training=False) needs no rescaling."""
    if not 0 <= p < 1:
        raise ShapeError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = (rng or generator()).random(x.shape) >= p
    return x * (keep * np.asarray(1 / (1 - p), dtype=x.dtype))


def batch_norm(x: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (axis 1) to zero mean and unit variance, then scale by weight and shift by bias.

    Training uses the batch's statistics and updates the running ones in place (the running variance is the
    unbiased one, as in PyTorch); evaluation uses the running statistics.
    """
    if x.ndim < 2 or (running_mean is not None and running_mean.shape != (x.shape[1],)):
        raise ShapeError(f"batch_norm: input {x.shape} does not match the {running_mean.shape[0]} running statistics"
                         if running_mean is not None else f"batch_norm: input must be (N, C, ...), got {x.shape}")
    axes = tuple(i for i in range(x.ndim) if i != 1)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    batch_stats = training or running_mean is None
    if batch_stats:
        mean, var = x.data.mean(axis=axes), x.data.var(axis=axes)
        if training and running_mean is not None:
            count = x.data.size // x.shape[1]
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * count / max(count - 1, 1)
    else:
        mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype).reshape(per_channel)
    xhat = (x.data - mean.astype(x.dtype).reshape(per_channel)) * inv_std
    gamma = weight.data.reshape(per_channel) if weight is not None else 1
    y = xhat * gamma + (bias.data.reshape(per_channel) if bias is not None else 0)

    def backward(g):
        gxhat = g * gamma
        if batch_stats:  # the mean and variance depend on x too
            gx = inv_std * (gxhat - gxhat.mean(axis=axes, keepdims=True)
                            - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
        else:
            gx = gxhat * inv_std
        gw = (g * xhat).sum(axis=axes) if weight is not None else None
        gb = g.sum(axis=axes) if bias is not None else None
        return gx, gw, gb

    return Tensor.from_op(y, (x, weight, bias), backward)


def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """s[:, c] = a[:, c-before] + ... + a[:, c+after] (channels past either end count as zero)."""
    padded = np.pad(a, [(0, 0), (before, after)] + [(0, 0)] * (a.ndim - 2))
    c = a.shape[1]
    return sum(padded[:, i:i + c] for i in range(before + after + 1))


def local_response_norm(x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """AlexNet's normalization across neighbouring channels, as `F.local_response_norm`:
    y_c = x_c / (k + alpha/size * sum of x_j^2 over the `size` channels j around c) ** beta."""
    if x.ndim < 3:
        raise ShapeError(f"local_response_norm: input must be (N, C, ...) with spatial axes, got {x.shape}")
    before, after = size // 2, (size - 1) // 2
    d = k + alpha / size * _channel_window_sum(x.data * x.data, before, after)
    y = x.data * d**-beta

    def backward(g):
        # x_j appears in its own output and, squared, in the denominators of the channels whose window holds it
        through_d = _channel_window_sum(g * x.data * d ** (-beta - 1), after, before)
        return (g * d**-beta - 2 * alpha * beta / size * x.data * through_d,)

    return Tensor.from_op(y, (x,), backward)
