"""Which pixels a prediction depends on: gradient saliency (Simonyan et al. 2014), guided backpropagation
(Springenberg et al. 2015), integrated gradients (Sundararajan et al. 2017) and Grad-CAM (Selvaraju et al. 2017),
for any PyTorch classifier or segmentation model.

A classifier's score for class `target` is its logit. A segmentation model (logits [1, K, H, W]) has one logit per
pixel: its score is the sum of the target class's logits over a region: the one given (a boolean mask [H, W] or a
box (top, left, bottom, right), bottom and right excluded), else the pixels the model assigns to that class (the
whole image if it assigns none), so the maps explain the region the model labels `target`."""

from __future__ import annotations

import contextlib

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.errors import ConfigError, LayerError
from cnnlab.models import layer_kinds
from cnnlab.models.receptive import Field, receptive_fields
from cnnlab.viz.activations import conv_layers
from cnnlab.viz.pictures import lightness, picture


Region = torch.Tensor | tuple[int, int, int, int] | None


def segmentation_region(output: torch.Tensor, target: int, region: Region = None) -> torch.Tensor:
    """The pixels [H, W] whose `target` logits a segmentation's score sums; see the module's docstring."""
    if isinstance(region, tuple):
        top, left, bottom, right = region
        box = torch.zeros(output.shape[-2:], dtype=torch.bool)
        box[top:bottom, left:right] = True
        region = box
    if region is not None:
        if region.shape != output.shape[-2:] or not region.any():
            raise ConfigError(f"the region must be a non-empty mask of shape {tuple(output.shape[-2:])}")
        return region.bool()
    labelled = output[0].argmax(0) == target
    return labelled if labelled.any() else torch.ones_like(labelled)


def target_scores(output: torch.Tensor, target: int, region: Region = None) -> torch.Tensor:
    """The scalar to explain for each image of a batch [N]: a classifier's logit, or a segmentation model's
    logits of `target` summed over its region, taken from the batch's first image unless given."""
    if output.ndim == 2:
        return output[:, target]
    return output[:, target][:, segmentation_region(output, target, region)].sum(1)


def target_score(output: torch.Tensor, target: int, region: Region = None) -> torch.Tensor:
    """The scalar to explain for one image [1, ...]; see `target_scores`."""
    return target_scores(output, target, region)[0]


def _input_with_grad(x: torch.Tensor) -> torch.Tensor:
    # Gradients must flow even where every parameter before a layer is frozen (a transfer run's
    # feature extractor): a leaf that requires grad makes every activation computed from it require grad.
    return x.detach().clone().requires_grad_(True)


class _GuidedReLU(torch.autograd.Function):
    """Applied to a ReLU's output: the identity going forward; going back it lets only positive gradients
    through (guided backpropagation's rule; the ReLU itself still masks where its input was negative)."""

    @staticmethod
    def forward(ctx, output):
        return output.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


@contextlib.contextmanager
def _guided(model: nn.Module):
    # A forward hook that replaces the output works for in-place ReLUs too, where a backward hook would not.
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(lambda _m, _i, output: _GuidedReLU.apply(output)) for m in relus]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def gradient_saliency(model: nn.Module, x: torch.Tensor, target: int, region: Region = None,
                      guided: bool = False) -> np.ndarray:
    """|d score_target / d input|, the maximum over input channels: [H, W]; see `target_score`. `guided`:
    guided backpropagation, where every `nn.ReLU` also stops negative gradients."""
    x = _input_with_grad(x)
    model.zero_grad(set_to_none=True)
    with _guided(model) if guided else contextlib.nullcontext():
        target_score(model(x), target, region).backward()
    return x.grad[0].abs().amax(0).numpy()


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int, baseline: torch.Tensor | None = None,
                         steps: int = 32, region: Region = None, batch_size: int = 32) -> np.ndarray:
    """Integrated gradients [C, H, W], signed: (x - baseline) times the mean gradient of the score along the
    straight path from `baseline` (default zeros: in normalized inputs, the dataset's mean image) to `x`,
    integrated with the midpoint rule over `steps` points, evaluated `batch_size` at a time.

    Completeness: the attributions sum to score(x) - score(baseline), up to the integration error, which shrinks
    as `steps` grows. A segmentation's region is fixed at `x`'s, so that every point scores the same pixels."""
    if steps < 1:
        raise ConfigError(f"integrated gradients need at least 1 step, got {steps}")
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    with torch.no_grad():
        output = model(x)
    if output.ndim == 4:
        region = segmentation_region(output, target, region)
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    total = torch.zeros_like(x[0])
    for chunk in alphas.split(batch_size):
        path = _input_with_grad(baseline + chunk[:, None, None, None] * (x - baseline))
        model.zero_grad(set_to_none=True)
        target_scores(model(path), target, region).sum().backward()
        total += path.grad.sum(0)
    return ((x - baseline)[0] * total / steps).numpy()


