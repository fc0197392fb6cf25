"""The formula behind one output value of any layer, written out with the model's own numbers.

`explain(loaded, image, layer, index)` runs the model once, records the layer's input and output, and returns the
terms that make the value at `index` (a [channel, row, column] of a map, or [i] of a vector): the window of a
pooling, x with the slope of an activation, the running statistics of a batch norm, the weighted sum of a fully
connected layer, ... with `result`, the formula's answer computed from those terms in float64, and `actual`, the
value the model computed. The tests check that the two agree to 1e-4 for every layer kind of every registered
model.

Two rows of the explorer are not modules: `softmax` (the model's output, normalized) and `<block>.add`, a residual
block's addition of its two branches, just before the block's last activation.

A map's index may be `[channel]` alone: the view then opens where the lecture's point shows best (`opening`), an
activation on a negative input (f(x) = 0 for a ReLU), any other map at its strongest value. Each map's answer also
carries the maps the view draws, exactly (`maps`: the layer's output channel, and the map(s) it reads), packed as
base64 float32 (`pack`).
"""

from __future__ import annotations

import base64
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.errors import LayerError
from cnnlab.models.layer_kinds import layer_kind
from cnnlab.models.receptive import field_box, receptive_fields
from cnnlab.scratch.windows import pair
from cnnlab.viz.activations import normalize_input, trace
from cnnlab.web.sources import Loaded

ADD = ".add"  # suffix of a residual block's addition row
SOFTMAX = "softmax"
# A fully connected layer's sum: its largest products are listed one by one until they make this share of the
# sum of all products' magnitudes (or TOP_TERMS_MAX of them); what is left is stated per sign.
TOP_SHARE, TOP_TERMS_MIN, TOP_TERMS_MAX = 0.8, 5, 12
DRAWN_INPUT = 65_536  # a convolution's input maps are sent for its sliding-kernel animation up to this many values
# Element-wise functions: (formula as the page writes it, f(x, slope)).
ACTIVATIONS = {
    "ReLU": ("max(0, x)", lambda x, a: max(0.0, x)),
    "ReLU6": ("min(max(0, x), 6)", lambda x, a: min(max(0.0, x), 6.0)),
    "LeakyReLU": ("x if x ≥ 0, else a·x", lambda x, a: x if x >= 0 else a * x),
    "PReLU": ("x if x ≥ 0, else a·x (a learned)", lambda x, a: x if x >= 0 else a * x),
    "Tanh": ("tanh(x)", lambda x, a: math.tanh(x)),
    "Sigmoid": ("1 / (1 + e^−x)", lambda x, a: 1 / (1 + math.exp(-x))),
    "ScaledTanh": ("1.7159 · tanh(2/3 · x)", lambda x, a: 1.7159 * math.tanh(2 / 3 * x)),  # LeNet-5's
}


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """cnnlab's ResNet blocks that add a shortcut (plain nets' blocks do not)."""
    return {name: m for name, m in model.named_modules() if getattr(m, "residual", False) and hasattr(m, "downsample")}


def addition_rows(seen: dict, model: nn.Module) -> dict[str, str]:
    """{block.add: the block's last activation}: the activation's input is the sum of the two branches."""
    rows = {}
    for block in residual_blocks(model):
        acts = [n for n in seen if n.rpartition(".")[0] == block and layer_kind(model.get_submodule(n)) == "activation"]
        if acts:
            rows[block + ADD] = acts[-1]
    return rows


def _forward(loaded: Loaded, image: np.ndarray, wanted: dict[str, nn.Module]):
    x = normalize_input(image, loaded.info.mean, loaded.info.std)
    with loaded.lock:
        logits, seen = trace(loaded.model, x, wanted)
    return logits[0], seen


def _check_index(name: str, shape, index: list[int]) -> tuple[int, ...]:
    if len(index) != len(shape) or any(not 0 <= i < s for i, s in zip(index, shape)):
        raise LayerError(f"layer {name!r}: index {list(index)} is outside its output "
                         f"{'x'.join(map(str, shape))}")
    return tuple(index)


