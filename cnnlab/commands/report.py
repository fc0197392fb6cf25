"""`cnnlab report RUN`: one self-contained HTML page about a run: its results first (curves, accuracy or IoU,
confusion and mistakes, or scenes), then the model layer by layer, the configuration, filters, and the feature maps
and saliency of sample test images. Classification, segmentation and transfer runs alike."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.commands.options import add_model_file_options, open_inspected


def add_parser(subparsers):
    p = add_command(subparsers, "report", "Write a self-contained HTML report of a run (open it in any browser).", [
        "cnnlab report runs/NAME",
        "cnnlab report NAME --out NAME.html --samples 5",
        "cnnlab report --model net.py:Net --weights net.safetensors --out net.html",
    ], run)
    add_model_file_options(p)
    p.add_argument("--out", help="output file (default RUN/report.html; with --model, NAME.html)")
    p.add_argument("--samples", type=int, default=3, help="test images (or scenes) shown layer by layer (default 3)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    return p


def run(args) -> int:
    from pathlib import Path

    from cnnlab.errors import ConfigError

    if args.samples < 0:
        raise ConfigError(f"--samples must be at least 0, got {args.samples}")
    if args.out and not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {Path(args.out).parent} does not exist")
    subject = open_inspected(args)
    from cnnlab.report import write_report

    out = args.out or (None if subject.path else f"{subject.name.rpartition(':')[2]}.html")
    out = write_report(subject, out, args.samples, args.checkpoint)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
