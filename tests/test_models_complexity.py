"""The MAC counter's rules on layers whose cost is known by hand, and meta-device counts equal real ones."""

import torch
from torch import nn

from cnnlab.models import get_model
from cnnlab.models.complexity import profile, weight_layers
from cnnlab.models.lenet import C3_TABLE, PartialConv2d


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