def explain(loaded: Loaded, image: np.ndarray, name: str, index: list[int]) -> dict:
    """The terms that make output[index] of layer `name` (see the module docstring)."""
    model = loaded.model
    if name == SOFTMAX:  # a classifier's output, or the classes of one pixel of a segmentation's
        output, _ = _forward(loaded, image, {})
        logits = loaded.task.class_scores(output[None])[0]  # the class scores, where the output holds more
        if logits.ndim == 3 and len(index) == 1:  # a class's score map opens at its highest score
            index = opening("scores", logits, logits, index[0])
        answer = _softmax(logits, _check_index(name, logits.shape, index))
        if logits.ndim == 3:
            answer["maps"] = {"after": pack(logits[answer["index"][0]])}
        return answer
    if name.endswith(ADD) and name[:-len(ADD)] in residual_blocks(model):
        return _residual(loaded, image, name[:-len(ADD)], index)
    module = dict(model.named_modules()).get(name) if name else None
    kind = layer_kind(module) if module is not None else None
    if kind is None:
        shown = ", ".join(n for n, m in model.named_modules() if n and layer_kind(m))
        what = "no such layer" if module is None else f"a {type(module).__name__} has no formula view"
        raise LayerError(f"layer {name!r}: {what}; the layers: {shown}, {SOFTMAX}")
    wanted = shown_layers(model) if kind == "linear" else {name: module}  # a sum over maps is grouped by map
    _, seen = _forward(loaded, image, wanted)
    inp, out = seen[name]
    if out.ndim == 3 and len(index) == 1:
        index = opening(kind, inp, out, index[0])
    at = _check_index(name, out.shape, index)
    with loaded.lock:  # a conv layer is run again to see its kernel; no other request's hooks may see that
        terms = EXPLAIN[kind](module, inp, out, at)
    answer = {"layer": name, "type": type(module).__name__, "kind": kind, "index": list(at),
              "actual": float(out[at]), **terms}
    if kind == "linear":
        answer.update(_by_map(seen, name, inp, module, at))
    if out.ndim == 3:
        answer["field"] = _field(loaded, name, at, image)
        answer["maps"] = {"after": pack(out[at[0]]), **_before(kind, inp, at), **terms.pop("maps", {})}
    return answer


def shown_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The leaf layers the explorer shows, by name (every module `layer_kind` names)."""
    return {name: m for name, m in model.named_modules() if name and layer_kind(m)}


def pack(values: torch.Tensor) -> dict:
    """A map (or any tensor) exactly and compactly: its shape and its values as base64 little-endian float32."""
    data = values.detach().float().contiguous().numpy().astype("<f4").tobytes()
    return {"shape": list(values.shape), "data": base64.b64encode(data).decode()}


def opening(kind: str, inp: torch.Tensor, out: torch.Tensor, channel: int) -> list[int]:
    """Where map `channel`'s view opens: an activation on its most negative input (a ReLU's zero, the flat tail of
    a tanh), when the map has one; any other map, and an activation without negatives, at its largest value."""
    if not 0 <= channel < out.shape[0]:
        return [channel, 0, 0]  # _check_index names the problem
    if kind == "activation" and inp.shape == out.shape and float(inp[channel].min()) < 0:
        flat = int(inp[channel].argmin())
    else:
        flat = int(out[channel].argmax())
    return [channel, *divmod(flat, out.shape[2])]


def _before(kind: str, inp: torch.Tensor, at: tuple[int, ...]) -> dict:
    """The map before the layer that its view draws: the input channel an activation, a pooling or a
    normalization is applied to (a convolution sends its own, `_conv`)."""
    return {"before": pack(inp[at[0]])} if kind in ("activation", "pool", "batchnorm", "lrn") else {}


def _field(loaded: Loaded, name: str, at: tuple[int, ...], image: np.ndarray) -> dict | None:
    """The input pixels output pixel `at` of layer `name` sees: its receptive field, clipped to the image
    ([H, W] or [C, H, W])."""
    if loaded.fields is None:
        with loaded.lock:  # the receptive-field walk runs the model with hooks, like any forward pass
            loaded.fields = receptive_fields(loaded.model, image.shape if image.ndim == 3 else (1, *image.shape))
    field = loaded.fields.get(name)
    if field is None:
        return None
    top, bottom, left, right = field_box(field, at[1], at[2], *image.shape[-2:])
    return {"box": [top, bottom, left, right], "size": list(field.size), "jump": list(field.jump),
            "whole": field.whole}


# ---- one function per kind: (module, its input, its output, index) -> the terms -------------------------------

class _ConvCall(TorchFunctionMode):
    """Records the arguments of the F.conv2d a layer runs: any convolution layer (nn.Conv2d, LeNet-5's partial C3
    with its gathered dense kernel) is explained with the kernel it really uses."""

    call: inspect.BoundArguments | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.conv2d:
            self.call = inspect.signature(_conv2d_signature).bind(*args, **(kwargs or {}))
            self.call.apply_defaults()
        return func(*args, **(kwargs or {}))


def _conv2d_signature(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv2d's parameters (a builtin, whose signature inspect cannot read)."""


