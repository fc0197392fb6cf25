"""The architecture zoo as tables (`cnnlab zoo`, `cnnlab summary`): every registered architecture, counted from the code, next to its published errors.

Each table comes as Markdown (`width=None`: docs/zoo.md holds it) or as plain text fitted to a terminal's `width`.

Counts are at each model's native input and class count (ImageNet nets: 3x224x224 and 1000 classes), or at the
`--input` given (published errors are then left out: they belong to the native networks). Models are built on the
meta device so that nothing is computed. MACs are multiply-accumulates of convolutions, transposed convolutions and
fully connected layers (see `cnnlab.models.complexity`). The VGG table is the paper's Table 1, read back from the built models.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
import textwrap

import torch

from cnnlab.data.registry import DATASETS, GENERATED
from cnnlab.errors import ConfigError, first_line
from cnnlab.models.registry import get_model, list_models, model_info
from cnnlab.models.complexity import profile, weight_layers
from cnnlab.models.published import variants
from cnnlab.models.receptive import fields_per_call
from cnnlab.models.vgg import CONFIGS
from cnnlab.text import human, markdown_table, text_table

FAMILIES = {  # family: title, in the order the lecture walks through them
    "simple": "cnnlab's own small nets: the default CNN, a deeper CNN, an MLP",
    "lenet": "LeNet (LeCun et al. 1998)",
    "alexnet": "AlexNet (Krizhevsky et al. 2012)",
    "vgg": "VGG (Simonyan & Zisserman 2015)",
    "googlenet": "GoogLeNet (Szegedy et al. 2015)",
    "resnet": "Plain nets and ResNets on ImageNet (He et al. 2015)",
    "resnet-cifar": "Plain nets and ResNets on CIFAR-10 (He et al. 2015, Section 4.2)",
    "fcn": "Segmentation: fully convolutional networks, FCN-32s/16s/8s (Long et al. 2015)",
    "unet": "Segmentation: U-Net (Ronneberger et al. 2015)",
}


def class_count(name: str, at_input: bool, classes: int | None = None) -> int:
    """`classes` if given; else the model's native count, or at a given input the count of cnnlab's first dataset
    for the model's task (10 digits; background and 10 digits for segmentation), which is what a run of it has."""
    if classes is not None:
        return classes
    entry = model_info(name)
    if not at_input:
        return entry.num_classes
    return next(info for info in (*DATASETS.values(), *GENERATED.values()) if info.task == entry.task).num_classes


