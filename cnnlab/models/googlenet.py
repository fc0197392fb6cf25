"""GoogLeNet, Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions"), in torchvision's layout.

`TABLE_1` is the paper's Table 1 from inception (3a) on, each module's numbers in the paper's column order:
#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj. Two differences from the paper are torchvision's, kept so
that its published checkpoint loads: every convolution is followed by batch norm (the paper has LRN in the stem
and predates batch norm), and the "5x5" branch convolves with a 3x3 kernel (`five_by_five=True` gives the
paper's 5x5, 7.01 M parameters instead of 6.62 M).

The auxiliary classifiers (after 4a and 4d) are off by default, so that the model returns plain logits like every
other model; `aux_heads=True` builds them (torchvision's checkpoint includes them), and then a training-mode
forward returns `GoogLeNetOutputs(logits, aux2, aux1)`, for `GoogLeNet.loss`.

Small inputs (side < 64): the 7x7/2 first convolution becomes 3x3/1 and the first max-pool goes, so a 32x32
image meets inception (3a) at 16x16 instead of 4x4 (the stem then halves once, not three times).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.models import layers
from cnnlab.models.registry import register_model

TABLE_1 = [
    # name            #1x1 #3x3red #3x3 #5x5red #5x5 poolproj
    ("inception3a",    64,   96,   128,   16,    32,   32),
    ("inception3b",   128,  128,   192,   32,    96,   64),
    "maxpool3",
    ("inception4a",   192,   96,   208,   16,    48,   64),
    ("inception4b",   160,  112,   224,   24,    64,   64),
    ("inception4c",   128,  128,   256,   24,    64,   64),
    ("inception4d",   112,  144,   288,   32,    64,   64),
    ("inception4e",   256,  160,   320,   32,   128,  128),
    "maxpool4",
    ("inception5a",   256,  160,   320,   32,   128,  128),
    ("inception5b",   384,  192,   384,   48,   128,  128),
]
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}
AUX_WEIGHT = 0.3  # the paper's discount on the auxiliary losses (Section 5)


class BasicConv2d(nn.Module):
    """Convolution, batch norm, activation (torchvision's unit; `conv` and `bn` are its checkpoint names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 act: str = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.act = layers.activation(act, out_channels)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1; 1x1 then 3x3; 1x1 then "5x5"; 3x3 max-pool then
    1x1. The 1x1 convolutions before the larger kernels reduce the channels they see (the paper's key idea)."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, act: str = "relu", five_by_five: bool = False):
        super().__init__()
        k5 = 5 if five_by_five else 3
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, act=act)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1, act=act),
                                     BasicConv2d(ch3x3red, ch3x3, 3, padding=1, act=act))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, 1, act=act),
                                     BasicConv2d(ch5x5red, ch5x5, k5, padding=k5 // 2, act=act))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, 1, act=act))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv (128), FC-1024, dropout 0.7, FC-classes."""

    def __init__(self, in_channels: int, num_classes: int, act: str = "relu"):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1, act=act)
        self.fc1 = nn.Linear(2048, 1024)
        self.act = layers.activation(act, 1024)
        self.dropout = layers.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        # Adaptive, so that 14x14 (ImageNet, the paper's 5x5/3 pooling) and smaller maps all give 4x4.
        x = self.conv(F.adaptive_avg_pool2d(x, 4)).flatten(1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux2: torch.Tensor
    aux1: torch.Tensor


class GoogLeNet(nn.Module):
    aux_weight = AUX_WEIGHT  # how a trainer weighs the auxiliary heads' losses (the Trainer reads it)

    def __init__(self, num_classes: int, in_channels: int, input_size: int, aux_heads: bool = False,
                 five_by_five: bool = False, activation: str = "relu", dropout: float = 0.4):
        super().__init__()
        act = activation
        if input_size < layers.SMALL_INPUT:
            self.conv1 = BasicConv2d(in_channels, 64, 3, padding=1, act=act)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, padding=3, act=act)
            self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1, act=act)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, act=act)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        channels, aux_channels = 192, {}
        for row in TABLE_1:
            if row == "maxpool3":
                self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
            elif row == "maxpool4":
                self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
            else:
                name, ch1x1, _, ch3x3, _, ch5x5, pool_proj = row
                self.add_module(name, Inception(channels, *row[1:], act=act, five_by_five=five_by_five))
                channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
                aux_channels[name] = channels
        self.aux_heads = aux_heads
        if aux_heads:
            for after, aux in AUX_AFTER.items():
                self.add_module(aux, InceptionAux(aux_channels[after], num_classes, act=act))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = layers.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-2, b=2)  # torchvision's initialisation

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        aux = {}
        for row in TABLE_1:
            name = row if isinstance(row, str) else row[0]
            x = getattr(self, name)(x)
            if self.aux_heads and self.training and name in AUX_AFTER:
                aux[AUX_AFTER[name]] = getattr(self, AUX_AFTER[name])(x)
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return GoogLeNetOutputs(logits, aux["aux2"], aux["aux1"]) if aux else logits

    @staticmethod
    def loss(outputs: GoogLeNetOutputs | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the main classifier plus 0.3 x that of each auxiliary one (in training)."""
        if isinstance(outputs, torch.Tensor):
            return F.cross_entropy(outputs, target)
        main, aux2, aux1 = (F.cross_entropy(o, target) for o in outputs)
        return main + AUX_WEIGHT * (aux1 + aux2)


@register_model("googlenet", family="googlenet", input_size=(3, 224, 224), num_classes=1000,
                aliases=("inception-v1",))
def googlenet(num_classes: int, in_channels: int, input_size: int, **options) -> GoogLeNet:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015, Table 1), torchvision's layout; optional auxiliary heads."""
    return GoogLeNet(num_classes, in_channels, input_size, **options)
