"""Learning-rate schedules as pure functions of the step, shared by the torch and the scratch engines.

Each returns the factor that multiplies the base learning rate at `step` (0-based) of `total` steps.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "onecycle")


def lr_factor(kind: str, step: int, total: int, *, steps_per_epoch: int = 1, step_size: int = 1,
              gamma: float = 0.7, warmup: float = 0.0, div_factor: float = 25.0,
              final_div_factor: float = 1e4) -> float:
    """- constant: 1.
    - step: gamma ** (epoch // step_size), as StepLR stepped once per epoch.
    - cosine: linear warm-up over the first `warmup` fraction, then half a cosine down to 0.
    - onecycle: as torch's OneCycleLR (cosine annealing): from 1/div_factor up to 1 over the first `warmup`
      fraction, then down to 1/(div_factor*final_div_factor).
    """
    if kind == "constant":
        return 1.0
    if kind == "step":
        return gamma ** ((step // steps_per_epoch) // step_size)
    warm = max(1, round(warmup * total)) if warmup else 0
    if kind == "cosine":
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if kind == "onecycle":
        start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)
        peak = max(1, warm) - 1
        if step <= peak:
            return _cos_interp(start, 1.0, step / max(1, peak))
        return _cos_interp(1.0, end, min(1.0, (step - peak) / max(1, total - 1 - peak)))
    raise ValueError(f"unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")


def _cos_interp(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))
