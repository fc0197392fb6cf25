"""Look inside any model the explorer shows: every layer's output for one input (a classifier's class
probabilities, or a segmentation's class map and score maps), a layer's kernels, and the multiply-and-sum behind
one output pixel of a convolution.

Layers are found generically, by forward hooks on the model's leaf modules that `formulas.layer_kind` names
(convolutions, poolings, activations, batch norms, flatten, fully connected layers, ...), so ResNets and Inception
nets work as well as `nn.Sequential` stacks.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import nn

from cnnlab.viz.activations import check_scores, conv_layer, normalize_input, trace
from cnnlab.web import formulas
from cnnlab.web.sources import Loaded

MAX_VECTOR = 1024  # values of a fully connected layer's output sent to the page


def shown_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and formulas.layer_kind(m)}


def encode_maps(maps: torch.Tensor) -> tuple[str, float, float]:
    """Maps [K, H, W] as base64 uint8 scaled to the layer's [min, max], so maps of one layer compare."""
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else torch.zeros_like(maps)
    data = (scaled * 255).round().to(torch.uint8).numpy().tobytes()
    return base64.b64encode(data).decode(), low, high


def activations(loaded: Loaded, digit: np.ndarray, max_maps: int) -> dict:
    """Every shown layer's output in execution order, with a residual block's addition (the input of its last
    activation) as a row of its own just before that activation."""
    model = loaded.model
    modules = shown_layers(model)
    x = normalize_input(digit, loaded.info.mean, loaded.info.std)
    with loaded.lock:
        logits, seen = trace(model, x, modules)
    check_scores(logits, loaded.source, 1, dims=(4,) if loaded.info.task == "segmentation" else (2,))
    additions = {act: row for row, act in formulas.addition_rows(seen, model).items()}
    layers = []
    for name, (inp, out) in seen.items():
        if name in additions:
            layers.append(_layer(additions[name], "residual addition", "residual", inp, max_maps))
        module = modules[name]
        layers.append(_layer(name, type(module).__name__, formulas.layer_kind(module), out, max_maps))
        if isinstance(module, nn.Conv2d):
            layers[-1]["kernel"] = list(module.weight.shape)
    answer = {"classes": list(loaded.info.classes), "task": loaded.info.task, "layers": layers}
    if loaded.info.task == "segmentation":
        return {**answer, **segmentation(logits[0])}
    return {**answer, "probabilities": [float(p) for p in logits[0].softmax(0)]}


def segmentation(scores: torch.Tensor) -> dict:
    """A segmentation model's output for one scene, scores [K, H, W]: the class of every pixel (the highest score),
    how many pixels each class has, and the scores themselves, exactly (base64 float32, little-endian, class by
    class), for each class's score map."""
    class_map = scores.argmax(0)
    data = scores.float().contiguous().numpy().astype("<f4").tobytes()
    pixels = torch.bincount(class_map.flatten(), minlength=len(scores))
    return {"class_map": class_map.tolist(), "pixels": pixels.tolist(),
            "scores": {"shape": list(scores.shape), "data": base64.b64encode(data).decode(),
                       "min": float(scores.min()), "max": float(scores.max())}}


def _layer(name: str, type_name: str, kind: str, out: torch.Tensor, max_maps: int) -> dict:
    layer = {"name": name, "type": type_name, "kind": kind, "shape": list(out.shape)}
    if out.ndim == 3:
        shown = out[:max_maps]
        layer["maps"], layer["min"], layer["max"] = encode_maps(shown)
        layer["shown"] = len(shown)
    else:
        values = out.flatten()[:MAX_VECTOR]
        layer["values"] = [round(float(v), 5) for v in values]
        layer["shown"] = len(values)
    return layer


def kernels(loaded: Loaded, name: str | None, max_filters: int) -> dict:
    name, conv = conv_layer(loaded.model, name)
    weight = conv.weight.detach()[:max_filters]
    return {"layer": name, "shape": list(conv.weight.shape), "weights": weight.tolist(),
            "bias": None if conv.bias is None else conv.bias.detach()[:max_filters].tolist(),
            "stride": list(conv.stride), "padding": list(conv.padding), "dilation": list(conv.dilation),
            "groups": conv.groups}


def explain_pixel(loaded: Loaded, digit: np.ndarray, name: str, channel: int, y: int, x: int) -> dict:
    """The multiply-and-sum that produced output[channel, y, x] of convolution `name`: each input channel's
    receptive-field patch (zero where it falls into the padding), the kernel it meets, the sum per channel, the
    bias, and the value the model actually computed."""
    name, _ = conv_layer(loaded.model, name)
    terms = formulas.explain(loaded, digit, name, [channel, y, x])
    return {"layer": name, "channel": channel, "y": y, "x": x, "input_channels": terms["input_channels"],
            "patch": terms["patch"], "kernel": terms["kernel"], "channel_sums": terms["channel_sums"],
            "bias": terms["bias"], "sum": terms["result"], "actual": terms["actual"]}
