"""`Tensor`: a NumPy array that remembers how it was computed, so `loss.backward()` can apply the chain rule.

Every operation builds its result with `Tensor.from_op(data, parents, backward)`, where `backward(grad)` maps the
gradient of the output to one gradient per parent (or None where a parent needs none; a parent may itself be None,
like a missing bias). `backward()` walks the
graph once in reverse topological order, summing the gradients that reach each node; leaves that require a
gradient accumulate it in `.grad`, as in PyTorch.
"""

from __future__ import annotations

import contextlib

import numpy as np

from cnnlab.scratch.errors import ShapeError

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Evaluate without recording the graph (inference, optimizer steps): no closures, no memory kept."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` back to `shape`: broadcasting copied a value to many places, so its gradient is their sum."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


class Tensor:
    __array_priority__ = 100  # so `ndarray * Tensor` calls Tensor.__rmul__ instead of broadcasting over objects

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        array = np.asarray(data, dtype=dtype)
        if dtype is None and array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)  # float32 unless asked otherwise: the speed of training
        self.data: np.ndarray = array
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward = None

    @classmethod
    def from_op(cls, data: np.ndarray, parents: tuple[Tensor, ...], backward) -> Tensor:
        out = cls(data, dtype=data.dtype)
        if _grad_enabled and any(p is not None and p.requires_grad for p in parents):
            out.requires_grad, out._parents, out._backward = True, parents, backward
        return out

    def backward(self, grad: np.ndarray | None = None) -> None:
        if not self.requires_grad:
            raise ShapeError("backward() on a tensor that does not require grad (no parameter reaches it)")
        if grad is None:
            if self.data.size != 1:
                raise ShapeError(f"backward() needs an explicit gradient for a non-scalar of shape {self.shape}")
            grad = np.ones_like(self.data)
        grads = {id(self): grad}
        for node in reversed(self._topological_order()):
            g = grads.pop(id(node))
            if node._backward is None:
                node.grad = g if node.grad is None else node.grad + g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or parent is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = grads[key] + pg if key in grads else pg

    def _topological_order(self) -> list[Tensor]:
        order, seen, stack = [], set(), [(self, False)]
        while stack:  # iterative depth-first search: deep graphs must not hit Python's recursion limit
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if p is not None and p.requires_grad and id(p) not in seen)
        return order

    # ---- conveniences -------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        return Tensor(self.data, dtype=self.data.dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    def _lift(self, other) -> Tensor:
        """Python numbers and arrays join the graph as constants of this tensor's dtype (no silent float64)."""
        return other if isinstance(other, Tensor) else Tensor(np.asarray(other, dtype=self.dtype))

    # ---- arithmetic (with broadcasting) -------------------------------------------------------------------------
    def __add__(self, other) -> Tensor:
        other = self._lift(other)
        return Tensor.from_op(self.data + other.data, (self, other),
                              lambda g: (_unbroadcast(g, self.shape), _unbroadcast(g, other.shape)))

    def __mul__(self, other) -> Tensor:
        other = self._lift(other)
        return Tensor.from_op(self.data * other.data, (self, other),
                              lambda g: (_unbroadcast(g * other.data, self.shape),
                                         _unbroadcast(g * self.data, other.shape)))

    def __truediv__(self, other) -> Tensor:
        other = self._lift(other)
        return Tensor.from_op(self.data / other.data, (self, other),
                              lambda g: (_unbroadcast(g / other.data, self.shape),
                                         _unbroadcast(-g * self.data / other.data**2, other.shape)))

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported: write exp(b * log(a))")
        return Tensor.from_op(self.data**exponent, (self,),
                              lambda g: (g * exponent * self.data ** (exponent - 1),))

    def __neg__(self) -> Tensor:
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,))

    def __sub__(self, other) -> Tensor:
        return self + (-self._lift(other))

    def __radd__(self, other) -> Tensor:
        return self + other

    def __rmul__(self, other) -> Tensor:
        return self * other

    def __rsub__(self, other) -> Tensor:
        return self._lift(other) - self

    def __rtruediv__(self, other) -> Tensor:
        return self._lift(other) / self

    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * out,))

    def log(self) -> Tensor:
        return Tensor.from_op(np.log(self.data), (self,), lambda g: (g / self.data,))

    def __matmul__(self, other) -> Tensor:
        """Matrix product of the last two axes (leading axes broadcast, as in `np.matmul`)."""
        other = self._lift(other)
        if self.ndim < 2 or other.ndim < 2:
            raise ShapeError(f"matmul needs at least 2-D operands, got shapes {self.shape} and {other.shape}")
        if self.shape[-1] != other.shape[-2]:
            raise ShapeError(f"matmul shapes {self.shape} @ {other.shape}: inner sizes "
                             f"{self.shape[-1]} and {other.shape[-2]} differ")
        return Tensor.from_op(self.data @ other.data, (self, other),
                              lambda g: (_unbroadcast(g @ other.data.swapaxes(-1, -2), self.shape),
                                         _unbroadcast(self.data.swapaxes(-1, -2) @ g, other.shape)))

    # ---- shape --------------------------------------------------------------------------------------------------
    def reshape(self, *shape) -> Tensor:
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ShapeError(f"cannot reshape a tensor of shape {self.shape} ({self.data.size} values) "
                             f"to {tuple(shape)}") from None
        def backward(g):
            grad = np.empty_like(self.data)  # in self's memory layout: mixing layouts makes later ops crawl
            grad[...] = g.reshape(self.shape)
            return (grad,)
        return Tensor.from_op(out, (self,), backward)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        start, end = start_dim % self.ndim, end_dim % self.ndim
        return self.reshape(*self.shape[:start], -1, *self.shape[end + 1:])

    def transpose(self, *axes) -> Tensor:
        """Permute axes (all of them, like `np.transpose`); no axes reverses them."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) or tuple(reversed(range(self.ndim)))
        return Tensor.from_op(self.data.transpose(axes), (self,), lambda g: (g.transpose(np.argsort(axes)),))

    @property
    def T(self) -> Tensor:
        return self.transpose()

    # ---- reductions ---------------------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            return (np.broadcast_to(g, self.shape),)
        return Tensor.from_op(np.asarray(self.data.sum(axis=axis, keepdims=keepdims)), (self,), backward)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        total = self.sum(axis, keepdims)
        return total * (total.data.size / self.data.size)

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        """Maximum; the gradient is shared equally between tied maxima (as `torch.amax`)."""
        out = self.data.max(axis=axis, keepdims=True)

        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            winners = self.data == out
            return (winners * (g / winners.sum(axis=axis, keepdims=True)),)
        return Tensor.from_op(np.asarray(out if keepdims else out.squeeze(axis)), (self,), backward)

    # ---- the activations are methods too, so that `x.relu()` reads like the maths -------------------------------
    def relu(self) -> Tensor:
        return Tensor.from_op(np.maximum(self.data, 0), (self,), lambda g: (g * (self.data > 0),))

    def sigmoid(self) -> Tensor:
        out = 0.5 * (1 + np.tanh(0.5 * self.data))  # = 1/(1+e^-x) without overflow for large negative x
        return Tensor.from_op(out, (self,), lambda g: (g * out * (1 - out),))

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * (1 - out * out),))
