"""The lecture's "Visualization" figure (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
2014): for features of each conv layer, the 9 images of a dataset that activate them most, each single activation
projected back to pixel space, beside the image patches (the feature's receptive field) that caused them.

The projection runs the layers backwards from one activation, all others zero:

- a max pooling is undone by unpooling: each value goes back to the position that won the max in the forward
  pass ("switches"), zeros elsewhere;
- a ReLU is applied again, to the signal going back (the deconvnet's rectification);
- a convolution is undone by the transposed convolution with the same filters (`conv_transpose2d`).

Guided backpropagation (Springenberg et al. 2015) differs only at the ReLU: the signal going back is kept where it
is positive *and* where the forward input was positive. Batch norm, dropout and local response normalization are
passed through (they do not move pixels). Works for nets that chain convolutions, ReLUs and max poolings:
simple-cnn, the VGG family, AlexNet, LeNet-style nets.
"""

from __future__ import annotations

import heapq
import textwrap
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.errors import LayerError
from cnnlab.models.layer_kinds import leaves
from cnnlab.models.receptive import field_box, receptive_fields

METHODS = ("deconvnet", "guided-backprop")
PASSED_THROUGH = (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.LocalResponseNorm, nn.Identity)


def chain(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in the order one forward pass calls them."""
    order: list[tuple[str, nn.Module]] = []
    handles = [m.register_forward_hook(lambda m, i, o, name=name: order.append((name, m)))
               for name, m in leaves(model)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


def layers_up_to(model: nn.Module, x: torch.Tensor, layer: str) -> list[tuple[str, nn.Module]]:
    """The chain of layers from the input to conv layer `layer`, checked to be one the projection can undo."""
    order = chain(model, x)
    names = [name for name, _ in order]
    if layer not in names or not isinstance(dict(order)[layer], nn.Conv2d):
        convs = [name for name, m in order if isinstance(m, nn.Conv2d)]
        raise LayerError(f"layer {layer!r}: not a conv layer of this model; its conv layers: {', '.join(convs)}")
    path = order[:names.index(layer) + 1]
    for name, module in path:
        if not isinstance(module, (nn.Conv2d, nn.ReLU, nn.MaxPool2d, *PASSED_THROUGH)):
            raise LayerError(f"layer {layer!r}: the way to it passes {name} ({type(module).__name__}); the deconvnet "
                             "undoes chains of convolutions, ReLUs and max poolings only")
    # The layers alone, one after the other, must compute what the model computes: a residual addition or a
    # parallel branch on the way (a ResNet's) would make the way back wrong.
    seen = {}

    def keep(module, inputs, output):  # a clone, and no return value: the in-place ReLU after it runs on its own
        seen.setdefault("out", output.clone())

    handle = dict(model.named_modules())[layer].register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    if not torch.allclose(forward(path, x[:1]).output, seen["out"], atol=1e-5, rtol=1e-4):
        raise LayerError(f"layer {layer!r}: the model does more than chain its layers on the way to it (a residual "
                         "or parallel branch); the deconvnet undoes plain chains only")
    return path


@dataclass
class Forward:
    """What the way back needs from the way forward: each layer's input, and each max pooling's switches."""
    inputs: list[torch.Tensor]
    switches: dict[int, torch.Tensor]
    output: torch.Tensor


def forward(path: list[tuple[str, nn.Module]], x: torch.Tensor) -> Forward:
    inputs, switches = [], {}
    with torch.no_grad():
        for index, (_, module) in enumerate(path):
            inputs.append(x)
            if isinstance(module, nn.ReLU):
                x = F.relu(x)  # never in place: the layer's input is kept for the way back
            elif isinstance(module, nn.MaxPool2d):
                x, switches[index] = F.max_pool2d(x, module.kernel_size, module.stride, module.padding,
                                                  module.dilation, module.ceil_mode, return_indices=True)
            else:
                x = module(x)
    return Forward(inputs, switches, x)


def project(path: list[tuple[str, nn.Module]], run: Forward, signal: torch.Tensor,
            method: str = "deconvnet") -> torch.Tensor:
    """`signal` (shaped as the last layer's output) taken back to the input's shape through `path`."""
    with torch.no_grad():
        for index in range(len(path) - 1, -1, -1):
            module, before = path[index][1], run.inputs[index]
            if isinstance(module, nn.Conv2d):
                signal = conv_back(module, signal, before.shape[-2:])
            elif isinstance(module, nn.ReLU):
                signal = signal.clamp(min=0)
                if method == "guided-backprop":
                    signal = signal * (before > 0)
            elif isinstance(module, nn.MaxPool2d):
                signal = F.max_unpool2d(signal, run.switches[index], module.kernel_size, module.stride,
                                        module.padding, output_size=before.shape[-2:])
    return signal


def conv_back(conv: nn.Conv2d, signal: torch.Tensor, size) -> torch.Tensor:
    """The transposed convolution with the conv's own filters, sized to the conv's input."""
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    kernel = conv.weight.shape[-2:]
    natural = [(signal.shape[2 + a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + 1
               for a in (0, 1)]
    extra = [size[a] - natural[a] for a in (0, 1)]  # a stride that did not divide the input evenly
    return F.conv_transpose2d(signal, conv.weight, None, stride, padding, tuple(extra), conv.groups, dilation)


@dataclass(frozen=True)
class Hit:
    value: float
    image: int
    y: int
    x: int


def top_activations(model: nn.Module, layer: str, images: torch.Tensor, features: list[int], k: int = 9,
                    batch_size: int = 500) -> dict[int, list[Hit]]:
    """The `k` images (of normalized `images`) whose strongest activation of each feature is highest, with where it
    is: streamed in batches, so that a whole test set fits in a little memory."""
    path = layers_up_to(model, images[:1], layer)
    best: dict[int, list] = {f: [] for f in features}
    for start in range(0, len(images), batch_size):
        out = forward(path, images[start:start + batch_size]).output[:, features]  # [B, F, H, W]
        flat = out.flatten(2)
        values, positions = flat.max(2)
        for column, feature in enumerate(features):
            for row in range(len(values)):
                item = (float(values[row, column]), -(start + row), int(positions[row, column]))
                if len(best[feature]) < k:
                    heapq.heappush(best[feature], item)
                elif item > best[feature][0]:
                    heapq.heapreplace(best[feature], item)
    width = out.shape[-1]
    return {f: [Hit(v, -i, p // width, p % width) for v, i, p in sorted(best[f], reverse=True)] for f in features}


def projections(model: nn.Module, layer: str, images: torch.Tensor, feature: int, hits: list[Hit],
                method: str = "deconvnet") -> list[np.ndarray]:
    """Each hit's single activation of `feature` projected back to its image's pixels: [H, W] per hit (the input
    channels summed)."""
    path = layers_up_to(model, images[:1], layer)
    out = []
    for hit in hits:
        run = forward(path, images[hit.image:hit.image + 1])
        signal = torch.zeros_like(run.output)
        signal[0, feature, hit.y, hit.x] = run.output[0, feature, hit.y, hit.x]
        out.append(project(path, run, signal, method)[0].sum(0).numpy())
    return out


def boxes(model: nn.Module, layer: str, shape: tuple[int, int, int], hits: list[Hit]) -> list[tuple[int, ...]]:
    """The input box each hit's unit sees (its receptive field, clipped to the image): (top, bottom, left, right)."""
    field = receptive_fields(model, shape)[layer]
    return [field_box(field, hit.y, hit.x, shape[1], shape[2]) for hit in hits]


def crop(images: list[np.ndarray], where: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Each [H, W] (or [C, H, W]: the first channel) image cut to its box."""
    return [(image[0] if image.ndim == 3 else image)[top:bottom, left:right]
            for image, (top, bottom, left, right) in zip(images, where)]


def plot_layer(ax_rows, projected: dict[int, list[np.ndarray]], crops: dict[int, list[np.ndarray]],
               hits: dict[int, list[Hit]]) -> None:
    """One row per feature: its 3x3 projections, then its 3x3 patches (the paper's layout)."""
    for axes, feature in zip(ax_rows, projected):
        proj_ax, patch_ax = axes
        proj_ax.imshow(_tile([_signed(p) for p in projected[feature]]), cmap=_with_gaps("RdBu_r"), vmin=-1, vmax=1)
        patch_ax.imshow(_tile([c / 255 for c in crops[feature]]), cmap=_with_gaps("gray"), vmin=0, vmax=1)
        proj_ax.set_ylabel(f"feature {feature}\nmax {hits[feature][0].value:.2g}", fontsize=8)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])


def _signed(projection: np.ndarray) -> np.ndarray:
    """Scaled to [-1, 1] by its largest magnitude, so that 0 stays white whatever the feature's strength."""
    top = np.abs(projection).max()
    return projection / top if top > 0 else projection


def _with_gaps(name: str):
    # the gaps between tiles (and the margins of fields clipped by the border) in light grey
    return plt.get_cmap(name).with_extremes(bad="#d9d9d9")


def _tile(images: list[np.ndarray]) -> np.ndarray:
    """Up to 9 images (of possibly different sizes) in a 3x3 grid, each centred in a cell the size of the
    largest, with a one-pixel gap (NaN: drawn as the colour map's "bad" colour)."""
    side = max(max(i.shape) for i in images)
    grid = np.full((3 * (side + 1) - 1, 3 * (side + 1) - 1), np.nan, dtype=np.float32)
    for n, image in enumerate(images[:9]):
        row, col = divmod(n, 3)
        top, left = row * (side + 1) + (side - image.shape[0]) // 2, col * (side + 1) + (side - image.shape[1]) // 2
        grid[top:top + image.shape[0], left:left + image.shape[1]] = image
    return grid


def figure(sections: list[dict], title: str):
    """`sections`: per layer {"layer", "projected", "crops", "hits", "field"}: a block of rows per layer."""
    rows = sum(len(s["projected"]) for s in sections)
    fig, axes = plt.subplots(rows, 2, figsize=(5.2, 2.3 * rows + 0.8), squeeze=False)
    row = 0
    for section in sections:
        count = len(section["projected"])
        plot_layer(axes[row:row + count], section["projected"], section["crops"], section["hits"])
        axes[row, 0].set_title(f"{section['layer']}: projections", fontsize=9, loc="left")
        axes[row, 1].set_title(f"patches ({section['field']} px)", fontsize=9, loc="left")
        row += count
    title = textwrap.fill(title, 70)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.25 + 0.16 * title.count("\n")) / fig.get_figheight()))  # room for it
    return fig
