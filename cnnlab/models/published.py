"""Published errors, each with its source, for `cnnlab zoo` and docs/zoo.md: ImageNet (ILSVRC-2012 validation)
for the ImageNet nets, CIFAR-10 test for the CIFAR ResNets.

A result belongs to a *variant*: a registered model with the options that reproduce the network that was
measured (e.g. the paper's ResNet-50 subsamples in the first 1x1 convolution; torchvision's in the 3x3). Paper
figures are the authors' (protocols differ: VGG single scale, ResNet 10-crop); torchvision figures are the
single-crop accuracies of its published weights (`acc@1`/`acc@5` in torchvision's model files), as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    top1: str | None  # error in percent, written as the source prints it ("27.0"); None where it gives none
    top5: str | None
    source: str


@dataclass(frozen=True)
class Variant:
    model: str
    options: dict = field(default_factory=dict)
    results: tuple[Result, ...] = ()

    @property
    def label(self) -> str:
        return " ".join([self.model, *(f"{k}={v}" for k, v in self.options.items())])


ALEXNET = "Krizhevsky et al. 2012, Table 2 (1 CNN)"
VGG = "Simonyan & Zisserman 2015, Table 3 (S = Q = 256)"
GOOGLENET = "Szegedy et al. 2015, Table 3 (1 model, 1 crop)"
RESNET = "He et al. 2015, Table 3 (10-crop)"
CIFAR = "He et al. 2015, Table 6 (CIFAR-10 test, top-1 only)"
TORCHVISION = "torchvision weights (1-crop)"


def _torchvision(acc1: float, acc5: float) -> Result:
    return Result(f"{100 - acc1:.3f}", f"{100 - acc5:.3f}", TORCHVISION)


VARIANTS = [
    Variant("alexnet", results=(_torchvision(56.522, 79.066),)),
    Variant("alexnet-2012", results=(Result("40.7", "18.2", ALEXNET),)),
    Variant("vgg-a", results=(Result("29.6", "10.4", VGG), _torchvision(69.020, 88.628))),
    Variant("vgg-a-lrn", results=(Result("29.7", "10.5", VGG),)),
    Variant("vgg-b", results=(Result("28.7", "9.9", VGG), _torchvision(69.928, 89.246))),
    Variant("vgg-c", results=(Result("28.1", "9.4", VGG),)),
    Variant("vgg-d", results=(Result("27.0", "8.8", VGG), _torchvision(71.592, 90.382))),
    Variant("vgg-e", results=(Result("27.3", "9.0", VGG), _torchvision(72.376, 90.876))),
    Variant("vgg-a-bn", results=(_torchvision(70.370, 89.810),)),
    Variant("vgg-b-bn", results=(_torchvision(71.586, 90.374),)),
    Variant("vgg-d-bn", results=(_torchvision(73.360, 91.516),)),
    Variant("vgg-e-bn", results=(_torchvision(74.218, 91.842),)),
    Variant("googlenet", results=(Result(None, "10.07", GOOGLENET), _torchvision(69.778, 89.530))),
    Variant("resnet18", results=(_torchvision(69.758, 89.078),)),
    Variant("plain34", results=(Result("28.54", "10.02", RESNET),)),
    Variant("resnet34", {"shortcut": "A"}, (Result("25.03", "7.76", RESNET),)),
    Variant("resnet34", results=(Result("24.52", "7.46", RESNET), _torchvision(73.314, 91.420))),
    Variant("resnet34", {"shortcut": "C"}, (Result("24.19", "7.40", RESNET),)),
    # The paper's bottleneck nets subsample in the first 1x1 convolution; torchvision's ("v1.5") in the 3x3.
    Variant("resnet50", {"stride_in_1x1": True}, (Result("22.85", "6.71", RESNET),)),
    Variant("resnet50", results=(_torchvision(76.130, 92.862),)),
    Variant("resnet101", {"stride_in_1x1": True}, (Result("21.75", "6.05", RESNET),)),
    Variant("resnet101", results=(_torchvision(77.374, 93.546),)),
    Variant("resnet152", {"stride_in_1x1": True}, (Result("21.43", "5.71", RESNET),)),
    Variant("resnet152", results=(_torchvision(78.312, 94.046),)),
    Variant("resnet20", results=(Result("8.75", None, CIFAR),)),
    Variant("resnet32", results=(Result("7.51", None, CIFAR),)),
    Variant("resnet44", results=(Result("7.17", None, CIFAR),)),
    Variant("resnet56", results=(Result("6.97", None, CIFAR),)),
    Variant("resnet110", results=(Result("6.43", None, CIFAR),)),  # best of 5 runs; mean 6.61 +- 0.16
]


def variants(models: list[str]) -> list[Variant]:
    """Every model at its defaults, plus the published variants, in the given model order (published variants
    in the order above)."""
    rows: list[Variant] = []
    for name in models:
        known = [v for v in VARIANTS if v.model == name]
        rows += known if any(not v.options for v in known) else [Variant(name), *known]
    return rows
