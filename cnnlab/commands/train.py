"""`cnnlab train`: train a registered model on a registered dataset and write a run folder."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.commands.options import add_config_options, add_output_options, config_overrides
from cnnlab.errors import ConfigError


def add_parser(subparsers, name: str = "train", recipe: str = "default", description: str | None = None,
               examples: list[str] | None = None):
    """`cnnlab train`; `segment train` is the same command built for the segmentation recipe."""
    p = add_command(subparsers, name, description or "Train a CNN and write a run folder (runs/<name>/).", examples or [
        "cnnlab train     # the default CNN, ~99.2%: 14 s on 2 Zen 5 cores, 26 s on 2 Zen 3 cores",
        "cnnlab train --threads 1        # on a busy machine (the header says when): often faster",
        "cnnlab train --recipe best      # BN + augmentation, 12 epochs: 99.66%",
        "cnnlab train --model resnet20 --dataset fashion-mnist --epochs 10",
        "cnnlab train --config runs/NAME/config.json     # reproduce a run",
        "cnnlab train --resume runs/NAME                 # continue an interrupted run",
        "cnnlab train --nproc-per-node 2  # 2 data-parallel processes (torchrun, DDP)",
        "torchrun --nnodes 2 --node-rank 0 --master-addr HOST --nproc-per-node 8 -m cnnlab train  # several machines",
    ], run)
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last finished epoch, with its own config")
    p.add_argument("--config", help="a config.json to start from (e.g. an earlier run's)")
    add_config_options(p, recipe=recipe)
    p.add_argument("--nproc-per-node", type=int, metavar="N",
                   help="launch N data-parallel processes with torchrun (gloo on CPU, NCCL on GPU)")
    add_output_options(p)
    return p


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

    overrides = config_overrides(args)
    recipe = overrides.pop("recipe", None)
    if args.config:
        base = TrainConfig.load(args.config).to_dict()
        if base["transfer"]:
            # Its pretrained weights are not in the config: training it here would start from random ones.
            raise ConfigError(f"--config {args.config}: a transfer run's settings; repeat it with cnnlab transfer "
                              f"--from {base['transfer']['source']['path']} (see its config.json)")
        if recipe:
            raise ConfigError("--config and --recipe both set the starting point; give one")
        return TrainConfig.from_dict({**base, **overrides}, source="--config").validate()
    return recipe_config(recipe or "default", **overrides)


def run(args) -> int:
    import sys

    command = getattr(args, "command_words", ["train"])  # `segment train` runs, and relaunches, as itself
    # Every setting is checked before torch loads (seconds): a mistyped value is refused at once.
    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be at least 1, got {args.nproc_per_node}")
    if args.resume:
        from cnnlab.train.runs import find_run

        stray = [f"--{f.replace('_', '-')}" for f in config_overrides(args)]
        if stray or args.config or args.name:
            raise ConfigError(f"--resume continues a run with its own config.json; drop {', '.join(stray) or 'the other settings'}")
        find_run(args.resume)
    else:
        config = config_from_args(args)
    if args.nproc_per_node is not None:
        from cnnlab.train.distributed import launch

        argv = sys.argv[1:] if sys.argv[1:1 + len(command)] == command else command
        return launch(args.nproc_per_node, _without_option(argv, "--nproc-per-node"))

    from cnnlab.commands.tables import print_training
    from cnnlab.train.trainer import Trainer

    if args.resume:
        trainer = Trainer.resume(args.resume, progress=not args.quiet)
        config = trainer.config
    else:
        trainer = Trainer(config, name=args.name, runs_dir=args.runs_dir, progress=not args.quiet)
    if not trainer.is_main:
        trainer.fit()
        return 0
    if not args.quiet:
        import torch
        from rich.console import Console

        from cnnlab.hardware import busy_note

        console = Console()
        console.print(f"[bold]cnnlab {' '.join(command)}[/]: {trainer.describe()}")
        note = busy_note(torch.get_num_threads()) if trainer.device.type == "cpu" else None
        if note:
            console.print(f"[yellow]note[/]: {note}")
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        # the command on a line of its own: the sentence fits 80 columns, and the command copies whole
        where = f"; resume with:\n  cnnlab train --resume {trainer.run_dir}" if trainer.history else ""
        print(f"cnnlab {' '.join(command)}: interrupted after {len(trainer.history)} finished epoch(s){where}",
              file=sys.stderr)
        return 130
    if args.quiet:
        print(result.run_dir)
        return 0
    print_training(result)
    return 0
