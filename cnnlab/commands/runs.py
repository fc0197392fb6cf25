"""`cnnlab runs`: the table of run folders with their accuracy and time."""

from __future__ import annotations

from cnnlab.commands import add_command


def add_parser(subparsers):
    p = add_command(subparsers, "runs", "List training runs with best accuracy and time.", [
        "cnnlab runs",
        "cnnlab runs --runs-dir experiments/runs --json",
    ], run)
    p.add_argument("--runs-dir", help="folder of run folders (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    import json

    from cnnlab.train.runs import RUNS_DIR, list_runs

    rows = []
    for r in list_runs(args.runs_dir):
        metrics = r.metrics()
        rows.append({"name": r.name, "model": r.config.model, "dataset": r.config.dataset, "engine": r.config.engine,
                     "epochs": f"{len(metrics)}/{r.config.epochs}",
                     "best_test_acc": max((m["test_acc"] for m in metrics), default=None),
                     "final_test_acc": metrics[-1]["test_acc"] if metrics else None,
                     "seconds": sum(m["seconds"] for m in metrics)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    if not rows:
        print(f"no runs in {args.runs_dir or RUNS_DIR}/ (train one with `cnnlab train`)")
        return 0
    table = Table(title=f"Runs in {args.runs_dir or RUNS_DIR}/")
    for column in ("name", "model", "dataset", "engine", "epochs", "best acc", "final acc", "time"):
        table.add_column(column, justify="right" if column in ("epochs", "best acc", "final acc", "time") else "left")
    for row in rows:
        pct = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
        table.add_row(row["name"], row["model"], row["dataset"], row["engine"], row["epochs"],
                      pct(row["best_test_acc"]), pct(row["final_test_acc"]), f"{row['seconds']:.0f} s")
    Console().print(table)
    return 0
