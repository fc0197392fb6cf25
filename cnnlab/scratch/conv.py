"""Convolution and transposed convolution ("deconvolution") as one matrix product each (im2col + BLAS).

Every receptive field of the padded input becomes a column of a matrix of shape (C*KH*KW, N*OH*OW); the
weights are a matrix (O, C*KH*KW); their product is the whole batch's output at once. Groups split both
matrices into `groups` independent blocks. The transposed convolution is the same pair of matrices used the
other way round: it is exactly the gradient of a convolution with respect to its input.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.tensor import Tensor
from cnnlab.scratch.windows import batch_last, fold, output_shape, pad, pair, windows, zeros_batch_last


def _columns(x: np.ndarray, kernel, stride, dilation, out, groups: int) -> np.ndarray:
    """(N, C, H, W) -> (groups, C/groups*KH*KW, OH*OW*N): each column one receptive field (one copy)."""
    c = x.shape[1]
    view = windows(x, kernel, stride, dilation, out).transpose(1, 4, 5, 2, 3, 0)  # (C, KH, KW, OH, OW, N)
    return view.reshape(groups, c // groups * kernel[0] * kernel[1], -1)


def _uncolumns(cols: np.ndarray, shape, kernel, stride, dilation, out) -> np.ndarray:
    """Adjoint of `_columns`: sum the columns back onto an (N, C, H, W) image."""
    n, c = shape[:2]
    cols = cols.reshape(c, *kernel, *out, n).transpose(5, 0, 3, 4, 1, 2)  # (N, C, OH, OW, KH, KW)
    return fold(cols, shape, stride, dilation)


def _as_matrix(x: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, H, W) -> (groups, C/groups, H*W*N): one row per channel (no copy in the batch-last layout)."""
    return x.transpose(1, 2, 3, 0).reshape(groups, x.shape[1] // groups, -1)


def _from_matrix(m: np.ndarray, n: int, size) -> np.ndarray:
    """(groups, C/groups, H*W*N) -> (N, C, H, W), a view: the inverse of `_as_matrix`."""
    return m.reshape(-1, *size, n).transpose(3, 0, 1, 2)


def _check(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int, inputs: int, outputs: int):
    """`inputs`/`outputs`: the channel counts the weight implies for this op."""
    if x.ndim != 4:
        raise ShapeError(f"{op}: input must be (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ShapeError(f"{op}: weight must be 4-D, got shape {weight.shape}")
    if not isinstance(groups, int) or groups < 1 or inputs % groups or outputs % groups:
        raise ShapeError(f"{op}: groups={groups!r} must be a positive int dividing both the input channels "
                         f"({inputs}) and the output channels ({outputs})")
    if x.shape[1] != inputs:
        raise ShapeError(f"{op}: input has {x.shape[1]} channels but the weight {weight.shape} with groups={groups} "
                         f"expects {inputs}")
    if bias is not None and bias.shape != (outputs,):
        raise ShapeError(f"{op}: bias must have shape ({outputs},), got {bias.shape}")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D cross-correlation, as `torch.nn.functional.conv2d`.

    x (N, C, H, W), weight (O, C/groups, KH, KW), bias (O,) -> (N, O, OH, OW) with
    OH = floor((H + 2*padding - dilation*(KH-1) - 1) / stride) + 1, and the same for OW.
    """
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    _check("conv2d", x, weight, bias, groups, inputs=weight.shape[1] * groups, outputs=weight.shape[0])
    n, _, h, w = x.shape
    kernel = weight.shape[2:]
    out = output_shape("conv2d", (h, w), kernel, stride, padding, dilation)
    padded = pad(batch_last(x.data), padding)
    cols = _columns(padded, kernel, stride, dilation, out, groups)
    wmat = weight.data.reshape(groups, weight.shape[0] // groups, -1)
    ymat = np.matmul(wmat, cols)
    if bias is not None:
        ymat.reshape(weight.shape[0], -1)[...] += bias.data[:, None]
    y = _from_matrix(ymat, n, out)

    def backward(g):
        gmat = _as_matrix(g, groups)
        gx = gw = gb = None
        if x.requires_grad:
            gx = _uncolumns(np.matmul(wmat.transpose(0, 2, 1), gmat), padded.shape, kernel, stride, dilation, out)
            gx = gx[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]
        if weight.requires_grad:
            # (cols @ g^T)^T rather than g @ cols^T: the same numbers, but BLAS is ~4x faster with the long
            # N*OH*OW axis as the inner dimension of both operands
            gw = np.matmul(cols, gmat.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(weight.shape)
        if bias is not None and bias.requires_grad:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb

    return Tensor.from_op(y, (x, weight, bias), backward)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed convolution ("deconvolution"), as `torch.nn.functional.conv_transpose2d`: each input pixel
    paints a weighted copy of the kernel onto the output, `stride` pixels apart.

    x (N, C, H, W), weight (C, O/groups, KH, KW), bias (O,) -> (N, O, OH, OW) with
    OH = (H - 1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1, and the same for OW.
    """
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    output_padding = pair(output_padding, "output_padding")
    _check("conv_transpose2d", x, weight, bias, groups, inputs=weight.shape[0], outputs=weight.shape[1] * groups)
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ShapeError(f"conv_transpose2d: output_padding {output_padding} must be smaller than stride {stride} "
                         f"or dilation {dilation}")
    n, c, h, w = x.shape
    kernel = weight.shape[2:]
    full = tuple((i - 1) * s + d * (k - 1) + 1 + op
                 for i, s, d, k, op in zip((h, w), stride, dilation, kernel, output_padding))
    out = tuple(f - 2 * p for f, p in zip(full, padding))
    if min(out) < 1:
        raise ShapeError(f"conv_transpose2d: padding {padding} leaves no output from a {h}x{w} input")
    o = weight.shape[1] * groups
    xmat = _as_matrix(x.data, groups)
    wmat = weight.data.reshape(groups, c // groups, -1)
    canvas = _uncolumns(np.matmul(wmat.transpose(0, 2, 1), xmat), (n, o, *full), kernel, stride, dilation, (h, w))
    y = canvas[:, :, padding[0]:padding[0] + out[0], padding[1]:padding[1] + out[1]]
    if bias is not None:
        y = y + bias.data[:, None, None]

    def backward(g):
        gcanvas = zeros_batch_last(canvas.shape, g.dtype)
        gcanvas[:, :, padding[0]:padding[0] + out[0], padding[1]:padding[1] + out[1]] = g
        gcols = _columns(gcanvas, kernel, stride, dilation, (h, w), groups)
        gx = _from_matrix(np.matmul(wmat, gcols), n, (h, w)) if x.requires_grad else None
        gw = np.matmul(gcols, xmat.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(weight.shape) \
            if weight.requires_grad else None  # the faster order, as in conv2d
        gb = g.sum(axis=(0, 2, 3)) if bias is not None and bias.requires_grad else None
        return gx, gw, gb

    return Tensor.from_op(y, (x, weight, bias), backward)
