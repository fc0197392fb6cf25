"""The small models for 28-pixel images: the default cnnlab CNN, LeNet's idea (conv → ReLU → pool, twice, then
fully connected) sized for speed; a deeper CNN for the best accuracy; and a fully connected baseline.

Named layers (`conv1`, `pool1`, ...) so that feature maps and filters can be addressed by name.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.models.layers import Dropout
from cnnlab.models.registry import register_model


def _pooled(size: int, kernel: int, padding: int, strided: bool = False) -> int:
    """The side after a convolution and a 2x2 max-pool, or after the same convolution with stride 2 instead."""
    return (size + 2 * padding - kernel) // 2 + 1 if strided else (size + 2 * padding - kernel + 1) // 2


class SimpleCNN(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, channels: tuple[int, int] = (16, 32),
                 kernel_size: int = 5, hidden: int = 128, input_size: int = 28, batch_norm: bool = False,
                 dropout: float = 0.0, pool_first: bool = False, strided_first: bool = False):
        c1, c2 = channels
        pad = 0 if input_size >= 28 else kernel_size // 2  # tiny inputs keep their size through the convs
        side = _pooled(_pooled(input_size, kernel_size, pad, strided_first), kernel_size, pad)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for two {kernel_size}x{kernel_size} conv+pool stages")
        layers: list[tuple[str, nn.Module]] = []
        for i, (cin, cout) in enumerate([(in_channels, c1), (c1, c2)], start=1):
            # strided_first: the first convolution strides 2 and has no pooling after it (a quarter of its work)
            stride = 2 if strided_first and i == 1 else 1
            stage = [(f"conv{i}", nn.Conv2d(cin, cout, kernel_size, stride, pad, bias=not batch_norm))]
            if batch_norm:
                stage.append((f"bn{i}", nn.BatchNorm2d(cout)))
            stage.append((f"relu{i}", nn.ReLU(inplace=True)))
            # pool_first: max-pool straight after the convolution, so that batch norm and ReLU work on a quarter of
            # the values (ReLU commutes with max-pooling; batch norm then normalizes the pooled map).
            pool = [(f"pool{i}", nn.MaxPool2d(2))] if stride == 1 else []
            layers += [stage[0], *pool, *stage[1:]] if pool_first else [*stage, *pool]
        layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(c2 * side * side, hidden)), ("relu3", nn.ReLU(inplace=True))]
        if dropout:
            layers.append(("dropout", Dropout(dropout)))
        layers.append(("fc2", nn.Linear(hidden, num_classes)))
        super().__init__(OrderedDict(layers))


@register_model("simple-cnn", family="simple", input_size=(1, 28, 28))
def simple_cnn(num_classes: int = 10, in_channels: int = 1, **options) -> SimpleCNN:
    """The default cnnlab CNN: 2x (conv 5x5 → ReLU → max-pool 2), then FC → ReLU → FC."""
    return SimpleCNN(num_classes, in_channels, **options)


class MLP(nn.Sequential):
    """The baseline a CNN is measured against: the image as one vector of pixels, fully connected layers only."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = in_channels * input_size * input_size
        for i, units in enumerate(hidden, start=1):
            layers += [(f"fc{i}", nn.Linear(width, units)), (f"relu{i}", nn.ReLU(inplace=True))]
            if dropout:
                layers.append((f"dropout{i}", Dropout(dropout)))
            width = units
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(width, num_classes)))
        super().__init__(OrderedDict(layers))


class DeepCNN(nn.Sequential):
    """Seven convolutions in two stages and a head, each with batch norm and ReLU: the shape of the best single
    MNIST models (Kaggle's digit recognizer). Strided 5x5 convolutions downsample instead of pooling (a learned
    pooling), and a 4x4 convolution without padding reads the last 7x7 map as 4x4 positions."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, int, int] = (32, 64, 128),
                 input_size: int = 28, dropout: float = 0.4):
        a, b, c = widths
        # (name, output channels, kernel, stride, padding), from the input to the head.
        convs = [("conv1", a, 3, 1, 1), ("conv2", a, 3, 1, 1), ("conv3", a, 5, 2, 2),
                 ("conv4", b, 3, 1, 1), ("conv5", b, 3, 1, 1), ("conv6", b, 5, 2, 2),
                 ("conv7", c, 4, 1, 0)]
        layers: list[tuple[str, nn.Module]] = []
        channels, side = in_channels, input_size
        for index, (name, width, kernel, stride, padding) in enumerate(convs, start=1):
            layers += [(name, nn.Conv2d(channels, width, kernel, stride, padding, bias=False)),
                       (f"bn{index}", nn.BatchNorm2d(width)), (f"relu{index}", nn.ReLU(inplace=True))]
            if stride == 2 and dropout:
                layers.append((f"dropout{index}", Dropout(dropout)))
            channels, side = width, (side + 2 * padding - kernel) // stride + 1
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for deep-cnn (at least 13 pixels)")
        layers += [("flatten", nn.Flatten()), *([("dropout", Dropout(dropout))] if dropout else []),
                   ("fc", nn.Linear(channels * side * side, num_classes))]
        super().__init__(OrderedDict(layers))


@register_model("deep-cnn", family="simple", input_size=(1, 28, 28))
def deep_cnn(num_classes: int = 10, in_channels: int = 1, **options) -> DeepCNN:
    """Seven conv → BN → ReLU layers (two stages downsampled by strided convolutions), then FC; the best recipe's."""
    return DeepCNN(num_classes, in_channels, **options)


@register_model("mlp", family="simple", input_size=(1, 28, 28))
def mlp(num_classes: int = 10, in_channels: int = 1, **options) -> MLP:
    """A fully connected baseline: flatten → (FC → ReLU) per hidden layer → FC; no convolution."""
    return MLP(num_classes, in_channels, **options)
