"""Pooling: max, average and sum over sliding windows, channel by channel.

Output sides, as for convolution: OH = floor((H + 2*padding - KH) / stride) + 1 (stride defaults to the kernel).
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.tensor import Tensor
from cnnlab.scratch.windows import fold, output_shape, pad, pair, windows

_NO_DILATION = (1, 1)


def _geometry(op: str, x: Tensor, kernel_size, stride, padding):
    if x.ndim != 4:
        raise ShapeError(f"{op}: input must be (N, C, H, W), got shape {x.shape}")
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ShapeError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
    out = output_shape(op, x.shape[2:], kernel, stride, padding)
    return kernel, stride, padding, out


def _unpad(g: np.ndarray, padding, size) -> np.ndarray:
    return g[:, :, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The largest value of each window (padding counts as -inf). The gradient goes to the first maximum of
    each window, as in PyTorch."""
    kernel, stride, padding, out = _geometry("max_pool2d", x, kernel_size, stride, padding)
    padded = pad(x.data, padding, value=-np.inf)
    flat = windows(padded, kernel, stride, _NO_DILATION, out).reshape(*x.shape[:2], *out, -1)
    winner = flat.argmax(axis=-1)[..., None]
    y = np.take_along_axis(flat, winner, axis=-1)[..., 0]

    def backward(g):
        scattered = (np.arange(flat.shape[-1]) == winner) * g[..., None]  # one-hot of the winner, times g
        gx = fold(scattered.reshape(*g.shape, *kernel), padded.shape, stride, _NO_DILATION)
        return (_unpad(gx, padding, x.shape[2:]),)

    return Tensor.from_op(y, (x,), backward)


def sum_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The sum of each window (zero padding)."""
    kernel, stride, padding, out = _geometry("sum_pool2d", x, kernel_size, stride, padding)
    padded = pad(x.data, padding)
    y = windows(padded, kernel, stride, _NO_DILATION, out).sum(axis=(-2, -1))

    def backward(g):
        spread = np.broadcast_to(g[..., None, None], (*g.shape, *kernel))  # every input of a window gets g
        return (_unpad(fold(spread, padded.shape, stride, _NO_DILATION), padding, x.shape[2:]),)

    return Tensor.from_op(y, (x,), backward)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The mean of each window; padded zeros count in the mean (PyTorch's default `count_include_pad=True`)."""
    kh, kw = pair(kernel_size, "kernel_size")
    return sum_pool2d(x, kernel_size, stride, padding) * (1.0 / (kh * kw))
