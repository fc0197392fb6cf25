"""`cnnlab summary MODEL`: the per-layer table (layer, output shape, parameters, MACs) with totals, as Keras'
`model.summary()` and torchinfo print it (cnnlab.models.zoo). The model is built on the meta device, so any size
is instant."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.commands.options import json_object, parse_shape
from cnnlab.errors import ConfigError
from cnnlab.text import WIDTH


def add_parser(subparsers):
    p = add_command(subparsers, "summary", "Show a model layer by layer: output shapes, parameters, MACs.", [
        "cnnlab summary resnet20 --input 1x28x28",
        "cnnlab summary vgg16         # native input, 3x224x224, 1000 classes",
        "cnnlab summary resnet34 --model-options '{\"shortcut\": \"A\"}'",
    ], run)
    p.add_argument("model", help="registered model name (see `cnnlab zoo`)")
    p.add_argument("--input", help="input shape CxHxW, e.g. 1x28x28 (default: the model's native input)")
    p.add_argument("--classes", type=int, help="number of classes (default: the model's native count; with --input, "
                                               "10 digits, 11 for segmentation, as `cnnlab zoo --input`)")
    p.add_argument("--model-options", type=json_object, metavar="JSON",
                   help='model options as JSON, e.g. \'{"activation": "prelu"}\'')
    p.add_argument("--markdown", action="store_true", help="a Markdown table with exact MACs (wider than a terminal)")
    return p


def run(args) -> int:
    from cnnlab.models import model_info
    from cnnlab.models.zoo import class_count, layer_table

    entry = model_info(args.model)
    shape = parse_shape(args.input) if args.input else entry.input_size
    classes = class_count(entry.name, args.input is not None, args.classes)
    if classes < 1:
        raise ConfigError(f"--classes must be at least 1, got {classes}")
    print(layer_table(entry.name, shape, classes, args.model_options or {}, None if args.markdown else WIDTH))
    return 0
