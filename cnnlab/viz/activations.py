"""Looking inside a PyTorch model: its conv layers, what each layer computes for an input, and the class
probabilities, from one tracer and one input normalization.

Works on any `nn.Module` (registered models, runs of every engine, which `Run.build_model()` returns as
PyTorch models, transferred models): layers are found by walking `named_modules()`, and their inputs and outputs
recorded with forward hooks, so that ResNets and Inception nets work as well as `nn.Sequential` stacks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab.data.preprocess import normalize
from cnnlab.errors import LayerError, ModelOutputError
from cnnlab.models.layer_kinds import is_feature_layer


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def conv_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Conv2d]:
    """The conv layer called `name`, or the first one; a one-line error listing the choices otherwise."""
    layers = conv_layers(model)
    if not layers:
        raise LayerError("the model has no convolution layers")
    if name is None:
        return layers[0]
    module = dict(model.named_modules()).get(name) if name else None
    choices = f"its conv layers: {', '.join(n for n, _ in layers)}"
    if module is None:
        raise LayerError(f"layer {name!r}: no such layer; {choices}")
    if not isinstance(module, nn.Conv2d):
        raise LayerError(f"layer {name!r}: is a {type(module).__name__}, not a 2-D convolution; {choices}")
    return name, module


def check_scores(output, source: str, batch: int | None = None, classes: int | None = None,
                 dims: tuple[int, ...] = (2,), finite: bool = True) -> torch.Tensor:
    """`output` if it is what a model's output must be wherever cnnlab uses it: a tensor of class scores [N, K]
    (`dims` (4,): a segmentation's [N, K, H, W]) for a batch of `batch` inputs and `classes` classes, of finite
    numbers; otherwise a ModelOutputError naming `source` and what it returned. The one check of a model's output,
    at load time and at every forward pass of a user's model (`cnnlab.train.user_model`) and where the explorer
    shows probabilities."""
    if not isinstance(output, torch.Tensor) or output.dim() not in dims:
        got = f"a tensor of shape {list(output.shape)}" if isinstance(output, torch.Tensor) else \
            f"a {type(output).__name__}"
        raise ModelOutputError(f"{source}: the model returned {got}, expected class scores "
                               f"{'[N, K]' if dims == (2,) else '[N, K, H, W]'}")
    if batch is not None and output.shape[0] != batch:
        raise ModelOutputError(f"{source}: the model returned {output.shape[0]} rows of scores for {batch} inputs")
    if classes is not None and output.shape[1] != classes:
        raise ModelOutputError(f"{source}: the model returned {output.shape[1]} class scores, expected {classes}")
    ok = torch.isfinite(output.detach()) if finite else None
    if ok is not None and not bool(ok.all()):
        bad = int((~ok).sum())
        raise ModelOutputError(f"{source}: the model's output holds NaN or infinite values ({bad} of "
                               f"{output.numel()} scores): its weights or its forward overflow")
    return output


def normalize_input(image: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """One uint8 image [H, W] or [C, H, W] -> the normalized float batch [1, C, H, W] the model was trained on."""
    x = torch.from_numpy(normalize(np.asarray(image, dtype=np.uint8), mean, std))
    return (x[None] if x.ndim == 2 else x)[None]


class NormalizedImages:
    """uint8 images [N, H, W] or [N, C, H, W] (an array, or images read by index from disk) as the normalized float
    batch [N, C, H, W] models take, made a slice at a time: a whole test set is never normalized at once."""

    def __init__(self, pixels, mean, std):
        self.pixels, self.mean, self.std = pixels, mean, std

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(self.pixels.shape)
        return shape if len(shape) == 4 else (shape[0], 1, *shape[1:])

    def __getitem__(self, rows: slice) -> torch.Tensor:
        x = torch.from_numpy(normalize(np.asarray(self.pixels[rows], dtype=np.uint8), self.mean, self.std))
        return x[:, None] if x.ndim == 3 else x


def trace(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module]):
    """(outputs, {name: (input, output)}): run `model` on the batch `x` without gradients, recording the input and
    output of each of `layers` for the batch's first image, in execution order.

    Inputs are cloned before the layer runs and outputs right after it, because the ReLUs of most models run in
    place and would overwrite both. A module called twice keeps its last call.
    """
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    inputs_before: dict[str, torch.Tensor] = {}

    def keep_input(name):
        def save(_module, inputs):
            inputs_before[name] = inputs[0][0].detach().clone()
        return save

    def hook(name):
        def save(_module, _inputs, output):
            seen.pop(name, None)  # keep the execution order of the last call
            seen[name] = (inputs_before.pop(name), output[0].detach().clone())
        return save

    handles = [module.register_forward_pre_hook(keep_input(name)) for name, module in layers.items()]
    handles += [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        with torch.no_grad():
            outputs = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, seen


def feature_maps(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """([(layer name, output [C, H, W]) for every conv/pool layer in forward order], logits) for one input [1, C, H, W]."""
    logits, seen = trace(model, x, {name: m for name, m in model.named_modules() if is_feature_layer(m)})
    return [(name, output) for name, (_, output) in seen.items()], logits[0]


def predict_probabilities(model: nn.Module, info, images, source: str = "the model") -> torch.Tensor:
    """Class probabilities [N, K] for uint8 images ([N, H, W], [N, C, H, W] or a list of either's images) of
    `info`'s dataset; a ModelOutputError naming `source` if the model's scores are not finite class scores."""
    x = torch.from_numpy(normalize(np.stack(images), info.mean, info.std))
    x = x[:, None] if x.ndim == 3 else x
    with torch.inference_mode():
        return check_scores(model(x), source, len(x)).softmax(1)
