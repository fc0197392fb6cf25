"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep convolutional neural
networks"), in two layouts:

- `alexnet`: torchvision's single-GPU variant (64-192-384-256-256 filters, no LRN, adaptive 6x6 pooling),
  whose module names and order match torchvision's checkpoint;
- `alexnet-2012`: the paper's network (96-256-384-384-256 filters, LRN after the first two convolutions,
  overlapping 3x3/2 max-pooling). Its second, fourth and fifth convolutions are grouped in two, as the paper's
  two GPUs only exchanged maps at the third convolution and the fully connected layers: 60,965,224 parameters
  at 1000 classes (the paper's "60 million"). The input is 227x227: the paper's 224 does not fit its own
  arithmetic (an 11x11/4 convolution yields 55x55 from 227).

Small inputs (side < 64): the 11x11/4 first convolution becomes 5x5/1 (padding 2), so 32x32 and 28x28 images
keep their size into the first pooling, and the classifier reads the globally pooled last map with 512-wide
hidden layers instead of 4096-wide ones (as the VGG file does).
"""

from __future__ import annotations

from torch import nn

from cnnlab.models import layers
from cnnlab.models.registry import register_model


def _classifier(in_features: int, hidden: int, num_classes: int, act: str, dropout: float) -> nn.Sequential:
    # The paper applies dropout before the first two fully connected layers (torchvision's order too).
    return nn.Sequential(
        layers.Dropout(dropout), nn.Linear(in_features, hidden), layers.activation(act, hidden),
        layers.Dropout(dropout), nn.Linear(hidden, hidden), layers.activation(act, hidden),
        nn.Linear(hidden, num_classes),
    )


def _first_conv(in_channels: int, width: int, small: bool, large_padding: int) -> nn.Conv2d:
    if small:
        return nn.Conv2d(in_channels, width, 5, 1, 2)
    return nn.Conv2d(in_channels, width, 11, 4, large_padding)


class AlexNet(nn.Module):
    """torchvision's layout."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, activation: str = "relu",
                 dropout: float = 0.5):
        super().__init__()
        small = input_size < layers.SMALL_INPUT
        act = activation
        self.features = nn.Sequential(
            _first_conv(in_channels, 64, small, large_padding=2), layers.activation(act, 64), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), layers.activation(act, 192), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), layers.activation(act, 384),
            nn.Conv2d(384, 256, 3, padding=1), layers.activation(act, 256),
            nn.Conv2d(256, 256, 3, padding=1), layers.activation(act, 256), nn.MaxPool2d(3, 2),
        )
        side, hidden = (1, 512) if small else (6, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = _classifier(256 * side * side, hidden, num_classes, act, dropout)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class AlexNet2012(nn.Module):
    """The paper's Figure 2, both GPUs' halves in one model (the grouped convolutions keep them apart)."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, activation: str = "relu",
                 dropout: float = 0.5, groups: int = 2):
        super().__init__()
        small = input_size < layers.SMALL_INPUT
        act = activation
        lrn = layers.local_response_norm
        self.features = nn.Sequential(
            _first_conv(in_channels, 96, small, large_padding=0), layers.activation(act, 96), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=groups), layers.activation(act, 256), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), layers.activation(act, 384),
            nn.Conv2d(384, 384, 3, padding=1, groups=groups), layers.activation(act, 384),
            nn.Conv2d(384, 256, 3, padding=1, groups=groups), layers.activation(act, 256), nn.MaxPool2d(3, 2),
        )
        # At 227x227 the last map is exactly 6x6; the adaptive pool only matters for other input sizes.
        side, hidden = (1, 512) if small else (6, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = _classifier(256 * side * side, hidden, num_classes, act, dropout)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # The paper's initialisation (Section 5): N(0, 0.01) weights.
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register_model("alexnet", family="alexnet", input_size=(3, 224, 224), num_classes=1000)
def alexnet(num_classes: int, in_channels: int, input_size: int, **options) -> AlexNet:
    """AlexNet as torchvision builds it (single-GPU, 64-192-384-256-256, no LRN)."""
    return AlexNet(num_classes, in_channels, input_size, **options)


@register_model("alexnet-2012", family="alexnet", input_size=(3, 227, 227), num_classes=1000)
def alexnet_2012(num_classes: int, in_channels: int, input_size: int, **options) -> AlexNet2012:
    """AlexNet as published (Krizhevsky et al. 2012): LRN, two-GPU grouped convolutions, 227x227 input."""
    return AlexNet2012(num_classes, in_channels, input_size, **options)
