"""`cnnlab data PATH_OR_NAME`: what a dataset holds, before training on it: images per class, image sizes,
per-channel mean and std, files skipped, and a contact sheet of a few images of each class."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "data", "Describe a dataset: images per class, sizes, mean and std, unreadable "
                    "files, and a contact sheet PNG of a few images per class.", [
        "cnnlab data photos/                     # a folder: one sub-folder per class",
        "cnnlab data folder:photos --dataset-options '{\"side\": 64}'",
        "cnnlab data cifar-10 --sheet cifar.png  # a registered dataset",
        "cnnlab data photos/ --to-shards shards/  # written out as WebDataset tar shards",
    ], run)
    p.add_argument("dataset", metavar="PATH_OR_NAME", help="a folder of class sub-folders (folder:PATH or a path), "
                   "or a registered dataset name")
    p.add_argument("--dataset-options", metavar="JSON", help="a folder's settings, as for train (side, fit, "
                   "color, test_fraction, split_seed)")
    p.add_argument("--sheet", metavar="PNG", help="where to write the contact sheet (default: "
                   "data-NAME.png here)")
    p.add_argument("--per-class", type=int, default=8, metavar="N", help="images per class on the sheet "
                   "(default 8)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with a registered dataset's files")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--to-shards", metavar="DIR", help="write a folder's train and test splits as WebDataset tar "
                   "shards in DIR (with classes.txt), for --dataset shards:PATTERN")
    p.add_argument("--shard-size", type=int, default=1000, metavar="N", help="images per shard (default 1000)")
    return p


def run(args) -> int:
    import json
    from pathlib import Path

    from cnnlab.data.overview import contact_sheet, overview
    from cnnlab.data.registry import DATASETS, GENERATED, file_label
    from cnnlab.errors import ConfigError

    name = args.dataset
    if ":" not in name and name.lower() not in {**DATASETS, **GENERATED} and Path(name).is_dir():
        name = f"folder:{name}"
    if not 1 <= args.per_class <= 64:
        raise ConfigError(f"--per-class must be from 1 to 64, got {args.per_class}")
    try:
        options = json.loads(args.dataset_options) if args.dataset_options else None
    except json.JSONDecodeError as err:
        raise ConfigError(f"--dataset-options: not valid JSON ({err})") from None
    if options is not None and not isinstance(options, dict):
        raise ConfigError("--dataset-options: expected a JSON object of settings")
    if args.to_shards:
        return _to_shards(name, options, Path(args.to_shards), args.shard_size)
    found = overview(name, options, args.data_dir, quiet=args.json)
    splits = found.pop("_splits")
    sheet = contact_sheet(splits["train"], args.sheet or f"data-{file_label(found['dataset'])}.png", args.per_class)
    found["sheet"] = str(sheet)
    if args.json:
        print(to_json(found, indent=2))
        return 0
    _print(found)
    return 0


def _to_shards(name: str, options: dict | None, out, per_shard: int) -> int:
    from cnnlab.data.folders import is_folder
    from cnnlab.data.registry import dataset_info
    from cnnlab.data.shards import write_shards
    from cnnlab.errors import ConfigError

    if not is_folder(name):
        raise ConfigError(f"--to-shards writes a folder of images out as shards; {name} is not a folder")
    if not 1 <= per_shard <= 10 ** 7:
        raise ConfigError(f"--shard-size must be from 1 to 10000000, got {per_shard}")
    patterns = write_shards(dataset_info(name, options), out, per_shard)
    for split, pattern in patterns.items():
        print(f"{split}: {pattern}")
    print(f"train on them: --dataset 'shards:{patterns['train']}'")
    return 0


def _print(found: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=80)
    images, shape = found["images"], "x".join(map(str, found["shape"]))
    print(found["dataset"])  # a path: printed whole, never folded
    console.print(f"{len(found['classes'])} classes, {images['train']:,} train / {images['test']:,} test images "
                  f"of {shape}")
    sizes = found.get("file_sizes")
    if sizes:
        console.print(f"files: width {_span(sizes['width'])}, height {_span(sizes['height'])} "
                      f"({sizes['distinct']:,} distinct sizes)")
    channels = ("red", "green", "blue") if len(found["mean"]) == 3 else ("grey",)
    console.print("mean " + "  ".join(f"{c} {m:.4f}" for c, m in zip(channels, found["mean"])) +
                  "\nstd  " + "  ".join(f"{c} {s:.4f}" for c, s in zip(channels, found["std"])))
    table = Table()
    for column, justify in (("class", "left"), ("train", "right"), ("test", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    for n, name in enumerate(found["classes"]):
        table.add_row(name, f"{found['per_class']['train'][n]:,}", f"{found['per_class']['test'][n]:,}")
    console.print(table)
    for item in found.get("skipped", []):
        print(f"skipped {item['file']}: {item['why']}")
    if found.get("cache"):
        print(f"decoded set cached in {found['cache']}")
    print(f"contact sheet: {found['sheet']}")


def _span(values: list[int]) -> str:
    low, median, high = values
    return f"{low}" if low == high else f"{low}-{high} (median {median})"
