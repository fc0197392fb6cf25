"""Check a gradient against centered finite differences: the test that every op of the engine passes.

For f(inputs) -> Tensor, take the scalar L = sum(f * R) for a fixed random R (so every output element is checked)
and compare dL/dx from `backward()` with (L(x + eps) - L(x - eps)) / (2 eps), one input element at a time, in
float64 where the truncation error (~eps^2) and the rounding error (~1e-16/eps) are both far below the tolerance.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.tensor import Tensor


class GradientMismatch(AssertionError):
    """The analytic gradient disagrees with the numerical one."""


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|a|, max|b|): scale-free, and no blow-up where single elements are near zero."""
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return float(np.abs(a - b).max(initial=0) / scale) if scale > 0 else 0.0


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float) -> np.ndarray:
    """dF/dx by centered differences, perturbing `x` in place (and restoring it)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn: Callable[..., Tensor], *inputs: np.ndarray, eps: float = 1e-6, tol: float = 1e-6,
              seed: int = 2024) -> float:
    """Compare the gradients of `fn(*tensors)` with respect to every input with finite differences.

    Returns the largest relative error; raises GradientMismatch naming the input when it exceeds `tol`.
    Example: gradcheck(lambda x, w: F.conv2d(x, w, padding=1), rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(4, 3, 3, 3)))
    """
    arrays = [np.array(a, dtype=np.float64) for a in inputs]  # private float64 copies, perturbed in place
    tensors = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    out = fn(*tensors)
    if out.dtype != np.float64:
        raise ShapeError(f"gradcheck: fn must keep float64, it returned {out.dtype}")
    weights = np.random.default_rng(seed).normal(size=out.shape)
    (out * weights).sum().backward()

    def loss() -> float:
        return float((fn(*[Tensor(a, dtype=np.float64) for a in arrays]).data * weights).sum())

    worst = 0.0
    for i, (a, t) in enumerate(zip(arrays, tensors)):
        analytic = t.grad if t.grad is not None else np.zeros_like(a)
        error = relative_error(analytic, numerical_gradient(loss, a, eps))
        if error > tol:
            raise GradientMismatch(f"gradient of input {i} (shape {a.shape}): relative error {error:.2e} > {tol:.0e}")
        worst = max(worst, error)
    return worst
