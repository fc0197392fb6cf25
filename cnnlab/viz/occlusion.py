"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): slide a square of constant colour over the input and
record, for each position, what the classifier then says.

Three maps, as the paper's figure: (a) the probability of the explained class, which drops where the square
hides what the decision rests on; (b) the most probable class, which shows what the net sees instead; (c) the
total activation of one feature map of a chosen layer: the one that responds most to the unoccluded input.

The square's colour is given in the model's normalized input space: 0 is the dataset's mean pixel, so that the
occluder carries no more information than "an average pixel". Positions are evaluated in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.errors import ConfigError
from cnnlab.viz.activations import conv_layer, conv_layers
from cnnlab.viz.pictures import lightness, picture
from cnnlab.viz.saliency import HEAT, OUTLINE


@dataclass
class Occlusion:
    """Maps over occluder positions [rows, cols]; square `r, c` covers input rows `starts[r]`..+size, columns
    `starts[c]`..+size."""
    probability: np.ndarray  # of `target` with the square there
    top_class: np.ndarray  # the most probable class with the square there
    activation: np.ndarray  # total rectified activation of feature map `channel` of `layer`
    starts: np.ndarray
    size: int
    target: int
    layer: str
    channel: int
    unoccluded_probability: float
    unoccluded_activation: float


def occluded_inputs(x: torch.Tensor, size: int, stride: int, fill) -> tuple[torch.Tensor, np.ndarray]:
    """(every occluded copy of the input [1, C, H, W] as one batch [P, C, H, W] in row-major position order, the
    squares' first rows/columns). The last position always touches the bottom-right edge, so every pixel is
    covered at least once. `fill`: a number, or one per channel ([C, 1, 1])."""
    side = x.shape[-1]
    if x.shape[-2] != side:
        raise ConfigError(f"occlusion needs a square input, got {tuple(x.shape[-2:])}")
    if not 1 <= size <= side or stride < 1:
        raise ConfigError(f"--size must be 1..{side} and --stride at least 1, got {size} and {stride}")
    starts = np.unique(np.r_[np.arange(0, side - size + 1, stride), side - size])
    batch = x.repeat(len(starts) ** 2, 1, 1, 1)
    for i, (r, c) in enumerate((r, c) for r in starts for c in starts):
        batch[i, :, r:r + size, c:c + size] = fill
    return batch, starts


@torch.no_grad()
def occlusion(model: nn.Module, x: torch.Tensor, target: int, size: int = 8, stride: int = 2, fill: float = 0.0,
              layer: str | None = None, batch_size: int = 256, probabilities=None) -> Occlusion:
    """Occlusion maps of a classifier for one input [1, C, H, W]; `layer` defaults to the last conv layer;
    `probabilities` turns the model's output batch into class probabilities [N, K] (default: the softmax of
    class scores; a model that outputs more than class scores says how, cnnlab.tasks.Task.probabilities).

    A conv's output is rectified before it is summed, since what the next layer receives from these nets is the
    ReLU of it; the feature map followed is the one with the largest rectified response to the unoccluded input.
    """
    layers = conv_layers(model)
    name, module = conv_layer(model, layer or (layers[-1][0] if layers else None))
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, output: seen.append(F.relu(output)))
    probabilities = probabilities or (lambda output: output.softmax(1))
    try:
        logits = model(x)
        if logits.ndim != 2:
            raise ConfigError("occlusion explains a classifier's probability; this model labels every pixel "
                              "(use `cnnlab show saliency`)")
        reference_probabilities = probabilities(logits)
        if not 0 <= target < reference_probabilities.shape[1]:
            raise ConfigError(f"--target {target}: classes are 0..{reference_probabilities.shape[1] - 1}")
        channel = int(seen[0][0].amax((1, 2)).argmax())
        reference = (float(reference_probabilities[0, target]), float(seen[0][0, channel].sum()))
        occluded, starts = occluded_inputs(x, size, stride, fill)
        seen.clear()
        probs = torch.cat([probabilities(model(chunk)) for chunk in occluded.split(batch_size)])
    finally:
        handle.remove()
    grid = (len(starts), len(starts))
    activation = torch.cat(seen)[:, channel].sum((1, 2))
    return Occlusion(probs[:, target].view(grid).numpy(), probs.argmax(1).view(grid).numpy(),
                     activation.view(grid).numpy(), starts, size, target, name, channel, *reference)


def plot_occlusion(image: np.ndarray, result: Occlusion, classes: list[str], caption: str, fill_pixel: float):
    """Input with one occluder (of colour `fill_pixel`, in the image's units) | (a) probability of the class |
    (b) most probable class | (c) activation of the followed feature map. Each map's cell is drawn at the centre
    of its square, with the input's outline; the margin narrower than half a square is no square's centre."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.9))
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    side = image.shape[-1]
    shown, corner = np.array(image, dtype=np.float32), result.starts[len(result.starts) // 3]
    shown[..., corner:corner + result.size, corner:corner + result.size] = fill_pixel
    shown, cmap = picture(shown)
    if cmap is None:  # colour: imshow takes floats in [0, 1]
        axes[0].imshow(np.clip(shown / 255, 0, 1))
    else:
        axes[0].imshow(shown, cmap=cmap, vmin=min(float(image.min()), float(np.min(fill_pixel))),
                       vmax=max(float(image.max()), float(np.max(fill_pixel))))
    axes[0].add_patch(plt.Rectangle((corner - 0.5,) * 2, result.size, result.size, fill=False, ls="--",
                                    color=OUTLINE))
    axes[0].set_title(f"input with one {result.size}x{result.size} occluder (dashed)", fontsize=9)
    # cell centres are start + (size - 1) / 2; stretch the grid so that each cell spans the square's centre
    centres = result.starts + (result.size - 1) / 2
    step = (centres[-1] - centres[0]) / max(len(centres) - 1, 1)
    extent = (centres[0] - step / 2, centres[-1] + step / 2, centres[-1] + step / 2, centres[0] - step / 2)
    name = classes[result.target]
    panels = [
        (result.probability, HEAT, (0, 1), f"(a) p({name}) with the square there\n(unoccluded "
         f"{result.unoccluded_probability:.0%})", f"probability of {name}"),
        (result.top_class, plt.get_cmap("tab10", len(classes)), (-0.5, len(classes) - 0.5),
         "(b) most probable class with the square there", "class"),
        (result.activation, HEAT, (0, max(float(result.activation.max()), 1e-12)),
         f"(c) {result.layer} map {result.channel}: total activation\n(unoccluded "
         f"{result.unoccluded_activation:.3g})", "sum of the rectified map"),
    ]
    for ax, (values, cmap, (low, high), title, label) in zip(axes[1:], panels):
        mapped = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, extent=extent, interpolation="nearest")
        ax.set_xlim(-0.5, side - 0.5), ax.set_ylim(side - 0.5, -0.5)
        outline = lightness(image)
        if outline.max() > outline.min():
            ax.contour(outline, levels=[(float(outline.min()) + float(outline.max())) / 2], colors=OUTLINE,
                       linewidths=0.8)
        ax.set_facecolor("0.85")
        ax.set_title(title, fontsize=9)
        bar = fig.colorbar(mapped, ax=ax, fraction=0.046, pad=0.03, label=label)
        if values is result.top_class:
            bar.set_ticks(range(len(classes)), labels=classes)
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    return fig
