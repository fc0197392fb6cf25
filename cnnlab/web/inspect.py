"""Look inside any classification model: every layer's output for one input, a layer's kernels, and the
multiply-and-sum behind one output pixel of a convolution.

Layers are found generically, by forward hooks on the model's leaf modules that are convolutions, poolings,
activations or fully connected layers, so ResNets and Inception nets work as well as `nn.Sequential` stacks.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import nn

from cnnlab.errors import LayerError
from cnnlab.viz.activations import conv_layer, normalize_input, trace
from cnnlab.web.sources import Loaded

SHOWN_KINDS = {"torch.nn.modules.conv": "conv", "torch.nn.modules.pooling": "pool",
               "torch.nn.modules.activation": "activation", "torch.nn.modules.linear": "linear"}
MAX_VECTOR = 1024  # values of a fully connected layer's output sent to the page


def layer_kind(module: nn.Module) -> str | None:
    if any(True for _ in module.children()) or isinstance(module, nn.Identity):
        return None
    return SHOWN_KINDS.get(type(module).__module__)


def shown_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and layer_kind(m)}


def traced_forward(loaded: Loaded, digit: np.ndarray, names: list[str] | None = None):
    """(probabilities [C], {layer: (input, output)}) for one uint8 28x28 digit, in execution order: every shown
    layer, or the conv layers `names`."""
    model = loaded.model
    wanted = shown_layers(model) if names is None else dict(conv_layer(model, n) for n in names)
    x = normalize_input(digit, loaded.info.mean, loaded.info.std)
    with loaded.lock:
        logits, seen = trace(model, x, wanted)
    return logits[0].softmax(0), seen


def encode_maps(maps: torch.Tensor) -> tuple[str, float, float]:
    """Maps [K, H, W] as base64 uint8 scaled to the layer's [min, max], so maps of one layer compare."""
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else torch.zeros_like(maps)
    data = (scaled * 255).round().to(torch.uint8).numpy().tobytes()
    return base64.b64encode(data).decode(), low, high


def activations(loaded: Loaded, digit: np.ndarray, max_maps: int) -> dict:
    probabilities, seen = traced_forward(loaded, digit)
    modules = shown_layers(loaded.model)
    layers = []
    for name, (_, out) in seen.items():
        module = modules[name]
        layer = {"name": name, "type": type(module).__name__, "kind": layer_kind(module), "shape": list(out.shape)}
        if out.ndim == 3:
            shown = out[:max_maps]
            layer["maps"], layer["min"], layer["max"] = encode_maps(shown)
            layer["shown"] = len(shown)
        else:
            values = out.flatten()[:MAX_VECTOR]
            layer["values"] = [round(float(v), 5) for v in values]
            layer["shown"] = len(values)
        if isinstance(module, nn.Conv2d):
            layer["kernel"] = list(module.weight.shape)
        layers.append(layer)
    return {"classes": list(loaded.info.classes), "probabilities": [float(p) for p in probabilities],
            "layers": layers}


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
    name, conv = conv_layer(loaded.model, name)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise LayerError(f"layer {name!r}: only zero-padded convolutions with numeric padding are explained")
    _, seen = traced_forward(loaded, digit, [name])
    inp, out = seen[name]
    channels, height, width = out.shape
    if not (0 <= channel < channels and 0 <= y < height and 0 <= x < width):
        raise LayerError(f"layer {name!r}: channel {channel}, pixel ({y}, {x}) is outside its output "
                         f"{channels}x{height}x{width}")
    kh, kw = conv.kernel_size
    (sy, sx), (py, px), (dy, dx) = conv.stride, conv.padding, conv.dilation
    per_group = conv.in_channels // conv.groups
    first_in = channel // (conv.out_channels // conv.groups) * per_group
    padded = torch.nn.functional.pad(inp, (px, px, py, py))
    rows = torch.arange(kh) * dy + y * sy
    cols = torch.arange(kw) * dx + x * sx
    patch = padded[first_in:first_in + per_group][:, rows][:, :, cols]
    kernel = conv.weight.detach()[channel]
    products = patch * kernel
    bias = 0.0 if conv.bias is None else float(conv.bias.detach()[channel])
    sums = products.sum((1, 2))
    return {"layer": name, "channel": channel, "y": y, "x": x, "input_channels": list(range(first_in, first_in + per_group)),
            "patch": patch.tolist(), "kernel": kernel.tolist(), "channel_sums": sums.tolist(), "bias": bias,
            "sum": float(sums.sum()) + bias, "actual": float(out[channel, y, x])}


def convolve(image: np.ndarray, kernel: np.ndarray, padding: str) -> np.ndarray:
    """Cross-correlate (what CNN layers compute) a 2-D image with a 2-D kernel; `same` pads with zeros."""
    x = torch.as_tensor(image, dtype=torch.float32)[None, None]
    k = torch.as_tensor(kernel, dtype=torch.float32)[None, None]
    return torch.nn.functional.conv2d(x, k, padding=padding)[0, 0].numpy()
