"""Receptive fields: which input pixels each layer's output pixel sees, from the layers' parameters.

For one spatial axis a layer's receptive field is three numbers (Araujo et al., "Computing receptive fields of
convolutional neural networks", Distill 2019): its **size** r in input pixels, its **jump** j (how far apart, in
input pixels, two neighbouring output pixels look: the product of the strides so far) and its **start**, the
centre of output pixel 0's field in input coordinates (pixel centres at 0.5, 1.5, ...; a negative start means
the field reaches into the zero padding). A convolution or pooling with kernel k, dilation d, stride s and padding
p maps (r, j, start) to

    k' = d (k - 1) + 1,   r + (k' - 1) j,   j s,   start + ((k' - 1) / 2 - p) j.

The rule is applied along the model's autograd graph (any model: residual additions and concatenations take the
largest field of their inputs), built on the meta device so that nothing is computed; a fully connected layer
or a global pooling sees the whole input. Output pixel (y, x) of a layer looks at input rows
start + y j - r / 2 to start + y j + r / 2 (clipped to the image): `field_box` gives that box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.complexity import _counted_modules, _example_input, post_order
from cnnlab.scratch.windows import pair


@dataclass(frozen=True)
class Field:
    size: tuple[float, float]  # r per axis (height, width), in input pixels
    jump: tuple[float, float]  # j per axis
    start: tuple[float, float]  # centre of output pixel (0, 0)'s field
    whole: bool = False  # sees the whole input (after a fully connected layer or a global pooling)

    def describe(self) -> str:
        """'5x5 /2' (size, jump), or 'all' for a layer that sees the whole input."""
        if self.whole:
            return "all"
        (rh, rw), (jh, jw) = self.size, self.jump
        size = f"{rh:g}" if rh == rw else f"{rh:g}x{rw:g}"
        jump = f"{jh:g}" if jh == jw else f"{jh:g}x{jw:g}"
        return f"{size} /{jump}"


INPUT = Field((1, 1), (1, 1), (0.5, 0.5))


def _window(field: Field, kernel, stride, padding, dilation, transposed: bool = False) -> Field:
    """A convolution or pooling; `transposed`: a transposed convolution (learned up-sampling), whose output
    pixels are s times denser and each see ceil(k'/s) input pixels of the layer before."""
    size, jump, start = [], [], []
    for k, st, p, d, r, j, s in zip(pair(kernel, "kernel"), pair(stride, "stride"), pair(padding, "padding"),
                                    pair(dilation, "dilation"), field.size, field.jump, field.start):
        k = d * (k - 1) + 1  # the dilated kernel's extent
        if transposed:
            size.append(r + (math.ceil(k / st) - 1) * j)
            jump.append(j / st)
            start.append(s + (p - (k - 1) / 2) * j / st)
        else:
            size.append(r + (k - 1) * j)
            jump.append(j * st)
            start.append(s + ((k - 1) / 2 - p) * j)
    return Field(tuple(size), tuple(jump), tuple(start), field.whole)


def _step(node, inputs: list[Field], whole_input: Field) -> Field:
    """The field of `node`'s output from its inputs' fields."""
    field = max(inputs, key=lambda f: (f.whole, f.size))  # additions, concatenations: the largest field
    name = type(node).__name__
    if name == "ConvolutionBackward0":
        weight = node._saved_weight.shape
        return _window(field, weight[2:], node._saved_stride, node._saved_padding, node._saved_dilation,
                       transposed=bool(node._saved_transposed))
    if name in ("MaxPool2DWithIndicesBackward0", "AvgPool2DBackward0"):
        dilation = getattr(node, "_saved_dilation", 1)
        return _window(field, node._saved_kernel_size, node._saved_stride or node._saved_kernel_size,
                       node._saved_padding, dilation)
    if name == "SliceBackward0" and node._saved_step > 1 and node._saved_dim in (2, 3, -1, -2):
        # x[..., ::s] keeps every s-th pixel (ResNet's option-A shortcut): the fields are s times further apart
        axis = 0 if node._saved_dim in (2, -2) else 1
        jump, start = list(field.jump), list(field.start)
        start[axis] += (node._saved_start or 0) * jump[axis]
        jump[axis] *= node._saved_step
        return Field(field.size, tuple(jump), tuple(start), field.whole)
    if name in ("AddmmBackward0", "MmBackward0", "MeanBackward1", "AdaptiveAvgPool2DBackward0",
                "AdaptiveMaxPool2DBackward0"):
        if name.startswith("Adaptive"):
            height, width = node._saved_self.shape[-2:] if hasattr(node, "_saved_self") else (0, 0)
            out = getattr(node, "_saved_output_size", None)
            if out is not None and tuple(out) == (height, width):
                return field  # an adaptive pooling to the size it already has: nothing pooled
        return Field(whole_input.size, field.jump, field.start, whole=True)
    return field


def receptive_fields(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Field]:
    """{layer name: the field of its output}, for every counted layer (a layer called more than once keeps its
    last call)."""
    return {name: field for name, field in fields_per_call(model, input_shape) if field is not None}


def fields_per_call(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, Field | None]]:
    """(layer name, the field of its output) for every call of every counted layer, in execution order: the rows
    of `complexity.profile` (None where the output is not an image-shaped function of the input)."""
    outputs: list[tuple[str, object]] = []

    def hook(name):
        def keep(module, inputs, output):
            outputs.append((name, output))
        return keep

    handles = [m.register_forward_hook(hook(name)) for name, m in _counted_modules(model)]
    was_training = model.training
    x = _example_input(model, input_shape, requires_grad=True)
    try:
        model.eval()
        result = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    result = result[0] if isinstance(result, tuple) else result
    whole = Field(tuple(float(s) for s in input_shape[1:]), (1, 1), (input_shape[1] / 2, input_shape[2] / 2), True)
    fields: dict = {}
    for node in post_order(result.grad_fn):  # each node after the ones it depends on
        if type(node).__name__ == "AccumulateGrad":
            fields[node] = INPUT if node.variable is x else None  # the input, or a parameter
            continue
        known = [fields[p] for p, _ in node.next_functions if p is not None and fields.get(p) is not None]
        fields[node] = _step(node, known, whole) if known else None
    # a layer whose output the prediction does not use (an auxiliary head in eval mode) has no field here
    return [(name, fields.get(output.grad_fn) if isinstance(output, torch.Tensor) else None)
            for name, output in outputs]


def field_box(field: Field, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), end-exclusive, of the input pixels output pixel (y, x) sees, clipped to the
    image."""
    if field.whole:
        return 0, height, 0, width
    box = []
    for index, limit in ((y, height), (x, width)):
        axis = len(box) // 2
        centre = field.start[axis] + index * field.jump[axis]
        low = math.floor(centre - field.size[axis] / 2 + 1e-9)
        high = math.ceil(centre + field.size[axis] / 2 - 1e-9)
        box += [max(0, low), min(limit, high)]
    return tuple(box)