def build(name: str, shape: tuple[int, int, int] | None = None, classes: int | None = None,
          **options) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The model on the meta device (parameters without storage), at its native input and class count unless
    `shape` / `classes` are given."""
    entry = model_info(name)
    shape = shape or entry.input_size
    with torch.device("meta"):
        model = get_model(name, num_classes=class_count(name, shape != entry.input_size, classes),
                          in_channels=shape[0], input_size=shape[-1], **options)
    return model, shape


def family_table(family: str, shape: tuple[int, int, int] | None = None, classes: int | None = None,
                 width: int | None = None) -> str:
    """A family's models, counted, with their published errors at the native input: one row per result in
    Markdown, and in text (`width`) one row per model with its results on the lines below it."""
    rows, notes = [], {}
    for variant in variants(list_models(family=family)):
        model, input_shape = build(variant.model, shape, classes, **variant.options)
        counted = profile(model, input_shape)
        cells = [variant.label, "x".join(map(str, input_shape)), str(counted.weight_layers),
                 f"{counted.params:,}", human(counted.macs)]
        results = [] if shape else variant.results  # published errors belong to the native networks
        if width:
            notes[len(rows)] = [f"top-1 err {_pct(r.top1)}%, top-5 err {_pct(r.top5)}%: {r.source}" for r in results]
            rows.append(cells)
            continue
        if shape:
            rows.append(cells)
            continue
        for i, result in enumerate(results or (None,)):
            errors = ["", "", ""] if result is None else [_pct(result.top1), _pct(result.top5), result.source]
            rows.append((cells if i == 0 else [""] * len(cells)) + errors)
    headers = ["model", "input", "weight layers", "parameters", "MACs"]
    if width:
        return text_table(headers, rows, right={2, 3, 4}, width=width, notes=notes)
    if not shape:
        headers += ["top-1 err %", "top-5 err %", "source"]
    return markdown_table(headers, rows, right={2, 3, 4, 5, 6})


def _pct(value: str | None) -> str:
    return "-" if value is None else value


def vgg_table(shape: tuple[int, int, int] | None = None, classes: int | None = None, width: int | None = None) -> str:
    """The paper's Table 1 (and Table 2's parameter counts), one column per configuration."""
    columns, params, depths = {}, {}, {}
    for config in CONFIGS:
        model, shape_used = build(f"vgg-{config.lower()}", shape, classes)
        columns[config] = _vgg_cells(model)
        params[config] = sum(p.numel() for p in model.parameters())
        depths[config] = weight_layers(model, shape_used)
    side = f"{shape_used[1]}x{shape_used[2]} " + ("RGB" if shape_used[0] == 3 else f"{shape_used[0]}-channel")
    rows = [["weight layers", *(str(d) for d in depths.values())], ["input", *[side] * len(CONFIGS)]]
    blocks = {c: _split_blocks(cells) for c, cells in columns.items()}
    for b in range(max(len(v) for v in blocks.values())):
        height = max(len(v[b]) for v in blocks.values())
        for r in range(height):
            rows.append([""] + [v[b][r] if r < len(v[b]) else "" for v in blocks.values()])
    rows.append(["parameters", *(f"{p / 1e6:.0f} M" for p in params.values())])
    return _table(["ConvNet configuration", *CONFIGS], rows, width=width)


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


def resnet_table(width: int | None = None) -> str:
    """The ResNet paper's Table 1, one column per depth, read back from the built models (the paper's layout:
    parameter-free shortcuts A for 18/34, stride in the first 1x1 convolution for 50-152)."""
    columns, sizes = {}, {}
    for depth, options in RESNET_TABLE_1_LAYOUT.items():
        model, shape = build(f"resnet{depth}", **options)
        maps = _stage_outputs(model, shape)
        sizes = {stage: f"{s[-2]}x{s[-1]}" for stage, s in maps.items()}
        stem = model.conv1
        cells = [f"{stem.kernel_size[0]}x{stem.kernel_size[1]}, {stem.out_channels}, stride {stem.stride[0]}"]
        for index in range(1, model.num_stages + 1):
            stage = getattr(model, f"layer{index}")
            convs = [m for name, m in stage[0].named_modules() if isinstance(m, torch.nn.Conv2d)
                     and not name.startswith("downsample")]
            block = "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in convs)
            cells.append(f"[{block}] x {len(stage)}")
        cells += [f"average pool, {model.fc.out_features}-d fc, softmax", human(profile(model, shape).macs)]
        columns[depth] = cells
    names = ["conv1", *(f"conv{i}_x" for i in range(2, 6)), "", "MACs"]
    outputs = [sizes.get("conv1", ""), *(sizes.get(f"layer{i}", "") for i in range(1, 5)), "1x1", ""]
    rows = [[name, size, *(column[i] for column in columns.values())]
            for i, (name, size) in enumerate(zip(names, outputs))]
    rows.append(["MACs, the paper", "", *PAPER_TABLE_1_MACS.values()])
    return _table(["layer name", "output size", *(f"{d}-layer" for d in columns)], rows, width=width)


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset(), whole: set[int] = frozenset(),
           width: int | None = None) -> str:
    """Markdown, or without `width` plain text fitted to it."""
    return text_table(headers, rows, right, whole, width) if width else markdown_table(headers, rows, right)


RESNET_TABLE_1_LAYOUT = {18: {"shortcut": "A"}, 34: {"shortcut": "A"}, 50: {"stride_in_1x1": True},
                         101: {"stride_in_1x1": True}, 152: {"stride_in_1x1": True}}
PAPER_TABLE_1_MACS = {18: "1.8 G", 34: "3.6 G", 50: "3.8 G", 101: "7.6 G", 152: "11.3 G"}  # its "FLOPs" row


def _stage_outputs(model, shape) -> dict[str, tuple[int, ...]]:
    """Output shapes of the first convolution (before the stem's max-pool, as the paper lists it) and stages."""
    shapes, handles = {}, []

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)
        return hook

    for name in ["conv1", *(f"layer{i}" for i in range(1, model.num_stages + 1))]:
        handles.append(getattr(model, name).register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.empty((1, *shape), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return shapes


def render(families: list[str], shape: tuple[int, int, int] | None = None, classes: int | None = None,
           width: int | None = None) -> str:
    """The zoo's page: Markdown (docs/zoo.md), or text whose every line fits `width` columns."""
    counted = f"{classes} classes" if classes else "10 classes (segmentation: 11, background and 10 digits)"
    where = (f"at a {'x'.join(map(str, shape))} input with {counted}" if shape else
             "at its native input and class count (ImageNet: 3x224x224, 1000 classes)")
    command = (f"cnnlab zoo --input {'x'.join(map(str, shape))}" if shape else "cnnlab zoo") + \
        ("" if width else " --markdown")
    parts = [f"Generated by `{command}`. Every count comes from the code: each model is built {where} "
             "on the meta device; *weight layers* is the "
             "longest chain of convolutions and fully connected layers from input to output; *MACs* are the "
             "multiply-accumulates of convolutions, transposed convolutions and fully connected layers for one "
             "image (`cnnlab.models.complexity`; half the FLOPs torch's `FlopCounterMode` counts). A model's name with options (e.g. `resnet34 shortcut=A`) is built with "
             "`get_model(name, **options)`."
             + ("" if shape else " Errors are as published: ImageNet (ILSVRC-2012 validation) for the ImageNet "
                "nets, CIFAR-10 test for the CIFAR nets.")]
    for family in families:
        parts += ["", f"## {FAMILIES.get(family, family)}", "",
                  family_table(family, shape, classes if shape else None, width)]
        if family == "vgg":
            parts += ["", "### The VGG configurations (the paper's Table 1, read back from the built models)", "",
                      vgg_table(shape, classes if shape else None, width)]
        if family == "resnet" and not shape:
            parts += ["", "### The ResNet architectures (the paper's Table 1, read back from the built models)", "",
                      resnet_table(width)]
    if width:  # prose and headings wrapped; tables already fit
        parts = [part if "\n" in part or len(part) <= width else
                 "\n".join(textwrap.wrap(part, width, break_on_hyphens=False)) for part in parts]
    return "\n".join(parts)


@dataclass
class Summary:
    """A model layer by layer: output shapes, receptive fields, parameters, MACs, and the totals. Printed, it is
    `cnnlab summary --markdown`'s table (`text(width)` fits it to a terminal); in Jupyter, an HTML table."""
    title: str
    headers: list[str]
    rows: list[list[str]]
    totals: list[tuple[str, str]]
    macs: list[int]  # each row's, exact in `rows`; a narrow table shows them as 1.2 M

    LEGEND = ("receptive field: the input pixels one output pixel sees (size), / the jump between neighbouring "
              "output pixels' fields (cnnlab.models.receptive); all: the whole input")

    def text(self, width: int | None = None) -> str:
        """As Markdown (`width=None`), or as plain text fitted to `width` (MACs then as 1.2 M, layer names broken
        after a dot where they must)."""
        rows = self.rows if width is None else [[*row[:-1], human(macs) if macs else ""]
                                                for row, macs in zip(self.rows, self.macs)]
        table = _table(self.headers, rows, right={3, 4, 5}, width=width)
        pad = max(len(name) for name, _ in self.totals) + 2
        totals = [self.title, *(f"{name + ':':<{pad}}{value}" for name, value in self.totals)]
        if width:
            totals = [wrapped for line in totals for wrapped in (
                textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False) if len(line) > width
                else [line])]
        legend = textwrap.fill(self.LEGEND, width or 80, break_on_hyphens=False)
        return "\n".join([table, "", *totals, legend])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        cell = "<td style='text-align:{}'>{}</td>"
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(cell.format("right" if i >= 3 else "left", html.escape(v))
                                        for i, v in enumerate(row)) + "</tr>" for row in self.rows)
        totals = "".join(f"<tr><th style='text-align:left'>{html.escape(n)}</th><td>{html.escape(v)}</td></tr>"
                         for n, v in self.totals)
        return (f"<div><b>{html.escape(self.title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                f"</table><table>{totals}</table><small>{html.escape(self.LEGEND)}</small></div>")


def summarize(model: torch.nn.Module, shape: tuple[int, int, int], title: str) -> Summary:
    """The Summary of any model (registered or your own; on the meta device or with its weights) at a [C, H, W]
    input; `title` begins with the model's name and a colon."""
    try:
        counted = profile(model, shape)
    except RuntimeError as err:  # e.g. an input too small for the layers' kernels
        raise ConfigError(f"{title.partition(':')[0]} cannot take a {'x'.join(map(str, shape))} input: "
                          f"{first_line(err)}") from None
    fields = fields_per_call(model, shape)  # the same calls, in the same order, as the profile's rows
    rows = [[r.name, r.kind, "x".join(map(str, r.output_shape)), field.describe() if field else "",
             f"{r.params:,}" if r.params else "", f"{r.macs:,}" if r.macs else ""]
            for r, (_, field) in zip(counted.rows, fields)]
    unused = counted.params - sum(r.params for r in counted.rows)
    totals = [
        ("weight layers", str(counted.weight_layers)),
        ("parameters", f"{counted.params:,} ({human(counted.params)})" + (
            f", {unused:,} of them in layers an inference pass does not run (auxiliary heads)" if unused else "")),
        ("trainable parameters", f"{counted.trainable:,}"),
        ("MACs per image", f"{counted.macs:,} ({human(counted.macs)})"),
    ]
    return Summary(title, ["layer", "type", "output", "receptive field", "parameters", "MACs"], rows, totals,
                   [r.macs for r in counted.rows])


def summary(model, input_shape: tuple[int, int, int] | None = None, classes: int | None = None,
            **options) -> Summary:
    """A model layer by layer, as `cnnlab summary` prints it and Keras's `model.summary()` or torchinfo show it:
    `model` a registered name (built on the meta device, at its native input unless `input_shape` is given) or a
    torch module of your own (at `input_shape`, default 1x28x28).

    >>> table = cnnlab.models.summary("simple-cnn")
    >>> table.rows[0][:3]
    ['conv1', 'Conv2d', '16x24x24']
    >>> table.totals[1]
    ('parameters', '80,202 (80.2 k)')
    """
    if isinstance(model, torch.nn.Module):
        shape = tuple(input_shape or (1, 28, 28))
        return summarize(model, shape, f"{type(model).__name__}: input {'x'.join(map(str, shape))}")
    entry = model_info(model)
    shape = tuple(input_shape or entry.input_size)
    num_classes = class_count(entry.name, input_shape is not None, classes)
    if num_classes < 1:
        raise ConfigError(f"--classes must be at least 1, got {num_classes}")
    with torch.device("meta"):
        built = get_model(entry.name, num_classes=num_classes, in_channels=shape[0], input_size=shape[-1],
                          **options)
    return summarize(built, shape, f"{entry.name}: input {'x'.join(map(str, shape))}, {num_classes} classes"
                     + (f", options {json.dumps(options)}" if options else ""))


def layer_table(name: str, shape: tuple[int, int, int], num_classes: int, options: dict,
                width: int | None = None) -> str:
    """`cnnlab summary`: as Markdown, or as text fitted to `width`."""
    return summary(name, shape, num_classes, **options).text(width)


def families() -> list[str]:
    """Every registered family: those with a title in the order the lecture walks through them, then the rest."""
    known = [f for f in FAMILIES if list_models(family=f)]
    return known + sorted({model_info(n).family for n in list_models()} - set(known))
