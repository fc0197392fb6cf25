"""The PyTorch training engine: Trainer, configuration and recipes, run folders.

Called, it trains: `cnnlab.train(recipe="default", **settings)` is `cnnlab.train.api.train`, which returns a Run.
"""

from cnnlab.calls import callable_module


def _train(recipe: str = "default", **settings):
    """`cnnlab train` from Python: cnnlab.train.api.train(recipe, **settings) -> Run."""
    from cnnlab.train.api import train

    return train(recipe, **settings)


callable_module(__name__, _train)