def default_cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """A classifier's first activation run after its last conv layer (the last conv layer itself if none
    follows); a segmentation model's last activation (its last conv layer if it has none).

    Grad-CAM weighs *rectified* maps: on a conv's raw output, negative maps times negative weights light up the
    background. For a ResNet this is the last block's output ReLU, where Grad-CAM is usually applied. A
    segmentation model's last convs compute class scores (an FCN's skip scores run after its head), so its maps
    are the last rectified features before them: an FCN's fc7, a U-Net's last decoder block.
    """
    order: list[str] = []
    leaves = layer_kinds.leaves(model)
    handles = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(leaves)
    convs = [i for i, n in enumerate(order) if isinstance(modules[n], nn.Conv2d)]
    if not convs:
        raise ConfigError("the model has no convolution layers: Grad-CAM needs feature maps")
    last = convs[-1]
    if output.ndim == 4:
        return next((n for n in reversed(order) if layer_kinds.layer_kind(modules[n]) == "activation"), order[last])
    return next((n for n in order[last + 1:] if layer_kinds.layer_kind(modules[n]) == "activation"), order[last])


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None,
             region: Region = None) -> tuple[np.ndarray, str]:
    """(Grad-CAM heat map [H, W] in [0, 1] at input resolution, the layer used); see `default_cam_layer`."""
    name = layer or default_cam_layer(model, x)
    modules = dict(model.named_modules())
    if name not in modules:
        raise LayerError(f"layer {name!r}: no such layer; its conv layers: {', '.join(n for n, _ in conv_layers(model))}")
    store = {}

    def keep(module, inputs, output):
        # Later layers get a clone, so an in-place op after this layer cannot overwrite the maps we keep.
        output.retain_grad()
        store["maps"] = output
        return output.clone()

    handle = modules[name].register_forward_hook(keep)
    try:
        model.zero_grad(set_to_none=True)
        target_score(model(_input_with_grad(x)), target, region).backward()
    finally:
        handle.remove()
    maps, grads = store["maps"][0].detach(), store["maps"].grad[0]
    if maps.ndim != 3:
        raise ConfigError(f"layer {name!r} outputs {tuple(maps.shape)}, not feature maps [C, H, W]")
    weights = grads.mean(dim=(1, 2))  # global-average-pooled gradients: one weight per channel
    cam = F.relu((weights[:, None, None] * maps).sum(0))
    cam = onto_input(cam, receptive_fields(model, tuple(x.shape[1:])).get(name), tuple(x.shape[-2:]))
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).numpy(), name


def onto_input(cam: torch.Tensor, field: Field | None, size: tuple[int, int]) -> torch.Tensor:
    """A layer's map [h, w] at input resolution [H, W]. Grad-CAM stretches the map over the input; but a model
    that pads its input to a multiple of its stride (an FCN, a U-Net: 84 columns to 96) computes maps that reach
    past the input's edge, and stretched they would sit up to a stride off. So where the layer's receptive field
    says the map covers more than the input (n x jump pixels from start - jump / 2), the map is upsampled to what
    it covers and the input's part cut out: what the model padded is cropped, then the rest resized."""
    if field is not None and not field.whole:
        covered = [round(n * jump) for n, jump in zip(cam.shape, field.jump)]
        origin = [round(start - jump / 2) for start, jump in zip(field.start, field.jump)]
        if all(o <= 0 for o in origin) and any(c + o > s for c, o, s in zip(covered, origin, size)) and \
                all(c + o >= s for c, o, s in zip(covered, origin, size)):
            up = F.interpolate(cam[None, None], size=covered, mode="bilinear", align_corners=False)[0, 0]
            return up[-origin[0]:-origin[0] + size[0], -origin[1]:-origin[1] + size[1]]
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


HEAT = "inferno"  # perceptually uniform: brightness alone orders the values (jet's bands suggest false edges)
OUTLINE = "cyan"  # no colour of inferno: the outline never hides in the map


def _heat(fig, ax, image: np.ndarray, heat: np.ndarray, title: str, label: str) -> None:
    """`heat` in [0, 1] drawn opaque, so that its colours are exactly its colour bar's, with the input's outline
    on top (a map blended into the image would show colours the bar does not have)."""
    mapped = ax.imshow(heat, cmap=HEAT, vmin=0, vmax=1)
    image = lightness(image)
    if image.max() > image.min():
        ax.contour(image, levels=[(float(image.min()) + float(image.max())) / 2], colors=OUTLINE, linewidths=0.8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(mapped, ax=ax, fraction=0.046, pad=0.03, label=label)


def plot_saliency(image: np.ndarray, saliency: np.ndarray, cam: np.ndarray, cam_layer: str, caption: str,
                  integrated: tuple[np.ndarray, str] | None = None):
    """Input | gradient saliency | [integrated gradients] | Grad-CAM, the maps with the input's outline and a
    colour bar. `integrated`: (signed attributions [C, H, W], what the baseline is), drawn as their magnitude."""
    panels = 3 + (integrated is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.7 * panels - 0.1, 3.6))
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    shown, cmap = picture(image)
    axes[0].imshow(shown, cmap=cmap)
    axes[0].set_title("input", fontsize=9)
    _heat(fig, axes[1], image, saliency / (saliency.max() or 1.0), "gradient saliency |∂ score / ∂ pixel|",
          "relative to its maximum")
    if integrated is not None:
        attributions, baseline = integrated
        magnitude = np.abs(attributions.sum(0))  # a pixel's channels add up, as in the completeness sum
        _heat(fig, axes[2], image, magnitude / (magnitude.max() or 1.0),
              f"integrated gradients |attribution|, sum {attributions.sum():.3g}\nfrom {baseline}",
              "relative to its maximum")
    _heat(fig, axes[-1], image, cam, f"Grad-CAM at {cam_layer}", "relative importance")
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    return fig


def plot_saliency_map(image: np.ndarray, heat: np.ndarray, method: str, caption: str):
    """Input | one map of `plot_saliency`'s: gradient saliency or Grad-CAM [H, W], or integrated gradients' signed
    attributions [C, H, W] (drawn as their magnitude), each relative to its maximum."""
    if heat.ndim == 3:
        heat = np.abs(heat.sum(0))  # a pixel's channels add up, as in the completeness sum
    fig, axes = plt.subplots(1, 2, figsize=(7.3, 3.6))
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    shown, cmap = picture(image)
    axes[0].imshow(shown, cmap=cmap)
    axes[0].set_title("input", fontsize=9)
    _heat(fig, axes[1], image, heat / (heat.max() or 1.0), method, "relative to its maximum")
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    return fig
