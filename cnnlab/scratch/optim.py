"""Optimizers with PyTorch's update rules, so the two engines follow the same trajectory from the same weights.

Like PyTorch, each keeps its settings in `param_groups[0]` (one group): a learning-rate schedule sets
`optimizer.param_groups[0]["lr"]` before each step, whichever engine it drives.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.tensor import Tensor


class Optimizer:
    def __init__(self, params, **settings):
        self.params: list[Tensor] = list(params)
        self.param_groups = [dict(settings)]
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        group = self.param_groups[0]
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p.data, p.grad.astype(p.data.dtype, copy=False), state, **group)

    def update(self, w: np.ndarray, g: np.ndarray, state: dict, **group) -> None:
        """Change `w` in place, given its gradient `g` and this parameter's `state`."""
        raise NotImplementedError


class SGD(Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                         dampening=dampening)

    def update(self, w, g, state, lr, momentum, weight_decay, nesterov, dampening):
        if weight_decay:
            g = g + weight_decay * w
        if momentum:
            if "velocity" in state:
                state["velocity"] = momentum * state["velocity"] + (1 - dampening) * g
            else:
                state["velocity"] = g.copy()  # PyTorch starts the buffer at the first gradient, undampened
            g = g + momentum * state["velocity"] if nesterov else state["velocity"]
        w -= lr * g


class Adam(Optimizer):
    """Adam; with `decoupled=True` (AdamW) weight decay shrinks the weights directly instead of joining the
    gradient, so the adaptive step size does not weaken it."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def update(self, w, g, state, lr, betas, eps, weight_decay):
        if weight_decay and self.decoupled:
            w *= 1 - lr * weight_decay
        elif weight_decay:
            g = g + weight_decay * w
        if not state:
            state.update(step=0, m=np.zeros_like(w), v=np.zeros_like(w))
        state["step"] += 1
        b1, b2 = betas
        state["m"] = b1 * state["m"] + (1 - b1) * g
        state["v"] = b2 * state["v"] + (1 - b2) * g * g
        m_hat = state["m"] / (1 - b1 ** state["step"])
        v_hat = state["v"] / (1 - b2 ** state["step"])
        w -= lr * m_hat / (np.sqrt(v_hat) + eps)


class AdamW(Adam):
    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
