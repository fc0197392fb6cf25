"""Sliding windows, the one idea behind convolution and pooling, and its adjoint.

`windows` shows every receptive field of a (N, C, H, W) array as a strided *view* (N, C, OH, OW, KH, KW): no copy,
no loop. `fold` is its adjoint: it sums window-shaped values back onto the image they came from, with one strided
add per kernel offset (KH*KW adds, each over the whole batch), which is what backward passes need.
`shifted` is the same idea seen from one kernel offset: the (N, C, OH, OW) view of the pixels that offset
sees in every window; pooling works offset by offset with it.

Memory layout: arrays keep the logical shape (N, C, H, W) of PyTorch, but the engine stores them batch-last,
(C, H, W, N) in memory (as cuda-convnet did). Then every window view, every im2col copy and every strided add
runs over long contiguous stretches (a whole row of pixels times the batch) instead of a few pixels at a time,
and matrix products come out in that layout with no transposing copies.
"""


from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.scratch.errors import ShapeError


def pair(value, name: str) -> tuple[int, int]:
    """2 -> (2, 2); (2, 3) stays; anything else is an error naming the argument."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(values[0]), int(values[1])


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Windows along one axis: floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1.

    When the division is not exact the last, incomplete window is dropped, as in PyTorch.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_shape(op: str, image: tuple[int, int], kernel, stride, padding, dilation=(1, 1)) -> tuple[int, int]:
    """Both output sides, or a ShapeError that says which window does not fit in which input."""
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ShapeError(f"{op}: kernel, stride and dilation must be >= 1 and padding >= 0, got kernel={kernel}, "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    padded = tuple(s + 2 * p for s, p in zip(image, padding))
    if span[0] > padded[0] or span[1] > padded[1]:
        dilated = f" (dilated to {span[0]}x{span[1]})" if tuple(span) != tuple(kernel) else ""
        raise ShapeError(f"{op}: kernel {kernel[0]}x{kernel[1]}{dilated} is larger than the padded input "
                         f"{padded[0]}x{padded[1]}")
    return tuple(output_size(*args) for args in zip(image, kernel, stride, padding, dilation))


def pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Surround each image with `value`, keeping x's memory layout (np.pad would make it batch-first)."""
    ph, pw = padding
    if ph == pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full_like(x, value, shape=(n, c, h + 2 * ph, w + 2 * pw))
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def windows(x: np.ndarray, kernel, stride, dilation, out: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> read-only view (N, C, OH, OW, KH, KW): element [n, c, i, j, u, v] is
    x[n, c, i*stride + u*dilation, j*stride + v*dilation]."""
    n, c = x.shape[:2]
    sn, sc, sh, sw = x.strides
    shape = (n, c, *out, *kernel)
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return as_strided(x, shape, strides, writeable=False)


def offsets(kernel, dilation):
    """The kernel offsets (u, v) and where each one starts in the image, row by row."""
    return [(u, v, u * dilation[0], v * dilation[1]) for u in range(kernel[0]) for v in range(kernel[1])]


def shifted(top: int, left: int, stride, out) -> tuple[slice, ...]:
    """Index of the pixels that kernel offset (top, left) sees in every window: an (N, C, OH, OW) strided view."""
    return (slice(None), slice(None), slice(top, top + stride[0] * (out[0] - 1) + 1, stride[0]),
            slice(left, left + stride[1] * (out[1] - 1) + 1, stride[1]))


def batch_last(x: np.ndarray) -> np.ndarray:
    """x as stored batch-last: itself if it already is, else a copy (network inputs arrive batch-first)."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def zeros_batch_last(shape, dtype) -> np.ndarray:
    """Zeros of logical shape (N, C, H, W) stored as (C, H, W, N), the engine's layout."""
    n, c, h, w = shape
    return np.zeros((c, h, w, n), dtype=dtype).transpose(3, 0, 1, 2)


def fold(cols: np.ndarray, shape: tuple[int, ...], stride, dilation) -> np.ndarray:
    """Adjoint of `windows`: (N, C, OH, OW, KH, KW) -> (N, C, H, W), summing where windows overlap."""
    out = zeros_batch_last(shape, cols.dtype)
    oh, ow, kh, kw = cols.shape[2:]
    for u, v, top, left in offsets((kh, kw), dilation):
        out[shifted(top, left, stride, (oh, ow))] += cols[:, :, :, :, u, v]
    return out
