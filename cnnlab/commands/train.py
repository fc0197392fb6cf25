"""`cnnlab train`: train a registered model on a registered dataset and write a run folder."""

from __future__ import annotations

import argparse
import json

from cnnlab.commands import add_command
from cnnlab.errors import ConfigError


def add_parser(subparsers):
    p = add_command(subparsers, "train", "Train a CNN and write a run folder (runs/<name>/).", [
        "cnnlab train                                  # default CNN on MNIST, ~99.2% in ~20 s",
        "cnnlab train --recipe best                    # BN + augmentation, >= 99.6%",
        "cnnlab train --model resnet20 --dataset fashion-mnist --epochs 10",
        "cnnlab train --config runs/NAME/config.json   # reproduce a run",
        "cnnlab train --resume runs/NAME               # continue an interrupted run",
        "cnnlab train --nproc-per-node 2               # data-parallel over 2 processes (torchrun, DDP)",
        "torchrun --nnodes 2 --node-rank 0 --master-addr HOST --nproc-per-node 8 -m cnnlab train  # several machines",
    ], run)
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last finished epoch, with its own config")
    p.add_argument("--recipe", default=None, help="starting settings: default or best (flags override them)")
    p.add_argument("--config", help="a config.json to start from (e.g. an earlier run's)")
    p.add_argument("--model", help="registered model name (default simple-cnn; see `cnnlab zoo`)")
    p.add_argument("--model-options", type=_json_object, help='model options as JSON, e.g. \'{"channels": [8, 16]}\'')
    p.add_argument("--dataset", help="mnist, fashion-mnist or mnist-scenes (default mnist)")
    p.add_argument("--dataset-options", type=_json_object,
                   help='a generated dataset\'s settings as JSON, e.g. \'{"train_scenes": 60000}\' (mnist-scenes)')
    p.add_argument("--engine", choices=["torch", "scratch"], help="torch (default) or the NumPy scratch engine")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--momentum", type=float, help="SGD momentum")
    p.add_argument("--no-nesterov", dest="nesterov", action="store_const", const=False, help="plain SGD momentum")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["constant", "step", "cosine", "onecycle"])
    p.add_argument("--warmup", type=float, help="fraction of steps for warm-up (cosine, onecycle)")
    p.add_argument("--step-size", type=int, help="epochs between decays (step schedule)")
    p.add_argument("--gamma", type=float, help="decay factor (step schedule)")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--class-weights", choices=["none", "inverse-sqrt-frequency", "inverse-frequency"],
                   help="weigh each class's loss by its frequency in the training labels (segmentation: background)")
    p.add_argument("--logit-adjustment", action=argparse.BooleanOptionalAction, default=None,
                   help="fold -log(class weight) into the trained model's output bias, so it predicts with the "
                        "training frequencies rather than the weighted ones (segmentation models)")
    p.add_argument("--augment", type=_json_object,
                   help='random affine jitter, e.g. \'{"max_shift": 2, "max_rotate_deg": 10, "max_scale": 0.1}\'')
    p.add_argument("--stop-at", type=float, metavar="ACC", help="stop once the test accuracy reaches ACC (e.g. 0.99)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto (default): bf16 autocast on CUDA and on CPUs that compute bf16 natively "
                        "(AVX512-BF16, AMX), fp32 elsewhere; `cnnlab info` says which this machine has")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default: on)")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    p.add_argument("--nproc-per-node", type=int, metavar="N",
                   help="launch N data-parallel processes with torchrun (gloo on CPU, NCCL on GPU)")
    p.add_argument("--labels-per-class", type=int, metavar="N",
                   help="train on a balanced subset: N images of each class, drawn with --seed")
    add_data_and_output_options(p)
    return p


def add_data_and_output_options(p) -> None:
    """The options every command that trains shares: which data, and where the run folder goes."""
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test images")
    p.add_argument("--data-dir", help="folder with the dataset files (else $CNNLAB_DATA, data/, cache, download)")
    p.add_argument("--name", help="run folder name (default MODEL-DATASET-TIMESTAMP)")
    p.add_argument("--runs-dir", help="where run folders go (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--quiet", action="store_true", help="no progress or tables; print only the run folder")


def _json_object(text: str) -> dict:
    # ArgumentTypeError, so argparse reports it as a usage error naming the option.
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


