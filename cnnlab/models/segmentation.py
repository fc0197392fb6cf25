"""Segmentation networks that upsample with learned transposed convolutions ("deconvolution").

- FCN-32s, FCN-16s, FCN-8s (Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
  Segmentation", 2015) on a small VGG-style backbone of five conv+pool stages. FCN-32s upsamples the stride-32
  class scores in one step; FCN-16s first fuses them with scores from pool4 (stride 16), FCN-8s also with pool3
  (stride 8). Every upsampling is a ConvTranspose2d initialized to bilinear interpolation and then learned; the
  skip scores start at zero, so each finer net starts out computing exactly what the coarser one computes.
- U-Net (Ronneberger, Fischer & Brox, 2015): a contracting path, an expanding path of 2x2 up-convolutions, and
  the contracting path's features concatenated at each scale.

All are fully convolutional: any input size works. Inputs whose sides are not a multiple of the total stride are
zero-padded at the bottom and right and the scores cropped back, so the output is [N, classes, H, W] for an
input [N, C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.registry import register_model

# (output channels of each conv) per stage; each stage ends in a 2x2 max-pool, as VGG's configuration tables.
FCN_BACKBONE = ((8,), (16,), (32, 32), (64, 64), (64, 64))
FCN_HEAD = 128  # width of the convolutionalized "fc6"/"fc7" layers
FCN_SKIPS = {"fcn-32s": (), "fcn-16s": (4,), "fcn-8s": (4, 3)}  # pool stages fused, coarse to fine
# The U-Net paper's 64..1024 channels divided by four. Half as wide costs half as much per scene but reaches less
# in the same time on 2 CPU cores; wider only at the deep levels is slower and no better (docs/segmentation.md).
UNET_WIDTHS = (16, 32, 64, 128, 256)


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The [2f, 2f] kernel with which a stride-f transposed convolution performs bilinear interpolation."""
    size = 2 * factor
    center = (size - 1) / 2
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor  # exact in float64 first
    return torch.outer(ramp, ramp).to(torch.get_default_dtype())  # the dtype the model's weights are built in


