"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image recognition").

`CONFIGS` is the paper's Table 1: one column per configuration, its cells in the paper's own notation
("conv3-64" is a 3x3 convolution with 64 filters, stride 1, padding that keeps the size; "LRN" is local
response normalisation; "maxpool" is 2x2, stride 2). Every convolution is followed by ReLU (and BN in the
`-bn` variants, which the paper predates; torchvision's `vgg11_bn` etc.). The classifier is FC-4096, FC-4096,
FC-classes with dropout 0.5, on the 7x7x512 map. Module names and order are torchvision's (`features.N`,
`classifier.0/3/6`), so its checkpoints load unchanged.

Small inputs (side < 64): max-pools round up (`ceil_mode`), so a 28x28 image still survives five halvings
(28-14-7-4-2-1), and the classifier reads the globally pooled 512 channels with 512-wide hidden layers (the
usual CIFAR VGG) instead of replicating a 1x1 map into 7x7x512 inputs for 4096-wide layers.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models import layers
from cnnlab.models.registry import register_model

CONFIGS: dict[str, list[str]] = {
    "A": ["conv3-64", "maxpool", "conv3-128", "maxpool", "conv3-256", "conv3-256", "maxpool",
          "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512", "maxpool"],
    "A-LRN": ["conv3-64", "LRN", "maxpool", "conv3-128", "maxpool", "conv3-256", "conv3-256", "maxpool",
              "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512", "maxpool"],
    "B": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool", "conv3-256", "conv3-256",
          "maxpool", "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512", "maxpool"],
    "C": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv1-256", "maxpool", "conv3-512", "conv3-512", "conv1-512", "maxpool",
          "conv3-512", "conv3-512", "conv1-512", "maxpool"],
    "D": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv3-256", "maxpool", "conv3-512", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "maxpool"],
    "E": ["conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool",
          "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool"],
}
DEPTHS = {"A": 11, "B": 13, "D": 16, "E": 19}  # torchvision's names: vgg11, vgg13, vgg16, vgg19


def make_features(config: list[str], in_channels: int, batch_norm: bool, act: str, ceil_mode: bool) -> nn.Sequential:
    modules: list[nn.Module] = []
    for cell in config:
        if cell == "maxpool":
            modules.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        elif cell == "LRN":
            modules.append(layers.local_response_norm())  # Krizhevsky et al.'s, as the paper's Section 2.1 says
        else:
            kernel, width = (int(v) for v in cell.removeprefix("conv").split("-"))
            modules.append(nn.Conv2d(in_channels, width, kernel, padding=kernel // 2))
            if batch_norm:
                modules.append(nn.BatchNorm2d(width))
            modules.append(layers.activation(act, width))
            in_channels = width
    return nn.Sequential(*modules)


class VGG(nn.Module):
    def __init__(self, config: str, num_classes: int, in_channels: int, input_size: int, batch_norm: bool = False,
                 activation: str = "relu", dropout: float = 0.5):
        super().__init__()
        small = input_size < layers.SMALL_INPUT
        self.features = make_features(CONFIGS[config], in_channels, batch_norm, activation, ceil_mode=small)
        side, hidden = (1, 512) if small else (7, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Linear(512 * side * side, hidden), layers.activation(activation, hidden), layers.Dropout(dropout),
            nn.Linear(hidden, hidden), layers.activation(activation, hidden), layers.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _register(config: str, batch_norm: bool):
    suffix = "-bn" if batch_norm else ""
    aliases: tuple[str, ...] = ()
    if config in DEPTHS:
        aliases = (f"vgg{DEPTHS[config]}{suffix}",) + ((f"vgg{DEPTHS[config]}_bn",) if batch_norm else ())

    description = f"VGG configuration {config}{' with batch norm' if batch_norm else ''} (Simonyan & Zisserman 2015)"

    @register_model(f"vgg-{config.lower()}{suffix}", family="vgg", input_size=(3, 224, 224), num_classes=1000,
                    aliases=aliases, description=description)
    def build(num_classes: int, in_channels: int, input_size: int, **options) -> VGG:
        return VGG(config, num_classes, in_channels, input_size, batch_norm=batch_norm, **options)


for _config in CONFIGS:
    _register(_config, batch_norm=False)
for _config in CONFIGS:
    if _config != "A-LRN":  # batch norm replaces what LRN was for
        _register(_config, batch_norm=True)