def conv_call(module: nn.Module, inp: torch.Tensor) -> dict:
    """The arguments of the F.conv2d that `module` runs on `inp` [C, H, W]: input, weight, bias, stride, padding,
    dilation, groups."""
    with torch.no_grad(), _ConvCall() as capture:
        module(inp[None])
    if capture.call is None:
        raise LayerError(f"a {type(module).__name__} runs no 2-D convolution; it has no formula view")
    return capture.call.arguments


def _conv(module, inp, out, at) -> dict:
    call = conv_call(module, inp)
    if isinstance(call["padding"], str):
        raise LayerError("only convolutions with numeric padding are explained")
    # the input as the convolution received it: a non-zero padding mode has already been applied
    received, weight, groups = call["input"][0], call["weight"].detach(), call["groups"]
    channel, y, x = at
    kh, kw = weight.shape[2:]
    (sy, sx), (py, px), (dy, dx) = (pair(call[k], k) for k in ("stride", "padding", "dilation"))
    per_group = weight.shape[1]
    first_in = channel // (weight.shape[0] // groups) * per_group
    padded = F.pad(received, (px, px, py, py))
    rows = torch.arange(kh) * dy + y * sy
    cols = torch.arange(kw) * dx + x * sx
    patch = padded[first_in:first_in + per_group][:, rows][:, :, cols]
    kernel = weight[channel]
    bias = 0.0 if call["bias"] is None else float(call["bias"].detach()[channel])
    sums = (patch.double() * kernel.double()).sum((1, 2))
    answer = {"input_channels": list(range(first_in, first_in + per_group)), "patch": patch.tolist(),
              "kernel": kernel.tolist(), "channel_sums": sums.tolist(), "bias": bias,
              "rows": (rows - py).tolist(), "cols": (cols - px).tolist(), "result": float(sums.sum()) + bias,
              "stride": [sy, sx], "padding": [py, px], "dilation": [dy, dx]}
    maps = received[first_in:first_in + per_group]
    if maps.numel() <= DRAWN_INPUT:  # the maps the kernel slides over, for the view's animation
        answer["maps"] = {"before": pack(maps)}
    return answer


