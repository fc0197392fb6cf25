"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document recognition"),
in the paper's layout (Section II.B):

  C1 6 5x5 convolutions -> S2 2x2 subsampling -> C3 16 5x5 convolutions, partially connected by Table I ->
  S4 2x2 subsampling -> C5 120 5x5 convolutions -> F6 84 units -> output,

with the scaled tanh f(a) = 1.7159 tanh(2a/3) of Appendix A. A subsampling unit adds its four inputs, multiplies
the sum by a trained coefficient and adds a trained bias (one pair per map). The paper's output layer is 10
Euclidean RBF units with fixed, hand-designed centres; it is replaced by a fully connected layer so that the net
trains with softmax cross-entropy like every other model here. Parameters at 10 classes: 156 + 12 + 1,516 + 32 +
48,120 + 10,164 + 850 = 60,850.

Input: 32x32, as in the paper, which centres 28x28 MNIST digits in a 32x32 field. Smaller inputs are zero-padded
by C1 to 32x32, which is the same thing; larger ones leave C5 with a map bigger than 1x1, which F6 then reads whole.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.models.registry import register_model

# Table I: which of S2's 6 maps (rows) each of C3's 16 maps (columns) sees. Maps 0-5 see 3 neighbours, 6-11 see
# 4 neighbours, 12-14 see 4 non-neighbours, 15 sees all six: "to break the symmetry in the network".
C3_TABLE = [
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
]


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) with A = 1.7159, S = 2/3, so that f(1) = 1 and f(-1) = -1 (Appendix A)."""

    def forward(self, x):
        return 1.7159 * torch.tanh(2 / 3 * x)


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block, times a trained coefficient, plus a trained bias, per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        pooled = F.avg_pool2d(x, 2) * 4  # the sum of the four inputs
        return pooled * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution where output map j sees only the input maps marked in column j of `table`.

    Only the connected kernels are parameters (1,500 weights + 16 biases for C3, against 2,400 + 16 dense);
    the dense kernel the convolution runs with is gathered from them, with zeros elsewhere.
    """

    def __init__(self, table: list[str], kernel_size: int):
        super().__init__()
        in_channels, out_channels = len(table), len(table[0])
        self.area = kernel_size * kernel_size
        slot = {}  # (output map, input map) -> which connected kernel, numbered in order
        for j in range(out_channels):
            for i in range(in_channels):
                if table[i][j] == "X":
                    slot[j, i] = len(slot)
        self.connections = len(slot)
        # For each dense kernel entry, its position in [connected weights..., 0]. Built from Python ints so that
        # the layer can also be made on the meta device (for counting), where tensors hold no values.
        zero = self.connections * self.area
        index = [[[slot[j, i] * self.area + t if (j, i) in slot else zero for t in range(self.area)]
                  for i in range(in_channels)] for j in range(out_channels)]
        self.register_buffer("index", torch.tensor(index).view(out_channels, in_channels, kernel_size, kernel_size),
                             persistent=False)
        self.weight = nn.Parameter(torch.empty(self.connections * self.area))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        fan_in = self.connections * self.area / out_channels  # the average number of inputs per output unit
        nn.init.uniform_(self.weight, -(3 / fan_in) ** 0.5, (3 / fan_in) ** 0.5)

    def forward(self, x):
        kernel = torch.cat([self.weight, self.weight.new_zeros(1)])[self.index]
        return F.conv2d(x, kernel, self.bias)

    def macs(self, output: torch.Tensor) -> int:
        """Only connected kernels multiply: connections x kernel area per output position."""
        return output[0, 0].numel() * self.connections * self.area


class LeNet5(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32):
        padding = max(0, (32 - input_size + 1) // 2)
        side = ((input_size + 2 * padding - 4) // 2 - 4) // 2 - 4  # C5's output side
        super().__init__(OrderedDict([
            ("c1", nn.Conv2d(in_channels, 6, 5, padding=padding)), ("tanh1", ScaledTanh()),
            ("s2", Subsampling(6)), ("tanh2", ScaledTanh()),
            ("c3", PartialConv2d(C3_TABLE, 5)), ("tanh3", ScaledTanh()),
            ("s4", Subsampling(16)), ("tanh4", ScaledTanh()),
            ("c5", nn.Conv2d(16, 120, 5)), ("tanh5", ScaledTanh()),
            ("flatten", nn.Flatten()),
            ("f6", nn.Linear(120 * side * side, 84)), ("tanh6", ScaledTanh()),
            ("output", nn.Linear(84, num_classes)),
        ]))

@register_model("lenet5", family="lenet", input_size=(1, 32, 32), aliases=("lenet-5", "lenet"))
def lenet5(num_classes: int, in_channels: int, input_size: int) -> LeNet5:
    """LeNet-5 as published in 1998 (partial C3 connections, trained subsampling, scaled tanh)."""
    return LeNet5(num_classes, in_channels, input_size)
