"""Looking inside a PyTorch model: its conv layers, and the feature maps of every conv/pool layer for an input.

Works on any `nn.Module` — registered models and runs of either engine, which `Run.build_model()` returns as
PyTorch models — by walking `named_modules()` and recording outputs with forward hooks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab.errors import ConfigError


# Convolutions and poolings defined outside torch.nn count too, recognised by their class names: LeNet-5's
# PartialConv2d and Subsampling, the experiments' SumPool2d.
FEATURE_LAYER_WORDS = ("Conv", "Pool", "Subsampling")


def is_feature_layer(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return True
    is_leaf = next(module.children(), None) is None  # a block named "...Conv..." is not itself one layer
    return is_leaf and any(word in type(module).__name__ for word in FEATURE_LAYER_WORDS)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def conv_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Conv2d]:
    """The conv layer called `name`, or the first one; one-line error listing the choices otherwise."""
    layers = conv_layers(model)
    if not layers:
        raise ConfigError("the model has no convolution layers")
    if name is None:
        return layers[0]
    for layer_name, layer in layers:
        if layer_name == name:
            return layer_name, layer
    raise ConfigError(f"no conv layer named {name!r}; conv layers: {', '.join(n for n, _ in layers)}")


def feature_maps(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """([(layer name, output [C, H, W]) for every conv/pool layer in forward order], logits) for one input [1, C, H, W]."""
    recorded: list[tuple[str, torch.Tensor]] = []

    def hook(name):
        # clone: the next layer may be an in-place ReLU that would overwrite the conv output we keep.
        return lambda module, inputs, output: recorded.append((name, output[0].detach().clone()))

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if is_feature_layer(m)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return recorded, logits[0]


def normalize_input(digit: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 [H, W] or [C, H, W] -> the normalized float batch [1, C, H, W] the model was trained on."""
    x = torch.from_numpy(np.asarray(digit, dtype=np.float32) / 255)
    x = x[None] if x.ndim == 2 else x
    return ((x - mean) / std)[None]
