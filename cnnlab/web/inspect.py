"""Look inside any model the explorer shows: every layer's output for one input, then what its task draws of the
output (a classifier's class probabilities, a segmentation's class map and score maps: cnnlab.tasks), a layer's
kernels, and the multiply-and-sum behind one output pixel of a convolution.

Layers are found generically, by forward hooks on the model's leaf modules that `layer_kind` names
(convolutions, poolings, activations, batch norms, flatten, fully connected layers, ...), so ResNets and Inception
nets work as well as `nn.Sequential` stacks. Each row says which row it reads and how its units connect to that
row's (`links`), for the page's lines between maps and its highlights of what feeds a unit.

The answer for a drawing must arrive and paint at once on any model, so maps travel as bytes (base64 uint8 on the
layer's own scale) and a layer's maps larger than THUMB_SIDE are sent as area-averaged thumbnails: the page asks for
a map's full resolution, exactly, when it is opened (`/api/formula` sends it).
"""

from __future__ import annotations

import base64

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import LayerError
from cnnlab.models.layer_kinds import layer_kind
from cnnlab.viz.activations import conv_layer, normalize_input, trace
from cnnlab.web import formulas
from cnnlab.web.sources import Loaded

MAX_VECTOR = 1024  # values of a fully connected layer's output sent to the page
THUMB_SIDE = 48  # longest side of a map in the overview: the page draws thumbnails about 44 pixels tall
# The overview's maps of one answer stay within this many bytes: a deep model (ResNet-18: 67 rows) shows fewer
# maps per row, at least MIN_MAPS, and the page asks for a row's others when it is opened (`only`).
OVERVIEW_BYTES = 384 * 1024
MIN_MAPS = 4
STRONGEST = 8  # inputs a fully connected unit highlights: those whose products w·x are largest in magnitude
STRONGEST_UNITS = 256  # ... for layers of at most this many values shown (AlexNet's 4096 are not drawn one by one)


def encode_maps(maps: torch.Tensor, low: float | None = None, high: float | None = None) -> tuple[str, float, float]:
    """Maps [K, H, W] as base64 uint8 scaled to [low, high] (default: their own min and max), so maps of one
    layer compare."""
    low = float(maps.min()) if low is None else low
    high = float(maps.max()) if high is None else high
    scaled = ((maps - low) / (high - low)).clamp(0, 1) if high > low else torch.zeros_like(maps)
    data = (scaled * 255).round().to(torch.uint8).numpy().tobytes()
    return base64.b64encode(data).decode(), low, high


def thumbnails(maps: torch.Tensor) -> torch.Tensor:
    """Maps [K, H, W] no larger than THUMB_SIDE a side: each thumbnail pixel the average of the pixels it covers."""
    height, width = maps.shape[1:]
    if max(height, width) <= THUMB_SIDE:
        return maps
    scale = THUMB_SIDE / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.adaptive_avg_pool2d(maps[None], size)[0]


def activations(loaded: Loaded, digit: np.ndarray, max_maps: int, only: str | None = None) -> dict:
    """Every shown layer's output in execution order, with a residual block's addition (the input of its last
    activation) as a row of its own just before that activation; with `only`, that row alone (all its maps up to
    `max_maps`: a layer opened on the page)."""
    model = loaded.model
    modules = formulas.shown_layers(model)
    x = normalize_input(digit, loaded.info.mean, loaded.info.std)
    with loaded.lock:
        logits, seen = trace(model, x, modules)
    task = loaded.task
    task.checked(logits, loaded.source, 1)
    class_scores = task.class_scores(logits)[0]
    traced = formulas.traced_rows(seen, model)
    reads = formulas.feeders(traced, x[0])
    outputs = {name: out for name, _, out in traced}
    classes = list(loaded.info.classes)
    if only is None:
        max_maps = _maps_within_budget(traced, max_maps)
    layers = []
    for name, inp, out in traced:
        if only is not None and name != only:
            continue
        module = modules.get(name)
        kind = layer_kind(module) if module is not None else "residual"
        layer = _layer(name, type(module).__name__ if module is not None else "residual addition", kind, out,
                       max_maps)
        layer["reads"] = reads[name]
        source = x[0] if reads[name] == ["input"] else outputs.get(reads[name][0]) if reads[name] else None
        layer["links"] = _links(loaded, name, module, kind, inp, out, source, layer)
        if isinstance(module, nn.Conv2d):
            layer["kernel"] = list(module.weight.shape)
        if out.ndim == 1 and out.shape == class_scores.shape and torch.equal(out, class_scores):
            layer["labels"] = classes  # the logits: one per class, named
        layers.append(layer)
    if only is not None and not layers:
        raise LayerError(f"layer {only!r}: no such row; the rows: {', '.join(n for n, _, _ in traced)}")
    return {"classes": classes, "task": task.name, "layers": layers, **task.explorer(logits[0], loaded.info)}


