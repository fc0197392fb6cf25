"""Localizers: a registered classifier's convolutional layers as the backbone, and two heads on its feature maps,
the class scores and four box numbers (the lecture's classification and regression layers, side by side).

The backbone is the classifier built for the task's input, cut before its first global pooling, flatten or fully
connected layer (a ResNet before its average pooling, the simple CNN before its flatten): every registered
classifier whose forward pass runs its top-level layers in order (the Sequential nets, AlexNet, VGG, the
ResNets) is a backbone, `--model-options '{"backbone": "resnet20"}'`. Its feature maps are average-pooled to a
GRID x GRID grid, which keeps where in the image each feature fired (a box needs that; a global average would
lose it), then a fully connected layer with ReLU feeds both heads. The box head's four outputs go through a
sigmoid: the box's centre and size as fractions of the image, in 0..1 (cnnlab.tasks.localization).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.registry import get_model, register_model

GRID = 4
HIDDEN = 256
INPUT = (1, 64, 64)  # mnist-boxes' canvas
ENDS = (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # where a classifier's features end


def backbone_features(name: str, in_channels: int, input_size: int, **options) -> nn.Sequential:
    """The registered classifier `name`'s layers before its first global pooling, flatten or fully connected
    layer (a block that holds one, such as GoogLeNet's auxiliary classifier, ends them too)."""
    classifier = get_model(name, num_classes=10, in_channels=in_channels, input_size=input_size, **options)
    children = list(classifier.named_children())
    ends = [i for i, (_, child) in enumerate(children) if any(isinstance(m, ENDS) for m in child.modules())]
    if not ends:
        raise ValueError(f"backbone {name!r}: no global pooling, flatten or fully connected layer to cut its "
                         "features before (a backbone is a classifier)")
    if not ends[0]:
        raise ValueError(f"backbone {name!r}: has no convolutional layers before its classifier")
    return nn.Sequential(OrderedDict(children[:ends[0]]))


class Localizer(nn.Module):
    """The class from the feature maps' maxima over the whole image (what a digit is does not depend on where it
    is), the box from the maps pooled to a grid, which keeps where each feature fired."""

    def __init__(self, features: nn.Module, channels: int, num_classes: int, grid: int = GRID, hidden: int = HIDDEN):
        super().__init__()
        self.features = features
        self.everywhere = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.classes = nn.Linear(channels, num_classes)
        self.grid = nn.AdaptiveAvgPool2d(grid)
        # batch norm keeps the box's four sigmoids out of saturation while Adam's first, equal-sized steps on
        # thousands of weights grow the hidden layer (without it a box can collapse to width 0 within 10 steps)
        self.fc = nn.Linear(channels * grid * grid, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.box = nn.Linear(hidden, 4)

    def forward(self, x):
        maps = self.features(x)
        where = self.relu(self.bn(self.fc(self.flatten(self.grid(maps)))))
        return torch.cat([self.classes(self.flatten(self.everywhere(maps))), self.box(where).sigmoid()], 1)


def localizer(num_classes: int = 10, in_channels: int = 1, input_size: int = INPUT[-1], backbone: str = "simple-cnn",
              backbone_options: dict | None = None, grid: int = GRID, hidden: int = HIDDEN) -> Localizer:
    features = backbone_features(backbone, in_channels, input_size, **(backbone_options or {}))
    if grid < 1 or hidden < 1:
        raise ValueError(f"grid and hidden must be at least 1, got {grid} and {hidden}")
    with torch.no_grad():  # the channels of its feature maps, from one (shape-only on the meta device) pass
        channels = features(torch.zeros(1, in_channels, input_size, input_size)).shape[1]
    return Localizer(features, channels, num_classes, grid, hidden)


@register_model("localizer", family="localization", input_size=INPUT, task="localization")
def simple_localizer(num_classes: int = 10, in_channels: int = 1, **options) -> Localizer:
    """Two heads, class and box, on a registered classifier's feature maps (default: the simple CNN's)."""
    return localizer(num_classes, in_channels, **options)


@register_model("localizer-resnet20", family="localization", input_size=INPUT, task="localization")
def resnet_localizer(num_classes: int = 10, in_channels: int = 1, **options) -> Localizer:
    """Two heads, class and box, on the CIFAR ResNet-20's feature maps."""
    return localizer(num_classes, in_channels, **{"backbone": "resnet20", **options})
