"""`cnnlab zoo`: every registered architecture, counted from the code, next to its published errors; the tables
are built by `cnnlab.models.zoo`."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.commands.options import parse_shape
from cnnlab.errors import ConfigError
from cnnlab.text import WIDTH


def add_parser(subparsers):
    p = add_command(subparsers, "zoo", "List the architecture zoo: layers, parameters, MACs, published errors.", [
        "cnnlab zoo                      # every family",
        "cnnlab zoo --family resnet      # one family",
        "cnnlab zoo --input 1x28x28      # each model on MNIST-size images (10 classes)",
        "cnnlab zoo --markdown           # the wide Markdown tables of docs/zoo.md",
    ], run)
    p.add_argument("--family", help="one family, e.g. resnet, or fcn and unet for segmentation (default: all)")
    p.add_argument("--input", help="count at this input shape CxHxW instead of each model's native one")
    p.add_argument("--classes", type=int, help="number of classes with --input (default: 10 digits; segmentation 11)")
    p.add_argument("--markdown", action="store_true", help="Markdown tables, one row per published result (wider "
                   "than a terminal; docs/zoo.md holds them)")
    return p


def run(args) -> int:
    from cnnlab.models.zoo import families, render

    known = families()
    if args.family and args.family not in known:
        raise ConfigError(f"--family: unknown family {args.family!r} (one of {', '.join(known)})")
    shape = parse_shape(args.input) if args.input else None
    if args.classes is not None and args.classes < 1:
        raise ConfigError(f"--classes must be at least 1, got {args.classes}")
    print("# The cnnlab architecture zoo\n")
    print(render([args.family] if args.family else known, shape, args.classes, None if args.markdown else WIDTH))
    return 0

