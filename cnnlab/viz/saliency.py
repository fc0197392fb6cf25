"""Which pixels a prediction depends on: gradient saliency (Simonyan et al. 2014) and Grad-CAM
(Selvaraju et al. 2017), for any PyTorch classifier."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab.viz  # noqa: F401  (selects the headless backend)
from cnnlab.errors import ConfigError, LayerError
from cnnlab.viz.activations import conv_layers


def gradient_saliency(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """|d logit_target / d input|, the maximum over input channels: [H, W]."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x)[0, target].backward()
    return x.grad[0].abs().amax(0).numpy()


ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)


def _is_activation(module: nn.Module) -> bool:
    # LeNet-5's ScaledTanh and similar home-made activations count too, by name.
    return isinstance(module, ACTIVATIONS) or any(w in type(module).__name__ for w in ("ReLU", "Tanh"))


def default_cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The first activation run after the last conv layer (the last conv layer itself if none follows).

    Grad-CAM weighs *rectified* maps: on a conv's raw output, negative maps times negative weights light up the
    background. For a ResNet this is the last block's output ReLU, where Grad-CAM is usually applied.
    """
    order: list[str] = []
    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(leaves)
    convs = [i for i, n in enumerate(order) if isinstance(modules[n], nn.Conv2d)]
    if not convs:
        raise ConfigError("the model has no convolution layers: Grad-CAM needs feature maps")
    last = convs[-1]
    return next((n for n in order[last + 1:] if _is_activation(modules[n])), order[last])


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None) -> tuple[np.ndarray, str]:
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
        model(x.detach())[0, target].backward()
    finally:
        handle.remove()
    maps, grads = store["maps"][0].detach(), store["maps"].grad[0]
    if maps.ndim != 3:
        raise ConfigError(f"layer {name!r} outputs {tuple(maps.shape)}, not feature maps [C, H, W]")
    weights = grads.mean(dim=(1, 2))  # global-average-pooled gradients: one weight per channel
    cam = F.relu((weights[:, None, None] * maps).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).numpy(), name


def plot_saliency(image: np.ndarray, saliency: np.ndarray, cam: np.ndarray, cam_layer: str, caption: str):
    """Input | gradient saliency | saliency over the input | Grad-CAM over the input, with colour bars."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for a in axes:
        a.set_xticks([]), a.set_yticks([])
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input", fontsize=9)
    sal = saliency / (saliency.max() or 1.0)
    s_image = axes[1].imshow(sal, cmap="hot", vmin=0, vmax=1)
    axes[1].set_title("gradient saliency |∂ logit / ∂ pixel|", fontsize=9)
    fig.colorbar(s_image, ax=axes[1], fraction=0.046, pad=0.03, label="relative to max")
    axes[2].imshow(image, cmap="gray")
    axes[2].imshow(sal, cmap="hot", alpha=0.55, vmin=0, vmax=1)
    axes[2].set_title("saliency over the input", fontsize=9)
    axes[3].imshow(image, cmap="gray")
    c_image = axes[3].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[3].set_title(f"Grad-CAM at {cam_layer}", fontsize=9)
    fig.colorbar(c_image, ax=axes[3], fraction=0.046, pad=0.03, label="relative importance")
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    return fig
