"""`cnnlab experiment NAME`: run one of the lecture's claims as an experiment and write its numbers and figure."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.experiments import EXPERIMENTS


def add_parser(subparsers):
    p = add_command(subparsers, "experiment", "Test one of the lecture's claims: train small nets, measure, plot.", [
        "cnnlab experiment weight-sharing",
        "cnnlab experiment invariance --quick",
        "CNNLAB_DATA=../shared/data cnnlab experiment depth --out docs/experiments",
    ], run)
    p.add_argument("name", metavar="NAME", choices=EXPERIMENTS, help=f"one of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--quick", action="store_true", help="the seconds-long setting used by the tests")
    p.add_argument("--out", default="experiments", help="parent folder of the output (default experiments/)")
    p.add_argument("--replot", action="store_true", help="only redraw the figure from an earlier result.json")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    p.add_argument("--seeds", type=int, metavar="N", help="repeat with seeds 0..N-1 and give each number's mean "
                   "± std (default: seed 0; transfer: its own 3)")
    return p


def run(args) -> int:
    import torch

    from cnnlab.commands.tables import print_experiment_summary
    from cnnlab.errors import ConfigError
    from cnnlab.experiments.runner import replot, run_experiment

    if args.replot:
        print(f"wrote {replot(args.name, args.out)}")
        return 0

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    record, out = run_experiment(args.name, "quick" if args.quick else "full", args.out, progress=True,
                                 seeds=args.seeds)
    print_experiment_summary(record)
    print(f"{args.name} ({record['setting']} setting, {record['seeds']} seed(s), {record['seconds']:.0f} s) "
          f"wrote:\n  {out / 'result.json'}\n  {out / (args.name + '.png')}")
    return 0
