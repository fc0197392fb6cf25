"""The scratch twin of a PyTorch model: the same layers, names and weights, built by reading each torch layer's
constructor arguments. This module only reads attributes; it never imports torch."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.scratch import nn

_LAYERS = {
    "Conv2d": lambda m: nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                  m.groups, m.bias is not None),
    "ConvTranspose2d": lambda m: nn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                                    m.padding, m.output_padding, m.groups, m.bias is not None,
                                                    m.dilation),
    "Linear": lambda m: nn.Linear(m.in_features, m.out_features, m.bias is not None),
    "MaxPool2d": lambda m: nn.MaxPool2d(m.kernel_size, m.stride, m.padding),
    "AvgPool2d": lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding),
    "BatchNorm2d": lambda m: nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats),
    "LocalResponseNorm": lambda m: nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k),
    "PReLU": lambda m: nn.PReLU(m.num_parameters),
    "LeakyReLU": lambda m: nn.LeakyReLU(m.negative_slope),
    "ReLU": lambda m: nn.ReLU(),
    "Sigmoid": lambda m: nn.Sigmoid(),
    "Tanh": lambda m: nn.Tanh(),
    "Dropout": lambda m: nn.Dropout(m.p),
    "Flatten": lambda m: nn.Flatten(m.start_dim, m.end_dim),
}


def _layer(module) -> nn.Module:
    classes = [c.__name__ for c in type(module).__mro__]
    if "Sequential" in classes:
        return nn.Sequential(OrderedDict((name, _layer(child)) for name, child in module.named_children()))
    build = next((_LAYERS[c] for c in classes if c in _LAYERS), None)
    if build is None:
        raise ConfigError(f"the scratch engine has no {type(module).__name__} layer "
                          f"(it has: Sequential, {', '.join(_LAYERS)})")
    if isinstance(getattr(module, "padding", 0), str):
        raise ConfigError(f"the scratch engine needs numeric padding, {type(module).__name__} has {module.padding!r}")
    return build(module)


def twin(torch_model) -> nn.Module:
    """A scratch model that computes what `torch_model` (a Sequential of supported layers) computes, starting
    from the same weights, in the same train/eval mode."""
    model = _layer(torch_model)
    model.load_state_dict({k: np.asarray(v.detach().cpu()) for k, v in torch_model.state_dict().items()})
    return model.train(torch_model.training)