FIELDS = ["model", "model_options", "dataset", "dataset_options", "engine", "epochs", "batch_size", "optimizer", "lr",
          "momentum", "nesterov", "weight_decay", "schedule", "warmup", "step_size", "gamma", "label_smoothing",
          "class_weights", "logit_adjustment", "augment", "stop_at", "seed", "device", "precision", "channels_last",
          "compile", "threads", "train_limit", "labels_per_class", "test_limit", "data_dir"]


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def config_from_args(args):
    from cnnlab.train.config import TrainConfig, recipe_config

    overrides = {f: getattr(args, f) for f in FIELDS if getattr(args, f, None) is not None}
    if args.config:
        base = TrainConfig.load(args.config).to_dict()
        if base["transfer"]:
            # Its pretrained weights are not in the config: training it here would start from random ones.
            raise ConfigError(f"--config {args.config}: a transfer run's settings; repeat it with cnnlab transfer "
                              f"--from {base['transfer']['source']['path']} (see its config.json)")
        if args.recipe:
            raise ConfigError("--config and --recipe both set the starting point; give one")
        return TrainConfig.from_dict({**base, **overrides}, source="--config").validate()
    return recipe_config(args.recipe or "default", **overrides)


def run(args) -> int:
    import sys

    from cnnlab.train.trainer import Trainer

    command = getattr(args, "command_words", ["train"])  # `segment train` runs, and relaunches, as itself
    if args.nproc_per_node is not None:
        if args.nproc_per_node < 1:
            raise ConfigError(f"--nproc-per-node must be at least 1, got {args.nproc_per_node}")
        from cnnlab.train.distributed import launch

        argv = sys.argv[1:] if sys.argv[1:1 + len(command)] == command else command
        return launch(args.nproc_per_node, _without_option(argv, "--nproc-per-node"))
    if args.resume:
        stray = [f"--{f.replace('_', '-')}" for f in FIELDS if getattr(args, f, None) is not None]
        if stray or args.config or args.recipe or args.name:
            raise ConfigError(f"--resume continues a run with its own config.json; drop {', '.join(stray) or 'the other settings'}")
        trainer = Trainer.resume(args.resume, progress=not args.quiet)
        config = trainer.config
    else:
        config = config_from_args(args)
        trainer = Trainer(config, name=args.name, runs_dir=args.runs_dir, progress=not args.quiet)
    if not trainer.world.is_main:
        trainer.fit()
        return 0
    if not args.quiet:
        from rich.console import Console

        Console().print(f"[bold]cnnlab {' '.join(command)}[/]: {config.model} on "
                        f"{config.dataset} ({len(trainer.train_data):,} train / {len(trainer.test_data):,} test "
                        f"images), {config.engine} engine on {trainer.device} "
                        f"({trainer.engine.precision}), recipe {config.recipe}")
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        where = f"; resume with: cnnlab train --resume {trainer.run_dir}" if trainer.history else ""
        print(f"cnnlab train: interrupted after {len(trainer.history)} finished epoch(s){where}", file=sys.stderr)
        return 130
    if args.quiet:
        print(result.run_dir)
        return 0
    if trainer.task.name == "segmentation":
        from rich.console import Console

        from cnnlab.commands.segment import print_iou

        print_iou(result.final, trainer.test_data.info.classes,
                  f"{result.run_dir.name}: {len(result.history)} epochs in {result.seconds:.0f} s")
        Console().print(f"see {result.run_dir}/summary.md")
        return 0
    _print_results(result)
    return 0


def _print_results(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Results — {result.run_dir}")
    for column in ("epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds", "images/s"):
        table.add_column(column, justify="right")
    best = max(result.history, key=lambda r: r["test_acc"])
    for r in result.history:
        style = "bold green" if r is best else None
        table.add_row(str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['test_loss']:.4f}",
                      f"{r['test_acc']:.2%}", f"{r['lr']:.2e}", f"{r['seconds']:.1f}", f"{r['images_per_s']:,.0f}",
                      style=style)
    console = Console()
    console.print(table)
    console.print(f"final test accuracy [bold]{result.final_test_acc:.2%}[/] (best {result.best_test_acc:.2%}) in "
                  f"{result.seconds:.1f} s — see {result.run_dir}/summary.md")
