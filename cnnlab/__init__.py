"""cnnlab: convolutional neural networks for computer vision, from the single convolution up to ResNets.

    import cnnlab
    run = cnnlab.train(epochs=1, train_limit=5000)  # a Run, as `cnnlab train --epochs 1 --train-limit 5000`
    run.evaluate()                                   # accuracy, loss, per-class accuracy
    run.predict("my_digit.png")                      # its class and probabilities
    run.show.features(0)                             # a Figure: test image 0 through every layer
    cnnlab.inspect(my_model).show.filters()          # the same pictures of a model of your own
    cnnlab.models.summary("resnet20")                # layer by layer, an HTML table in Jupyter

docs/api.md lists every function. Each is imported when first used, so `import cnnlab` (and `cnnlab --help`) load
no torch.
"""

__version__ = "0.1.0"

# What `cnnlab.NAME` is, and the module it comes from, imported on first use (names here, not import statements:
# the package's face sits above every floor, while every floor reads `cnnlab.__version__`).
_NAMES = {"open": "cnnlab.train.api", "runs": "cnnlab.train.api", "inspect": "cnnlab.train.api",
          "Run": "cnnlab.train.api", "Model": "cnnlab.train.api"}
# Modules; train, transfer and export are also functions: cnnlab.train(...), cnnlab.transfer(...), cnnlab.export(run).
_MODULES = ("train", "transfer", "export", "models", "data")

__all__ = ["__version__", *_NAMES, *_MODULES]


def __getattr__(name: str):
    import importlib

    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_MODULES})
