"""Activation maximization: the input that makes one feature map of a layer respond most (Erhan et al. 2009;
Simonyan et al. 2014; Olah et al., "Feature Visualization", 2017).

Gradient ascent on the input alone gives high-frequency noise that excites a feature without looking like
anything. Three regularizers make the pictures readable:
- the image is parameterized by its 2-D Fourier coefficients, scaled by 1/frequency, so that a gradient step
  moves low frequencies more than high ones (a preconditioner toward smooth images);
- random jitter: the image is rolled by a few pixels before each step, so that no pattern works only at one
  exact position;
- a penalty on the image's L2 norm and total variation, so that values stay in the range of real inputs and
  neighbouring pixels agree.
The objective is the mean of the rectified feature map over its positions: what the next layer receives. The
mean of the raw map would be a poor one: for a first layer, a linear function of the pixels, it is maximized by
a flat image of the sign of the kernel's sum; rectified, only the positions where the pattern matches count,
so the optimum repeats the pattern.
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
from cnnlab.viz.activations import conv_layer


@dataclass(frozen=True)
class DreamSettings:
    steps: int = 128
    lr: float = 0.05
    jitter: int = 2  # pixels the image is rolled by at most, each way, each step
    l2: float = 1e-3  # weight of the mean squared pixel
    tv: float = 5e-2  # weight of the mean absolute difference between neighbours
    init_std: float = 0.01  # the random start: small, so that the features, not the start, shape the picture
    seed: int = 0


def _spectrum_scale(height: int, width: int) -> torch.Tensor:
    """1 / frequency for each coefficient of `torch.fft.rfft2` (the constant term: the lowest frequency's)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return 1.0 / torch.sqrt(fx ** 2 + fy ** 2).clamp(min=1.0 / max(height, width))


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean |difference| between vertical and horizontal neighbours, per image [N]."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean((1, 2, 3))
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean((1, 2, 3)))


def feature_activation(model: nn.Module, layer: str, x: torch.Tensor, leak: float = 0.0) -> torch.Tensor:
    """Mean rectified activation of every feature map of conv `layer` for a batch: [N, C]. `leak`: the slope
    kept below zero (a leaky ReLU), so that a map negative everywhere still has a gradient."""
    _, module = conv_layer(model, layer)
    seen = []
    # of a clone: the model's own in-place ReLU overwrites the map that the leaky one needs for its gradient
    handle = module.register_forward_hook(lambda _m, _i, output: seen.append(F.leaky_relu(output.clone(), leak)))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0].mean((2, 3))


@torch.enable_grad()  # the images need gradients even when called under no_grad
def dream(model: nn.Module, layer: str, channels: list[int], shape: tuple[int, int, int],
          settings: DreamSettings = DreamSettings(), progress=None) -> torch.Tensor:
    """One optimized input [len(channels), C, H, W] (normalized input space) per channel of conv `layer`, all
    optimized together as one batch; `progress(step)` is called after each step."""
    name, module = conv_layer(model, layer)
    if not channels or min(channels) < 0 or max(channels) >= module.out_channels:
        raise ConfigError(f"layer {name!r} has feature maps 0..{module.out_channels - 1}, asked for {channels}")
    if settings.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {settings.steps}")
    model.eval()
    # only the images are optimized: the weights need no gradients (given back as they were)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        return _ascend(model, name, channels, shape, settings, progress)
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _ascend(model, name, channels, shape, settings, progress) -> torch.Tensor:
    generator = torch.Generator().manual_seed(settings.seed)
    c, h, w = shape
    scale = _spectrum_scale(h, w)
    start = torch.randn((len(channels), c, h, w), generator=generator) * settings.init_std
    spectrum = (torch.fft.rfft2(start) / scale).detach().requires_grad_(True)
    optimizer = torch.optim.Adam([spectrum], lr=settings.lr)
    picked = torch.tensor(channels)
    rows = torch.arange(len(channels))
    for step in range(settings.steps):
        images = torch.fft.irfft2(spectrum * scale, s=(h, w))
        dy, dx = torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=generator).tolist()
        activation = feature_activation(model, name, torch.roll(images, (dy, dx), (2, 3)), 0.1)[rows, picked]
        penalty = settings.l2 * images.pow(2).mean((1, 2, 3)) + settings.tv * total_variation(images)
        optimizer.zero_grad()
        (penalty - activation).sum().backward()
        optimizer.step()
        if progress:
            progress(step + 1)
    return torch.fft.irfft2(spectrum * scale, s=(h, w)).detach()


def plot_dream(images: torch.Tensor, channels: list[int], activations: torch.Tensor, title: str):
    """A grid of the optimized inputs, each titled with its channel and the mean activation it reaches; each
    image on its own grey scale (its own minimum to maximum), since the features' ranges differ."""
    count = len(channels)
    cols = min(count, 8)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, channel, value in zip(axes.flat, images, channels, activations):
        picture = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
        if picture.ndim == 3:
            picture = (picture - picture.min()) / (np.ptp(picture) or 1.0)
        ax.imshow(picture, cmap="gray")
        ax.set_title(f"map {channel}: {value:.3g}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
