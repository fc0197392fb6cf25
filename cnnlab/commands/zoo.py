"""`cnnlab zoo`: every registered architecture, counted from the code, next to its published ImageNet errors.

Counts are at each model's native input and class count (ImageNet nets: 3x224x224 and 1000 classes), built on
the meta device so that nothing is computed. MACs are multiply-accumulates of convolutions and fully connected
layers (see `cnnlab.models.complexity`). The VGG table is the paper's Table 1, read back from the built models.
"""

from __future__ import annotations

import torch

from cnnlab.commands import add_command
from cnnlab.commands.tables import human, markdown_table
from cnnlab.errors import ConfigError
from cnnlab.models import get_model, list_models, model_info
from cnnlab.models.complexity import profile, weight_layers
from cnnlab.models.published import variants
from cnnlab.models.vgg import CONFIGS

FAMILIES = {  # family: title, in the order the seed walks through them
    "simple": "The default cnnlab CNN",
    "lenet": "LeNet (LeCun et al. 1998)",
    "alexnet": "AlexNet (Krizhevsky et al. 2012)",
    "vgg": "VGG (Simonyan & Zisserman 2015)",
    "googlenet": "GoogLeNet (Szegedy et al. 2015)",
    "resnet": "Plain nets and ResNets on ImageNet (He et al. 2015)",
    "resnet-cifar": "Plain nets and ResNets on CIFAR-10 (He et al. 2015, Section 4.2)",
}


def add_parser(subparsers):
    p = add_command(subparsers, "zoo", "List the architecture zoo: layers, parameters, MACs, published errors.", [
        "cnnlab zoo                      # every family",
        "cnnlab zoo --family resnet      # one family",
        "cnnlab zoo > docs/zoo.md        # the tables are Markdown",
    ], run)
    p.add_argument("--family", help=f"one family: {', '.join(FAMILIES)}")
    return p


def build_native(name: str, **options) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The model at its native input and class count, on the meta device (parameters without storage)."""
    entry = model_info(name)
    with torch.device("meta"):
        model = get_model(name, num_classes=entry.num_classes, in_channels=entry.input_size[0], **options)
    return model, entry.input_size


def family_table(family: str) -> str:
    rows = []
    for variant in variants(list_models(family=family)):
        model, shape = build_native(variant.model, **variant.options)
        counted = profile(model, shape)
        cells = [variant.label, "x".join(map(str, shape)), str(weight_layers(model, shape)), f"{counted.params:,}",
                 human(counted.macs)]
        results = variant.results or (None,)
        for i, result in enumerate(results):
            errors = ["", "", ""] if result is None else [_pct(result.top1), _pct(result.top5), result.source]
            rows.append((cells if i == 0 else [""] * len(cells)) + errors)
    headers = ["model", "input", "weight layers", "parameters", "MACs", "top-1 err %", "top-5 err %", "source"]
    return markdown_table(headers, rows, right={2, 3, 4, 5, 6})


def _pct(value: str | None) -> str:
    return "-" if value is None else value


def vgg_table() -> str:
    """The paper's Table 1 (and Table 2's parameter counts), one column per configuration."""
    columns, params, depths = {}, {}, {}
    for config in CONFIGS:
        model, shape = build_native(f"vgg-{config.lower()}")
        columns[config] = _vgg_cells(model)
        params[config] = sum(p.numel() for p in model.parameters())
        depths[config] = weight_layers(model, shape)
    rows = [["weight layers", *(str(d) for d in depths.values())], ["input", *["224x224 RGB"] * len(CONFIGS)]]
    blocks = {c: _split_blocks(cells) for c, cells in columns.items()}
    for b in range(max(len(v) for v in blocks.values())):
        height = max(len(v[b]) for v in blocks.values())
        for r in range(height):
            rows.append([""] + [v[b][r] if r < len(v[b]) else "" for v in blocks.values()])
    rows.append(["parameters", *(f"{p / 1e6:.0f} M" for p in params.values())])
    return markdown_table(["ConvNet configuration", *CONFIGS], rows)


def _vgg_cells(model) -> list[str]:
    cells = []
    for module in [*model.features, *model.classifier]:
        if isinstance(module, torch.nn.Conv2d):
            cells.append(f"conv{module.kernel_size[0]}-{module.out_channels}")
        elif isinstance(module, torch.nn.LocalResponseNorm):
            cells.append("LRN")
        elif isinstance(module, torch.nn.MaxPool2d):
            cells.append("maxpool")
        elif isinstance(module, torch.nn.Linear):
            cells.append(f"FC-{module.out_features}")
    return cells + ["soft-max"]


def _split_blocks(cells: list[str]) -> list[list[str]]:
    """Rows of the paper's table: each stack of convolutions is a block, each max-pool and FC a row of its own."""
    blocks: list[list[str]] = [[]]
    for cell in cells:
        if cell.startswith(("conv", "LRN")):
            blocks[-1].append(cell)
        else:
            blocks += [[cell], []]
    return [b for b in blocks if b]


def render(families: list[str]) -> str:
    parts = ["# The cnnlab architecture zoo", "",
             "Generated by `cnnlab zoo`. Every count comes from the code: each model is built at its native input "
             "and class count (ImageNet: 3x224x224, 1000 classes) on the meta device; *weight layers* is the "
             "longest chain of convolutions and fully connected layers from input to output; *MACs* are the "
             "multiply-accumulates of convolutions and fully connected layers for one image "
             "(`cnnlab.models.complexity`). Errors are as published: ImageNet (ILSVRC-2012 validation) for the "
             "ImageNet nets, CIFAR-10 test for the CIFAR nets; "
             "a model's name with options (e.g. `resnet34 shortcut=A`) is built with "
             "`get_model(name, **options)`."]
    for family in families:
        parts += ["", f"## {FAMILIES.get(family, family)}", "", family_table(family)]
        if family == "vgg":
            parts += ["", "### The VGG configurations (the paper's Table 1, read back from the built models)", "",
                      vgg_table()]
    return "\n".join(parts)


def run(args) -> int:
    known = [f for f in FAMILIES if list_models(family=f)]
    known += sorted({model_info(n).family for n in list_models()} - set(known))
    if args.family and args.family not in known:
        raise ConfigError(f"--family: unknown family {args.family!r} (one of {', '.join(known)})")
    print(render([args.family] if args.family else known))
    return 0