def _maps_within_budget(traced: list, max_maps: int) -> int:
    """The most maps per row (up to `max_maps`, at least MIN_MAPS) whose thumbnails fit OVERVIEW_BYTES."""
    sizes = [thumbnails(out[:1]).numel() for _, _, out in traced if out.ndim == 3]
    counts = [out.shape[0] for _, _, out in traced if out.ndim == 3]
    def total(maps: int) -> int:
        return sum(size * min(maps, count) for size, count in zip(sizes, counts))

    while max_maps > MIN_MAPS and total(max_maps) > OVERVIEW_BYTES:
        max_maps -= 1
    return max_maps


def _layer(name: str, type_name: str, kind: str, out: torch.Tensor, max_maps: int) -> dict:
    layer = {"name": name, "type": type_name, "kind": kind, "shape": list(out.shape)}
    if out.ndim == 3:
        shown = out[:max_maps]
        small = thumbnails(shown)
        layer["maps"], layer["min"], layer["max"] = encode_maps(small, float(shown.min()), float(shown.max()))
        layer["shown"] = len(shown)
        if small.shape != shown.shape:
            layer["thumbnail"] = list(small.shape[1:])  # [h, w] of each map as sent
    else:
        values = out.flatten()[:MAX_VECTOR]
        layer["values"] = [round(float(v), 5) for v in values]
        layer["shown"] = len(values)
    return layer


def _links(loaded: Loaded, name: str, module: nn.Module | None, kind: str, inp: torch.Tensor | None,
           out: torch.Tensor, source: torch.Tensor | None, layer: dict) -> dict | None:
    """How the units of row `name` connect to those of the row it reads (`source`, its output):
    - "same": map k reads map k (activations, poolings, batch norms, residual additions);
    - "dense": every map reads every map (a convolution without groups or missing kernels);
    - "table": map k reads the maps listed in table[k] (groups, LeNet-5's partial C3, ...);
    - "window": map k reads the maps k - size // 2 ... k + (size - 1) // 2 (local response normalization);
    - "flatten": value i is pixel i of the maps laid end to end;
    - "strongest": unit j reads every input, and strongest[j] lists the STRONGEST whose w·x are largest (None for
      a layer of more than STRONGEST_UNITS values shown)."""
    if source is None:
        return None
    if kind in ("activation", "pool", "batchnorm", "residual"):
        return {"type": "same"} if out.ndim == 3 and source.ndim == 3 and len(out) == len(source) else None
    if kind == "lrn":
        return {"type": "window", "size": module.size}
    if kind == "flatten":
        return {"type": "flatten"}
    if kind in ("conv", "deconv"):
        if loaded.links.get(name) is None:
            # conv_call runs the layer: outside the lock, the hooks of another request's forward pass (trace) would
            # record this call as that layer's output, and move the layer to the end of that request's rows
            with loaded.lock:
                loaded.links[name] = _kernel_table(module, kind, inp)
        return loaded.links[name]
    if kind == "linear":
        x = inp.reshape(-1).double()
        if x.numel() != module.in_features or layer["shown"] > STRONGEST_UNITS:
            return None
        products = module.weight.detach()[:layer["shown"]].double() * x
        strongest = products.abs().topk(min(STRONGEST, len(x)), dim=1).indices
        return {"type": "strongest", "strongest": strongest.tolist()}
    return None


def _kernel_table(module: nn.Module, kind: str, inp: torch.Tensor) -> dict:
    """Which input maps each output map of a (transposed) convolution reads: those whose kernel is not all zero, in
    its group."""
    if kind == "conv":
        call = formulas.conv_call(module, inp)
        weight, groups = call["weight"].detach(), call["groups"]
        used = weight.abs().sum((2, 3)) > 0  # [out, in / groups]
        per_out = weight.shape[0] // groups
    else:  # ConvTranspose2d: weight [in, out / groups, kh, kw]
        weight, groups = module.weight.detach(), module.groups
        per_out = weight.shape[1]
        used = (weight.abs().sum((2, 3)) > 0).reshape(groups, -1, per_out).transpose(1, 2)
        used = used.reshape(-1, weight.shape[0] // groups)
    per_in = used.shape[1]
    if groups == 1 and bool(used.all()):
        return {"type": "dense"}
    table = [[k // per_out * per_in + i for i in range(per_in) if used[k, i]] for k in range(used.shape[0])]
    return {"type": "table", "table": table}


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
