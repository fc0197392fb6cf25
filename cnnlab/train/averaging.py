"""An exponential moving average of a model's weights, evaluated and saved in the trained weights' place.

SGD ends its run at a point that still moves with every batch; the average of its last few thousand points lies
nearer the middle of the valley they wander over, and usually generalizes a little better (Polyak & Juditsky 1992;
timm's ModelEma and the fast CIFAR-10 trainers keep one). Batch norm's running statistics are averaged too, so
that the averaged weights are evaluated with statistics of the same steps. The decay ramps up as min(decay,
(1 + t) / (10 + t)) at step t: an average over 1 / (1 - decay) steps would otherwise still hold the random initial
weights after the first epoch.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip([*self.model.parameters(), *self.model.buffers()], [*model.parameters(), *model.buffers()]))
        floats = [pair for pair in pairs if pair[0].is_floating_point()]
        self._averaged, self._current = [a for a, _ in floats], [c for _, c in floats]
        self._counts = [pair for pair in pairs if not pair[0].is_floating_point()]  # batch norm's step counters

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's weights after an optimizer step."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        if self._averaged:
            torch._foreach_lerp_(self._averaged, self._current, 1 - decay)
        for averaged, current in self._counts:
            averaged.copy_(current)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.steps = int(state["steps"])
