"""`cnnlab export RUN --format onnx`: a run's model as a file other tools run (ONNX Runtime) and draw (Netron), with
the class names and the input normalization in its metadata (cnnlab.export)."""

from __future__ import annotations

from cnnlab.commands import add_command



def add_parser(subparsers):
    p = add_command(subparsers, "export", "Export a run's model as ONNX (ONNX Runtime, Netron), with class names "
                                          "and input normalization.", [
        "cnnlab export runs/NAME                    # writes runs/NAME/model.onnx",
        "cnnlab export NAME --out digits.onnx --checkpoint best",
    ], run)
    p.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format (default onnx)")
    p.add_argument("--out", metavar="FILE", help="output file (default RUN/model.onnx)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    return p


def run(args) -> int:
    from cnnlab.train.runs import Run

    trained = Run.open(args.run)  # before torch loads: a mistyped name is refused at once
    from cnnlab.export import export_run

    out = export_run(trained, args.out, args.checkpoint)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0
