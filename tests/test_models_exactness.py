"""Exactness against torchvision and the papers: state_dict layout, parameter counts, MACs, depth."""

import json

import pytest
import torch

from cnnlab.models import get_model, model_info
from cnnlab.models.complexity import profile, weight_layers

from conftest import MANIFEST


# torchvision name -> (cnnlab name, options that build the same network)
TORCHVISION = {
    "alexnet": ("alexnet", {}),
    **{f"vgg{d}": (f"vgg{d}", {}) for d in (11, 13, 16, 19)},
    **{f"vgg{d}_bn": (f"vgg{d}_bn", {}) for d in (11, 13, 16, 19)},
    "googlenet": ("googlenet", {"aux_heads": True}),
    **{f"resnet{d}": (f"resnet{d}", {}) for d in (18, 34, 50, 101, 152)},
}


def native(name: str, **options) -> torch.nn.Module:
    """The model at its native input and class count, on the meta device: no memory, no compute."""
    entry = model_info(name)
    with torch.device("meta"):
        return get_model(name, num_classes=entry.num_classes, in_channels=entry.input_size[0], **options)


def layout(model: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("tv_name", TORCHVISION)
def test_state_dict_equals_torchvision(tv_name):
    reference = json.loads(MANIFEST.read_text())["models"][tv_name]
    name, options = TORCHVISION[tv_name]
    model = native(name, **options)
    assert layout(model) == reference["state_dict"]  # names, shapes, dtypes and order
    expected = reference.get("parameters_with_aux_heads", reference["parameters"])
    assert sum(p.numel() for p in model.parameters()) == expected


def test_googlenet_without_aux_heads_counts_as_torchvision():
    reference = json.loads(MANIFEST.read_text())["models"]["googlenet"]
    assert sum(p.numel() for p in native("googlenet").parameters()) == reference["parameters"]


def test_covers_every_manifest_model():
    assert set(json.loads(MANIFEST.read_text())["models"]) == set(TORCHVISION)


# The VGG paper's Table 2, in millions; the configurations' letters are the registry's names.
@pytest.mark.parametrize("config,millions", [("a", 133), ("a-lrn", 133), ("b", 133), ("c", 134), ("d", 138),
                                             ("e", 144)])
def test_vgg_parameters_match_the_papers_table_2(config, millions):
    assert round(sum(p.numel() for p in native(f"vgg-{config}").parameters()) / 1e6) == millions


@pytest.mark.parametrize("name,count", [
    ("alexnet-2012", 60_965_224),  # the paper's "60 million", with its two-GPU grouping
    ("lenet5", 60_850),  # 156 + 12 + 1,516 + 32 + 48,120 + 10,164 + 850
    ("googlenet", 6_624_904),
])
def test_exact_parameter_counts(name, count):
    assert sum(p.numel() for p in native(name).parameters()) == count


# ResNet paper Table 6 quotes the CIFAR nets' sizes to two significant digits.
@pytest.mark.parametrize("name,millions", [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66),
                                           ("resnet56", 0.85), ("resnet110", 1.7)])
def test_cifar_resnet_sizes_match_table_6(name, millions):
    count = sum(p.numel() for p in native(name).parameters())
    assert float(f"{count / 1e6:.2g}") == millions


# torchvision's published "GFLOPS" (its `_ops` metadata) are multiply-accumulates at 224x224, to 4 digits.
@pytest.mark.parametrize("name,gmacs", [
    ("alexnet", 0.714), ("vgg11", 7.609), ("vgg13", 11.308), ("vgg16", 15.47), ("vgg19", 19.632),
    ("vgg16_bn", 15.47), ("googlenet", 1.498), ("resnet18", 1.814), ("resnet34", 3.664), ("resnet50", 4.089),
    ("resnet101", 7.801), ("resnet152", 11.514),
])
def test_macs_match_torchvision(name, gmacs):
    model = native(name)
    assert profile(model, model_info(name).input_size).macs / 1e9 == pytest.approx(gmacs, rel=1e-3)


# The ResNet paper's Table 1 (multiply-adds, 10^9), for the paper's own layout: the bottleneck nets subsample
# in the first 1x1 convolution. Its figures have two significant digits, and two of them sit further than 1%
# from the count: ResNet-34 (3.644 with the parameter-free option A, 3.664 with B: +1.2%) and ResNet-50
# (3.858: +1.5%); we keep the standard convention rather than bend it to the rounded figures.
@pytest.mark.parametrize("name,options,paper,tolerance", [
    ("resnet18", {"shortcut": "A"}, 1.8, 0.01),
    ("resnet34", {"shortcut": "A"}, 3.6, 0.013),
    ("resnet50", {"stride_in_1x1": True}, 3.8, 0.016),
    ("resnet101", {"stride_in_1x1": True}, 7.6, 0.01),
    ("resnet152", {"stride_in_1x1": True}, 11.3, 0.01),
])
def test_macs_match_the_resnet_paper(name, options, paper, tolerance):
    model = native(name, **options)
    assert profile(model, (3, 224, 224)).macs / 1e9 == pytest.approx(paper, rel=tolerance)


def test_stride_placement_is_the_only_difference_between_paper_and_torchvision_resnet50():
    paper, torchvision = native("resnet50", stride_in_1x1=True), native("resnet50")
    assert layout(paper) == layout(torchvision)  # so torchvision's checkpoint loads into either
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)
    assert torchvision.layer2[0].conv1.stride == (1, 1) and torchvision.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("name,depth", [
    ("lenet5", 5), ("alexnet", 8), ("alexnet-2012", 8), ("vgg-a", 11), ("vgg-a-lrn", 11), ("vgg-b", 13),
    ("vgg-c", 16), ("vgg-d", 16), ("vgg-e", 19), ("googlenet", 22), ("plain18", 18), ("resnet18", 18),
    ("plain34", 34), ("resnet34", 34), ("resnet50", 50), ("resnet101", 101), ("resnet152", 152),
    ("resnet20", 20), ("plain56", 56), ("resnet110", 110),
])
def test_weight_layers_match_the_names(name, depth):
    assert weight_layers(native(name), model_info(name).input_size) == depth
