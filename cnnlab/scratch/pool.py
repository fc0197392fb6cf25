"""Pooling: max, average and sum over sliding windows, channel by channel.

Output sides, as for convolution: OH = floor((H + 2*padding - KH) / stride) + 1 (stride defaults to the kernel).
Both passes loop over the KH*KW kernel offsets, never over pixels: offset (u, v) sees one strided view of the
whole batch, and the window results are elementwise maxima or sums of those views.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.tensor import Tensor
from cnnlab.scratch.windows import offsets, output_shape, pad, pair, shifted, zeros_batch_last

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


def _views(padded: np.ndarray, kernel, stride, out) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """(index, view) for each kernel offset; view[n, c, i, j] is what that offset sees in window (i, j)."""
    return [(index, padded[index]) for index in
            (shifted(top, left, stride, out) for _, _, top, left in offsets(kernel, _NO_DILATION))]


def _unpad(g: np.ndarray, padding, size) -> np.ndarray:
    return g[:, :, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The largest value of each window (padding counts as -inf). The gradient goes to the first maximum of
    each window in row-major order, as in PyTorch."""
    kernel, stride, padding, out = _geometry("max_pool2d", x, kernel_size, stride, padding)
    padded = pad(x.data, padding, value=-np.inf)
    views = _views(padded, kernel, stride, out)
    y = views[0][1].copy(order="K")  # "K" keeps the (batch-last) memory layout
    for _, view in views[1:]:
        np.maximum(y, view, out=y)

    def backward(g):
        gx = zeros_batch_last(padded.shape, g.dtype)
        unclaimed = np.ones_like(y, dtype=bool)  # like y: same (batch-last) layout, so the loop streams
        for index, view in views:
            winner = (view == y) & unclaimed
            unclaimed &= ~winner
            gx[index] += g * winner
        return (_unpad(gx, padding, x.shape[2:]),)

    return Tensor.from_op(y, (x,), backward)


def sum_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The sum of each window (zero padding)."""
    kernel, stride, padding, out = _geometry("sum_pool2d", x, kernel_size, stride, padding)
    padded = pad(x.data, padding)
    views = _views(padded, kernel, stride, out)
    y = views[0][1].copy(order="K")
    for _, view in views[1:]:
        y += view

    def backward(g):
        gx = zeros_batch_last(padded.shape, g.dtype)
        for index, _ in views:
            gx[index] += g  # every input of a window receives the window's gradient
        return (_unpad(gx, padding, x.shape[2:]),)

    return Tensor.from_op(y, (x,), backward)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The mean of each window; padded zeros count in the mean (PyTorch's default `count_include_pad=True`)."""
    kh, kw = pair(kernel_size, "kernel_size")
    return sum_pool2d(x, kernel_size, stride, padding) * (1.0 / (kh * kw))
