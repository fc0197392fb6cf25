"""The default cnnlab CNN: LeNet's idea (conv → ReLU → pool, twice, then fully connected), sized for speed.

Named layers (`conv1`, `pool1`, ...) so that feature maps and filters can be addressed by name.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.models.registry import register_model


def _pooled(size: int, kernel: int, padding: int) -> int:
    return (size + 2 * padding - kernel + 1) // 2


class SimpleCNN(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, channels: tuple[int, int] = (16, 32),
                 kernel_size: int = 5, hidden: int = 128, input_size: int = 28, batch_norm: bool = False,
                 dropout: float = 0.0):
        c1, c2 = channels
        pad = 0 if input_size >= 28 else kernel_size // 2  # tiny inputs keep their size through the convs
        side = _pooled(_pooled(input_size, kernel_size, pad), kernel_size, pad)
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for two {kernel_size}x{kernel_size} conv+pool stages")
        layers: list[tuple[str, nn.Module]] = []
        for i, (cin, cout) in enumerate([(in_channels, c1), (c1, c2)], start=1):
            layers.append((f"conv{i}", nn.Conv2d(cin, cout, kernel_size, padding=pad, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{i}", nn.BatchNorm2d(cout)))
            layers += [(f"relu{i}", nn.ReLU(inplace=True)), (f"pool{i}", nn.MaxPool2d(2))]
        layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(c2 * side * side, hidden)), ("relu3", nn.ReLU(inplace=True))]
        if dropout:
            layers.append(("dropout", nn.Dropout(dropout)))
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
                layers.append((f"dropout{i}", nn.Dropout(dropout)))
            width = units
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(width, num_classes)))
        super().__init__(OrderedDict(layers))


@register_model("mlp", family="simple", input_size=(1, 28, 28))
def mlp(num_classes: int = 10, in_channels: int = 1, **options) -> MLP:
    """A fully connected baseline: flatten → (FC → ReLU) per hidden layer → FC; no convolution."""
    return MLP(num_classes, in_channels, **options)
