"""Plain nets and ResNets (He et al. 2015, "Deep residual learning for image recognition").

ImageNet nets follow the paper's Table 1 and torchvision's module names (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, ..., `fc`), so torchvision checkpoints load unchanged. CIFAR nets follow Section 4.2:
a 3x3 stem with 16 filters, then 3 stages of n blocks at 16/32/64 filters on 32/16/8 maps: 6n+2 layers.

Shortcut options (Section 3.3), for blocks whose input and output shapes differ unless noted:
  A  identity, subsampled by the stride and zero-padded to the wider output: no extra parameters;
  B  a 1x1 convolution + BN projection ("downsample"); identity elsewhere (torchvision; the paper's 50-152);
  C  a projection on every block.
A plain net is the same stack with no shortcut at all (`shortcut=None`).

Small inputs (side < 64) on an ImageNet net: the 7x7/2 convolution + 3x3/2 max-pool stem becomes one 3x3/1
convolution, so a 32x32 image reaches the first stage at 32x32 instead of 8x8; stages are unchanged.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from cnnlab.errors import ConfigError
from cnnlab.models import layers
from cnnlab.models.registry import register_model

SHORTCUTS = ("A", "B", "C")
PAPER = "He et al. 2015"


class ZeroPadShortcut(nn.Module):
    """Option A: the identity, subsampled by the block's stride and padded with zero channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def _shortcut(option: str | None, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The module added to a block's output; None means the plain identity (or, for plain nets, nothing)."""
    reshapes = stride != 1 or in_channels != out_channels
    if option is None or (option in ("A", "B") and not reshapes):
        return None
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str | None, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = layers.activation(act, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(shortcut, in_channels, width, stride)
        self.act2 = layers.activation(act, width)
        self.residual = shortcut is not None

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act2(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4): ResNet-50/101/152."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str | None, act: str,
                 stride_in_1x1: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        # The paper subsamples in the first 1x1 convolution; torchvision ("ResNet v1.5") moved the stride to the
        # 3x3 one, which costs more MACs but is what its published weights were trained with.
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = layers.activation(act, width)
        self.conv2 = nn.Conv2d(width, width, 3, s3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = layers.activation(act, width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _shortcut(shortcut, in_channels, out_channels, stride)
        self.act3 = layers.activation(act, out_channels)
        self.residual = shortcut is not None

    def forward(self, x):
        out = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act3(out)


class ResNet(nn.Module):
    """A stem, stages of blocks (the first block of every stage after the first halves the map), global
    average pooling and one fully connected layer."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], widths: tuple[int, ...],
                 num_classes: int, in_channels: int, *, imagenet_stem: bool, shortcut: str | None = "B",
                 activation: str = "relu", stride_in_1x1: bool = False):
        super().__init__()
        if shortcut is not None and shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUTS)} or None (plain), got {shortcut!r}")
        if stride_in_1x1 and block is not Bottleneck:
            raise ConfigError("stride_in_1x1 applies to bottleneck ResNets (50, 101, 152) only")
        block_options = {"stride_in_1x1": True} if stride_in_1x1 else {}
        stem = widths[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = layers.activation(activation, stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet_stem else nn.Identity()
        channels = stem
        for index, (depth, width) in enumerate(zip(depths, widths), start=1):
            blocks = []
            for j in range(depth):
                stride = 2 if index > 1 and j == 0 else 1
                blocks.append(block(channels, width, stride, shortcut, activation, **block_options))
                channels = width * block.expansion
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(self.avgpool(x).flatten(1))


# depth: (block, blocks per stage), the columns of the paper's Table 1.
IMAGENET = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
            101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}
PLAIN_IMAGENET = (18, 34)
CIFAR_N = (3, 5, 7, 9, 18)  # depth 6n+2 = 20, 32, 44, 56, 110


def _register(prefix: str, depth: int, family: str, native: tuple[int, int, int], classes: int,
              shortcut: str | None, description: str, make):
    """Register `prefix+depth` (alias `prefix-depth`); `shortcut` is its default option, None for a plain net."""
    name = f"{prefix}{depth}"

    @register_model(name, family=family, input_size=native, num_classes=classes, aliases=(f"{prefix}-{depth}",),
                    description=description)
    def build(num_classes: int, in_channels: int, input_size: int, **options) -> ResNet:
        if shortcut is None and options.get("shortcut") is not None:
            raise ConfigError(f"{name} is a plain net: it has no shortcut option (use resnet{depth})")
        options.setdefault("shortcut", shortcut)
        return make(num_classes, in_channels, input_size, **options)


def _register_all():
    for depth, (block, depths) in IMAGENET.items():
        def imagenet(num_classes, in_channels, input_size, block=block, depths=depths, **options) -> ResNet:
            return ResNet(block, depths, (64, 128, 256, 512), num_classes, in_channels,
                          imagenet_stem=input_size >= layers.SMALL_INPUT, **options)

        _register("resnet", depth, "resnet", (3, 224, 224), 1000, "B",
                  f"{depth}-layer ResNet, shortcut option B by default ({PAPER}, Table 1)", imagenet)
        if depth in PLAIN_IMAGENET:
            _register("plain", depth, "resnet", (3, 224, 224), 1000, None,
                      f"{depth}-layer plain net, no shortcuts ({PAPER}, Table 1)", imagenet)
    for n in CIFAR_N:
        def cifar(num_classes, in_channels, input_size, n=n, **options) -> ResNet:
            return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes, in_channels, imagenet_stem=False,
                          **options)

        _register("resnet", 6 * n + 2, "resnet-cifar", (3, 32, 32), 10, "A",
                  f"{6 * n + 2}-layer CIFAR ResNet, shortcut option A by default ({PAPER}, Section 4.2)", cifar)
        _register("plain", 6 * n + 2, "resnet-cifar", (3, 32, 32), 10, None,
                  f"{6 * n + 2}-layer CIFAR plain net, no shortcuts ({PAPER}, Section 4.2)", cifar)


_register_all()
