"""`cnnlab transfer`: train on a new dataset starting from a run's (or a torchvision checkpoint's) weights."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.commands.options import add_config_options, add_output_options, config_overrides, json_object

# The training settings a transfer run takes from the command line (TrainConfig fields); the model, its
# options and the dataset are the source's and the target's.
SETTINGS = ["dataset_options", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "seed",
            "device", "threads", "train_limit", "test_limit", "data_dir", "labels_per_class", "augment", "workers",
            "checkpoint_every"]


def add_parser(subparsers):
    p = add_command(subparsers, "transfer", "Reuse a trained network for another dataset: new head, "
                    "frozen or fine-tuned backbone.", [
        "cnnlab transfer --from runs/NAME --dataset fashion-mnist --mode feature-extract --labels-per-class 10",
        "cnnlab transfer --from runs/NAME --dataset fashion-mnist --mode fine-tune --freeze-until conv1",
        "cnnlab transfer --from resnet18-f37072fd.pth --dataset mnist --mode fine-tune --lr-backbone 1e-4",
    ], run)
    p.add_argument("--from", dest="source", required=True, metavar="RUN_OR_WEIGHTS",
                   help="a run folder (either engine), or a .safetensors/.pth weights file (torchvision layout)")
    p.add_argument("--dataset", required=True, help=f"the target dataset: {', '.join(_classification_datasets())}, "
                   "or folder:PATH (grey or colour: a first layer is adapted either way)")
    p.add_argument("--mode", required=True, choices=["feature-extract", "fine-tune"],
                   help="feature-extract: train the new head only; fine-tune: train everything not frozen")
    p.add_argument("--freeze-until", metavar="LAYER", help="fine-tune: freeze LAYER and every layer before it")
    p.add_argument("--lr-backbone", type=float, metavar="X",
                   help="fine-tune: learning rate of the pretrained layers (default: --lr, as the head)")
    p.add_argument("--model", help="the model a weights file holds (default: read from the file or its name)")
    p.add_argument("--model-options", type=json_object, help="the source model's options, as JSON")
    p.add_argument("--input", metavar="CxHxW",
                   help="build the model for this input shape and resize the images to it (C: the dataset's "
                        "channels; default: the smallest side at which the pretrained layers fit)")
    add_config_options(p, SETTINGS)
    add_output_options(p)
    return p


def _classification_datasets() -> list[str]:
    """The registered datasets of the task transfer trains for: the default recipe's (a new classifier head)."""
    from cnnlab.data.registry import DATASETS
    from cnnlab.train.config import recipe_task

    return [name for name, info in DATASETS.items() if info.task == recipe_task("default")]


def run(args) -> int:
    from cnnlab.train.config import recipe_config

    settings = config_overrides(args, SETTINGS)
    # The settings' values and ranges, and the source, checked before torch loads: a typo is refused at once.
    recipe_config("default", dataset=args.dataset, **settings)
    source = _source(args.source)
    from rich.console import Console

    from cnnlab.commands.tables import print_training
    from cnnlab.transfer import prepare
    from cnnlab.train.trainer import Trainer

    side = _input_side(args) if args.input else None
    config, model = prepare(source, args.dataset, args.mode, freeze_until=args.freeze_until,
                            lr_backbone=args.lr_backbone, model=args.model, model_options=args.model_options,
                            input_size=side, **settings)
    trainer = Trainer(config, name=args.name, runs_dir=args.runs_dir, progress=not args.quiet, model=model)
    if not args.quiet:
        spec = config.transfer
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        adapted = [f"new head {', '.join(spec['head'])}"]
        first = spec["first_layer"]
        if first and first["rule"] == "sum":
            adapted.append(f"{first['layer']}'s kernels summed over {first['from_channels']} colour channels "
                           "(a grey image's response unchanged)")
        elif first:
            adapted.append(f"{first['layer']}'s grey kernels spread over {first['to_channels']} colour channels "
                           "(the kernel on the channels' mean)")
        if spec["input_size"] != trainer.input_shape[-1]:
            adapted.append(f"inputs resized to {spec['input_size']}x{spec['input_size']}")
        console = Console()
        console.print(f"[bold]cnnlab transfer[/]: {config.model} to {config.dataset}, {args.mode}; "
                      f"{'; '.join(adapted)}; {trainable:,} of {total:,} parameters trained on "
                      f"{trainer.train_size:,} images")
        # the source on a line of its own: a path is never broken (the terminal wraps it, if it must)
        console.print(f"  from {source} (sha256 {spec['source']['sha256'][:12]})", soft_wrap=True, highlight=False)
    result = trainer.fit()
    if args.quiet:
        print(result.run_dir)
        return 0
    print_training(result)
    return 0


def _source(name: str):
    """--from's weights file, or run folder (a path, or a run's name in the runs folder)."""
    from pathlib import Path

    from cnnlab.train.runs import find_run

    path = Path(name)
    return path if path.is_file() else find_run(path, "run folder or weights file")


def _input_side(args) -> int:
    """The side of `--input CxHxW`, once C is checked against the target dataset's images."""
    from cnnlab.commands.options import parse_shape
    from cnnlab.data import load_dataset
    from cnnlab.errors import ConfigError

    channels, side, _ = parse_shape(args.input)
    images = load_dataset(args.dataset, "test", args.data_dir, quiet=True, options=args.dataset_options).images
    has = images.shape[1] if images.ndim == 4 else 1
    if channels != has:
        raise ConfigError(f"--input {args.input}: {args.dataset} images have {has} channel(s), not {channels}")
    return side
