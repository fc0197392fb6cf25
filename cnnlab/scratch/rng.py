"""The engine's one random number generator (weight initialization, dropout), so one seed reproduces a run."""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _generator
