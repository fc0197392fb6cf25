"""The MAC counter's rules on layers whose cost is known by hand, meta-device counts equal real ones, and every
registered model's count equals torch's FlopCounterMode's."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import get_model, list_models
from cnnlab.models.complexity import profile, weight_layers
from cnnlab.models.lenet import C3_TABLE, PartialConv2d
from cnnlab.models.zoo import build


def test_rules_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),           # 8*10*10 outputs x 3*3*3 = 21,600
        nn.BatchNorm2d(8), nn.ReLU(),            # free
        nn.Conv2d(8, 8, 3, padding=1, groups=4), # 8*10*10 x 2*3*3 = 14,400
        nn.MaxPool2d(2),                         # free
        nn.Flatten(),
        nn.Linear(8 * 5 * 5, 10),                # 10 x 200 = 2,000
    )
    counted = profile(model, (3, 10, 10))
    assert [r.macs for r in counted.rows] == [21_600, 0, 0, 14_400, 0, 0, 2_000]
    assert counted.macs == 38_000
    assert counted.params == sum(r.params for r in counted.rows) == sum(p.numel() for p in model.parameters())
    assert counted.rows[3].output_shape == (8, 10, 10)


def test_partial_connections_count_only_connected_kernels():
    layer = PartialConv2d(C3_TABLE, 5)
    assert profile(nn.Sequential(layer), (6, 14, 14)).macs == 10 * 10 * 60 * 25  # 60 connections, 150,000


def test_meta_device_counts_equal_real_counts():
    real = get_model("resnet20", 10, 1, input_size=28)
    with torch.device("meta"):
        meta = get_model("resnet20", 10, 1, input_size=28)
    assert profile(real, (1, 28, 28)) == profile(meta, (1, 28, 28))
    assert real.training  # profiling restores the mode


def test_weight_layers_follow_the_longest_path():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.deep = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1))
            self.shallow = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.deep(x) + self.shallow(x)

    assert weight_layers(TwoPaths(), (1, 4, 4)) == 3


@pytest.mark.parametrize("name", list_models())
def test_the_counter_agrees_with_torchs_flop_counter(name):
    """Every registered model at its native input and class count, on the meta device (nothing is computed):
    the multiply-adds counted from the layers equal half the FLOPs that torch's own FlopCounterMode counts from
    the operations run. The one exception is by design: LeNet-5's C3 connects each of its 16 maps to 3 to 6 of
    S2's 6 maps (the paper's Table I, 60 connections), which the counter counts, while the layer runs a dense
    convolution with the other kernels masked to zero, which torch counts."""
    model, shape = build(name)
    counter = FlopCounterMode(display=False)
    with counter:
        counted = profile(model, shape)
    connections = sum(row.count("X") for row in C3_TABLE)  # 60 of 16 x 6; each a 5x5 kernel over C3's 10x10
    masked = (16 * 6 - connections) * 5 * 5 * 10 * 10 if name == "lenet5" else 0
    assert 2 * (counted.macs + masked) == counter.get_total_flops(), name


def test_transposed_convolutions_are_counted():
    """Each input value of a transposed convolution meets out_channels/groups kernels of kh x kw weights."""
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    assert profile(nn.Sequential(layer), (4, 5, 7)).macs == 4 * 5 * 7 * 3 * 3 * 3  # 3 output channels per group