def _deconv(module: nn.ConvTranspose2d, inp, out, at) -> dict:
    """A transposed convolution spreads each input pixel over the output: input (iy, ix) adds value x kernel to
    the outputs (iy s − p + ky d, ix s − p + kx d). Output (y, x) is the sum of what lands on it, plus the bias."""
    if isinstance(module.padding, str):
        raise LayerError("only transposed convolutions with numeric padding are explained")
    channel, y, x = at
    (kh, kw), (sy, sx), (py, px), (dy, dx) = module.kernel_size, module.stride, module.padding, module.dilation
    out_per_group = module.out_channels // module.groups
    per_group = module.in_channels // module.groups
    first_in = channel // out_per_group * per_group
    weight = module.weight.detach()  # [in, out / groups, kh, kw]
    _, height, width = inp.shape
    taps_y = [(ky, (y + py - ky * dy) // sy) for ky in range(kh)
              if (y + py - ky * dy) % sy == 0 and 0 <= (y + py - ky * dy) // sy < height]
    taps_x = [(kx, (x + px - kx * dx) // sx) for kx in range(kw)
              if (x + px - kx * dx) % sx == 0 and 0 <= (x + px - kx * dx) // sx < width]
    terms = []
    for c in range(first_in, first_in + per_group):
        for ky, iy in taps_y:
            for kx, ix in taps_x:
                value, w = float(inp[c, iy, ix]), float(weight[c, channel % out_per_group, ky, kx])
                terms.append({"channel": c, "y": iy, "x": ix, "ky": ky, "kx": kx, "value": value, "weight": w,
                              "product": value * w})
    bias = 0.0 if module.bias is None else float(module.bias.detach()[channel])
    answer = {"stride": [sy, sx], "padding": [py, px], "dilation": [dy, dx], "terms": terms, "bias": bias,
              "result": math.fsum(t["product"] for t in terms) + bias}
    if terms:  # how the largest contribution's input pixel spreads over the output
        top = max(terms, key=lambda t: abs(t["product"]))
        kernel = weight[top["channel"], channel % out_per_group]
        answer["spread"] = {"channel": top["channel"], "y": top["y"], "x": top["x"], "value": top["value"],
                            "kernel": kernel.tolist(), "products": (kernel * top["value"]).tolist(),
                            "top": top["y"] * sy - py, "left": top["x"] * sx - px}
    return answer


def _activation(module, inp, out, at) -> dict:
    name = type(module).__name__
    if name not in ACTIVATIONS:
        raise LayerError(f"a {name} has no formula view (known: {', '.join(ACTIVATIONS)})")
    formula, function = ACTIVATIONS[name]
    slope = None
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
    elif isinstance(module, nn.PReLU):
        weights = module.weight.detach()
        slope = float(weights[at[0] if len(weights) > 1 else 0])
    x = float(inp[at])
    return {"function": name, "formula": formula, "x": x, "slope": slope, "result": function(x, slope),
            "curve": _curve(module, inp, at)}


def _curve(module: nn.Module, inp: torch.Tensor, at: tuple[int, ...], points: int = 121) -> dict:
    """f over the range of the input (with 0), computed by the layer itself on the channel of `at` (dim 1, as
    PyTorch counts channels): the plot the view draws, with the layer's learned slope if it has one."""
    channel = at[0]
    values = inp[channel] if inp.ndim == 3 else inp
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    if high - low < 1e-6:
        low, high = low - 1, high + 1
    xs = torch.linspace(low, high, points)
    grid = torch.zeros(1, inp.shape[0], points, *([1] if inp.ndim == 3 else []))
    grid[0, channel] = xs.view(points, *([1] if inp.ndim == 3 else []))
    with torch.no_grad():
        ys = module(grid)[0, channel].reshape(-1)
    return {"x": xs.tolist(), "y": ys.tolist()}


def _window(start: int, size: int, step: int, limit: int) -> list[int | None]:
    """The input positions a window reads along one axis; None where it falls into the padding."""
    return [i if 0 <= i < limit else None for i in range(start, start + size * step, step)]


def _pool(module, inp, out, at) -> dict:
    channel, y, x = at
    _, height, width = inp.shape
    _, out_h, out_w = out.shape
    name = type(module).__name__
    extra = {}
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # adaptive windows: rows floor(y H / OH) to ceil((y + 1) H / OH)
        top, bottom = y * height // out_h, -(-(y + 1) * height // out_h)
        left, right = x * width // out_w, -(-(x + 1) * width // out_w)
        rows, cols = list(range(top, bottom)), list(range(left, right))
        op = "max" if isinstance(module, nn.AdaptiveMaxPool2d) else "avg"
        divisor = len(rows) * len(cols)
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        (kh, kw), (sy, sx), (py, px), (dy, dx) = (pair(getattr(module, k, 1), k)
                                                  for k in ("kernel_size", "stride", "padding", "dilation"))
        rows, cols = _window(y * sy - py, kh, dy, height), _window(x * sx - px, kw, dx, width)
        op = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        if op == "avg":
            # PyTorch divides by the window clipped to the padded input, or by the real pixels in it
            top, left = y * sy - py, x * sx - px
            covered = (min(top + kh, height + py) - top) * (min(left + kw, width + px) - left)
            real = sum(r is not None for r in rows) * sum(c is not None for c in cols)
            divisor = module.divisor_override or (covered if module.count_include_pad else real)
    elif name in ("Subsampling", "SumPool2d"):  # LeNet-5's trained 2x2 sums; the experiments' sum pooling
        k = getattr(module, "kernel_size", 2)
        rows, cols = _window(y * k, k, 1, height), _window(x * k, k, 1, width)
        op = "sum"
        if name == "Subsampling":
            extra = {"weight": float(module.weight.detach()[channel]), "bias": float(module.bias.detach()[channel])}
    else:
        raise LayerError(f"a {name} has no formula view")
    values = [[None if r is None or c is None else float(inp[channel, r, c]) for c in cols] for r in rows]
    real = [v for row in values for v in row if v is not None]
    if op == "max":
        result = max(real)
    elif op == "avg":
        extra["divisor"] = divisor
        result = math.fsum(real) / divisor
    else:
        result = math.fsum(real)
        if extra:
            result = result * extra["weight"] + extra["bias"]
    return {"op": op, "rows": rows, "cols": cols, "window": values, "result": result, **extra}


def _batchnorm(module: nn.modules.batchnorm._BatchNorm, inp, out, at) -> dict:
    if module.training or module.running_mean is None:
        raise LayerError("only a batch norm in inference mode (with running statistics) is explained")
    c = at[0]
    mean, var = float(module.running_mean[c]), float(module.running_var[c])
    gamma = 1.0 if module.weight is None else float(module.weight.detach()[c])
    beta = 0.0 if module.bias is None else float(module.bias.detach()[c])
    x = float(inp[at])
    normalized = (x - mean) / math.sqrt(var + module.eps)
    return {"x": x, "mean": mean, "var": var, "eps": module.eps, "gamma": gamma, "beta": beta,
            "normalized": normalized, "result": gamma * normalized + beta}


def _lrn(module: nn.LocalResponseNorm, inp, out, at) -> dict:
    """b_c = a_c / (k + α/n Σ a_c'²)^β over the n channels around c (PyTorch's centring)."""
    c, n = at[0], module.size
    channels = [i for i in range(c - n // 2, c + (n - 1) // 2 + 1) if 0 <= i < inp.shape[0]]
    values = [float(inp[(i, *at[1:])]) for i in channels]
    denominator = (module.k + module.alpha / n * math.fsum(v * v for v in values)) ** module.beta
    return {"channels": channels, "values": values, "x": float(inp[at]), "size": n, "alpha": module.alpha,
            "beta": module.beta, "k": module.k, "denominator": denominator, "result": float(inp[at]) / denominator}


def _flatten(module, inp, out, at) -> dict:
    """Value i of the vector is map i // (H W), row (i // W) % H, column i % W of the maps before: the view
    draws that map with the pixel marked."""
    source = [int(i) for i in np.unravel_index(at[0], tuple(inp.shape))]
    answer = {"from_shape": list(inp.shape), "from": source, "result": float(inp[tuple(source)])}
    if inp.ndim == 3:
        answer["maps"] = {"before": pack(inp[source[0]])}
    return answer


def _linear(module: nn.Linear, inp, out, at) -> dict:
    """y = Σ w_i x_i + b, decomposed so that nothing hides: the sums of the positive and of the negative products,
    the largest products one by one (until they make TOP_SHARE of all the magnitudes), and what the others add,
    per sign."""
    j = at[-1]
    x = inp.reshape(-1, module.in_features)[0 if inp.ndim == 1 else at[0]].double()
    weights = module.weight.detach()[j].double()
    products = x * weights
    magnitudes = products.abs()
    order = magnitudes.argsort(descending=True)
    covered = magnitudes[order].cumsum(0) / max(float(magnitudes.sum()), 1e-300)
    count = int((covered < TOP_SHARE).sum()) + 1
    count = max(TOP_TERMS_MIN, min(TOP_TERMS_MAX, count, len(order)))
    listed = order[:count]
    top = [{"index": int(i), "x": float(x[i]), "w": float(weights[i]), "product": float(products[i])}
           for i in listed]
    rest = torch.ones_like(products, dtype=torch.bool)
    rest[listed] = False
    bias = 0.0 if module.bias is None else float(module.bias.detach()[j])
    positive, negative = products > 0, products < 0
    return {"inputs": module.in_features, "top": top, "bias": bias,
            "positive": math.fsum(products[positive].tolist()), "negative": math.fsum(products[negative].tolist()),
            "positive_count": int(positive.sum()), "negative_count": int(negative.sum()),
            "rest": {"positive": math.fsum(products[rest & positive].tolist()),
                     "negative": math.fsum(products[rest & negative].tolist()),
                     "positive_count": int((rest & positive).sum()), "negative_count": int((rest & negative).sum())},
            "result": math.fsum(products.tolist()) + bias}


def _by_map(seen: dict, name: str, inp: torch.Tensor, module: nn.Module, at: tuple[int, ...]) -> dict:
    """When a fully connected layer reads maps laid out as a vector (after a flatten), its sum grouped by input
    map: what each map adds, its positive and negative parts apart."""
    x = inp.reshape(-1)
    before = list(seen)[:list(seen).index(name)]
    source = next((n for n in reversed(before) if seen[n][1].ndim == 3 and seen[n][1].numel() == x.numel()
                   and torch.equal(seen[n][1].reshape(-1), x)), None)
    if source is None:
        return {}
    maps = seen[source][1].shape[0]
    products = (x.double() * module.weight.detach()[at[-1]].double()).reshape(maps, -1)
    return {"from": source, "from_shape": list(seen[source][1].shape),
            "by_map": [{"map": k, "positive": float(row.clamp(min=0).sum()), "negative": float(row.clamp(max=0).sum())}
                       for k, row in enumerate(products)]}


def traced_rows(seen: dict, model: nn.Module | None) -> list[tuple[str, torch.Tensor | None, torch.Tensor]]:
    """The explorer's rows in execution order as (name, input, output): each traced layer, and a residual block's
    addition (`<block>.add`: no input of its own, the sum as output) just before the block's last activation."""
    additions = {act: row for row, act in addition_rows(seen, model).items()} if model is not None else {}
    answer = []
    for name, (inp, out) in seen.items():
        if name in additions:
            answer.append((additions[name], None, inp))
        answer.append((name, inp, out))
    return answer


def feeders(traced: list[tuple[str, torch.Tensor | None, torch.Tensor]],
            image: torch.Tensor | None = None) -> dict[str, list[str]]:
    """{row: the rows it reads}: a layer reads the latest row before it whose output is its input (the same
    numbers, in any shape: a fully connected layer reads flattened maps), or the model's `image`; a residual
    addition reads the block's main branch and the row its shortcut carries (the sum minus the main branch). A
    layer fed by something that is no row (a concatenation) reads none."""
    answer = {}
    for position, (name, inp, out) in enumerate(traced):
        earlier = traced[:position][::-1]
        if inp is None:  # an addition: the main branch is the block's last batch norm, the shortcut the rest
            block = name[:-len(ADD)]
            main = next((r for r in earlier if r[0].startswith(block + ".") and "downsample" not in r[0]), None)
            if main is None:
                answer[name] = []
                continue
            shortcut = out - main[2]
            other = next((r[0] for r in earlier if r[2].shape == shortcut.shape and r is not main
                          and torch.allclose(r[2], shortcut, atol=1e-5)), None)
            answer[name] = [main[0]] + ([other] if other else [])
            continue
        same = lambda tensor: tensor.numel() == inp.numel() and torch.equal(tensor.reshape(-1), inp.reshape(-1))
        source = next((r[0] for r in earlier if same(r[2])), None)
        answer[name] = [source] if source else (["input"] if image is not None and same(image) else [])
    return answer


def _softmax(logits: torch.Tensor, at: tuple[int, ...]) -> dict:
    """e^z / Σ e^z over the classes: of a classifier's logits [K], or of one pixel's scores [K, H, W][:, y, x]."""
    if logits.ndim == 3:
        pixel = _softmax(logits[:, at[1], at[2]], at[:1])
        return {**pixel, "index": list(at), "pixel": list(at[1:])}
    z = logits.double()
    shift = float(z.max()) if float(z.max()) > 50 else 0.0  # e^z overflows float64 near 700; keep it readable
    exps = (z - shift).exp()
    total = float(exps.sum())
    return {"layer": SOFTMAX, "type": "Softmax", "kind": "softmax", "index": list(at), "logits": z.tolist(),
            "shift": shift, "exps": exps.tolist(), "sum": total, "result": float(exps[at]) / total,
            "actual": float(logits.softmax(0)[at])}


def _residual(loaded: Loaded, image: np.ndarray, block_name: str, index: list[int]) -> dict:
    """main branch (the block's last batch norm) + shortcut (the block's input, or its downsample's output) = the
    input of the block's last activation."""
    block = loaded.model.get_submodule(block_name)
    inside = {f"{block_name}.{n}": m for n, m in block.named_modules()
              if n and not n.startswith("downsample") and layer_kind(m) in ("batchnorm", "activation")}
    wanted = {block_name: block, **inside}
    if block.downsample is not None:
        wanted[f"{block_name}.downsample"] = block.downsample
    _, seen = _forward(loaded, image, wanted)
    order = list(seen)
    last_bn = [n for n in order if n in inside and layer_kind(inside[n]) == "batchnorm"][-1]
    last_act = addition_rows(seen, loaded.model)[block_name + ADD]
    total = seen[last_act][0]
    if len(index) == 1:
        index = opening("residual", total, total, index[0])
    at = _check_index(block_name + ADD, total.shape, index)
    main = float(seen[last_bn][1][at])
    if block.downsample is None:
        shortcut, via = float(seen[block_name][0][at]), "identity: the block's input"
    else:
        shortcut = float(seen[f"{block_name}.downsample"][1][at])
        via = f"{block_name}.downsample ({type(block.downsample).__name__})"
    answer = {"layer": block_name + ADD, "type": "residual addition", "kind": "residual", "index": list(at),
              "main": main, "main_from": last_bn, "shortcut": shortcut, "shortcut_from": via,
              "then": last_act, "result": main + shortcut, "actual": float(total[at])}
    answer["field"] = _field(loaded, last_act, at, image)
    answer["maps"] = {"after": pack(total[at[0]])}
    return answer


EXPLAIN = {"conv": _conv, "deconv": _deconv, "activation": _activation, "pool": _pool, "batchnorm": _batchnorm,
           "lrn": _lrn, "flatten": _flatten, "linear": _linear}