class LearnedUpsample(nn.Module):
    """x`factor` upsampling by a ConvTranspose2d (kernel 2f, stride f) initialized to bilinear interpolation.

    Each channel is upsampled on its own at initialization (no cross-channel weights); training may change that.
    The input is edge-padded by one pixel first, so that at initialization the output equals
    `F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)` exactly, borders included: the pad
    plays the role of interpolate's clamping at the edges, and padding=3f/2 crops the result back to f*H x f*W.
    """

    def __init__(self, channels: int, factor: int, bias: bool = False):
        super().__init__()
        if factor < 2 or factor % 2:
            raise ValueError(f"upsampling factor must be even, got {factor}")
        self.factor = factor
        self.deconv = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=3 * factor // 2,
                                         bias=bias)
        with torch.no_grad():
            if bias:
                self.deconv.bias.zero_()
            self.deconv.weight.zero_()
            self.deconv.weight[range(channels), range(channels)] = bilinear_kernel(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(F.pad(x, (1, 1, 1, 1), mode="replicate"))


def _conv_block(in_channels: int, widths, batch_norm: bool) -> nn.Sequential:
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(width)] if batch_norm else []
        layers += [nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class FCN(nn.Module):
    """FCN-32s/16s/8s: `skips` names the pool stages (1-based) whose scores are fused, coarse to fine.

    The last upsampling adds a bias per class (zero at first, so it still starts as bilinear interpolation): the
    place where a logit adjustment is folded in (cnnlab.train.weighting)."""

    output_bias = "upscore.deconv.bias"

    def __init__(self, num_classes: int = 11, in_channels: int = 1, skips: tuple[int, ...] = (4, 3),
                 backbone=FCN_BACKBONE, head: int = FCN_HEAD, batch_norm: bool = True, dropout: float = 0.1):
        super().__init__()
        self.stride = 2 ** len(backbone)
        self.skips = tuple(skips)
        if any(not 1 <= s < len(backbone) for s in self.skips) or list(self.skips) != sorted(self.skips, reverse=True):
            raise ValueError(f"skips must be pool stages in 1..{len(backbone) - 1}, coarse to fine, got {skips}")
        stages = []
        for widths in backbone:
            stages.append(nn.Sequential(_conv_block(in_channels, widths, batch_norm), nn.MaxPool2d(2)))
            in_channels = widths[-1]
        self.stages = nn.ModuleList(stages)
        # fc6/fc7 of VGG as convolutions (3x3 here rather than 7x7: pool5 is only 2x3 pixels on a 64x84 scene)
        self.head = nn.Sequential(_conv_block(in_channels, (head,), batch_norm), nn.Dropout2d(dropout),
                                  nn.Conv2d(head, head, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout))
        self.score = nn.Conv2d(head, num_classes, 1)
        self.score_pools = nn.ModuleDict({f"pool{s}": nn.Conv2d(backbone[s - 1][-1], num_classes, 1)
                                          for s in self.skips})
        for layer in self.score_pools.values():  # as in the paper: a new skip starts as a no-op
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.upscore2 = nn.ModuleList(LearnedUpsample(num_classes, 2) for _ in self.skips)
        self.upscore = LearnedUpsample(num_classes, self.stride >> len(self.skips), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to_multiple(x, self.stride)
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score(self.head(x))
        for stage, up in zip(self.skips, self.upscore2):
            score = up(score) + self.score_pools[f"pool{stage}"](pools[stage - 1])
        return self.upscore(score)[..., :h, :w]


class UNet(nn.Module):
    """`widths`: channels per level, fine to coarse. `space_to_depth` = f > 1 folds each f x f block of input pixels
    into channels first (pixel unshuffle) and unfolds f*f class scores per position back into the block at the end
    (pixel shuffle): no input pixel is lost and every output pixel keeps its own score, but the network runs at
    1/f of the resolution, where a CPU computes it several times faster per scene (docs/segmentation.md)."""

    aux_weight = 0.5  # how a trainer weighs the deep-supervision losses (the Trainer reads it)

    def __init__(self, num_classes: int = 11, in_channels: int = 1, widths=UNET_WIDTHS, batch_norm: bool = True,
                 deep_supervision: bool = False, space_to_depth: int = 1):
        super().__init__()
        if space_to_depth < 1:
            raise ValueError(f"space_to_depth must be a positive integer, got {space_to_depth}")
        self.fold = space_to_depth
        self.stride = 2 ** (len(widths) - 1) * space_to_depth
        in_channels *= space_to_depth ** 2
        self.down = nn.ModuleList()
        for width in widths:
            self.down.append(_conv_block(in_channels, (width, width), batch_norm))
            in_channels = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(deep, shallow, 2, stride=2)
                                for deep, shallow in zip(widths[:0:-1], widths[-2::-1]))
        self.decode = nn.ModuleList(_conv_block(2 * shallow, (shallow, shallow), batch_norm)
                                    for shallow in widths[-2::-1])
        self.classify = nn.Conv2d(widths[0], num_classes * space_to_depth ** 2, 1)
        # Deep supervision (as in nnU-Net): in training, class scores from every coarser decoder level too,
        # upsampled to the input's size, so that the deep levels get a gradient of their own.
        self.aux = nn.ModuleList(nn.Conv2d(shallow, num_classes, 1) for shallow in widths[-2:0:-1]) \
            if deep_supervision else None

    # added to every output logit: where a logit adjustment is folded in (f*f entries per class, class-major,
    # as pixel_shuffle reads them)
    output_bias = "classify.bias"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = _pad_to_multiple(x, self.stride)
        size = x.shape[-2:]
        x = F.pixel_unshuffle(x, self.fold) if self.fold > 1 else x
        features = []
        for i, block in enumerate(self.down):
            x = block(self.pool(x) if i else x)
            features.append(x)
        aux = []
        for level, (up, decode, skip) in enumerate(zip(self.up, self.decode, features[-2::-1])):
            x = decode(torch.cat([skip, up(x)], 1))
            if self.aux is not None and self.training and level < len(self.aux):
                aux.append(F.interpolate(self.aux[level](x), size=size, mode="bilinear"))
        logits = self.classify(x)
        logits = F.pixel_shuffle(logits, self.fold) if self.fold > 1 else logits
        return tuple(o[..., :h, :w] for o in (logits, *aux)) if aux else logits[..., :h, :w]


def _register_fcn(name: str, skips: tuple[int, ...]):
    @register_model(name, family="fcn", input_size=(1, 64, 84), num_classes=11, task="segmentation",
                    description=f"{name.upper()}: VGG-style backbone, bilinear-initialized learned upsampling"
                                + (f", skips from pool {', '.join(map(str, skips))}" if skips else ""))
    def build(num_classes: int = 11, in_channels: int = 1, input_size: int | None = None, **options) -> FCN:
        del input_size  # fully convolutional: any input size works
        return FCN(num_classes, in_channels, skips, **options)

    return build


for _name, _skips in FCN_SKIPS.items():
    _register_fcn(_name, _skips)


@register_model("unet", family="unet", input_size=(1, 64, 84), num_classes=11, task="segmentation",
                aliases=("u-net",))
def unet(num_classes: int = 11, in_channels: int = 1, input_size: int | None = None, **options) -> UNet:
    """U-Net: conv blocks down, 2x2 transposed-convolution up, skip concatenation at every scale."""
    del input_size  # fully convolutional: any input size works
    return UNet(num_classes, in_channels, **options)
