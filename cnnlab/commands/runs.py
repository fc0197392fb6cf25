"""`cnnlab runs`: the table of run folders with their accuracy and time."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "runs", "List training runs with best accuracy and time.", [
        "cnnlab runs",
        "cnnlab runs --runs-dir experiments/runs --json",
    ], run)
    p.add_argument("--runs-dir", help="folder of run folders (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:

    from cnnlab.errors import CheckpointError
    from cnnlab.train.runs import RUNS_DIR, list_runs

    rows, shown = [], []
    for r in list_runs(args.runs_dir):
        task = r.task
        try:
            metrics = r.metrics()
        except CheckpointError as err:  # listed, with the reason, rather than breaking the listing
            rows.append({"name": r.name, "model": r.config.model, "dataset": r.config.dataset,
                         "engine": r.config.engine, "task": task.name, "damaged": str(err)})
            shown.append(["damaged", "-"])
            continue
        # each task's own measure: accuracy of a classifier, mean IoU of a segmentation (not its pixel accuracy)
        key = task.metric.key
        best = max((m[key] for m in metrics), default=None)
        final = metrics[-1][key] if metrics else None
        rows.append({"name": r.name, "model": r.config.model, "dataset": r.config.dataset, "engine": r.config.engine,
                     "task": task.name, "metric": key, "epochs": f"{len(metrics)}/{r.config.epochs}",
                     "best": best, "final": final,
                     "best_test_acc": max((m["test_acc"] for m in metrics), default=None),
                     "final_test_acc": metrics[-1]["test_acc"] if metrics else None,
                     "seconds": sum(m["seconds"] for m in metrics)})
        shown.append(["-" if v is None else task.metric.format(v) + task.metric.unit for v in (best, final)])
    if args.json:
        print(to_json(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    if not rows:
        print(f"no runs in {args.runs_dir or RUNS_DIR}/ (train one with `cnnlab train`)")
        return 0
    console = Console()
    console.print(f"Runs in {args.runs_dir or RUNS_DIR}/", soft_wrap=True)
    table = Table()
    # A run's name is what a user types next: it folds onto more lines rather than being cut short. In an
    # 80-column terminal the engine column is left out when every run used the torch engine, so that the numbers
    # keep their room.
    engines = console.width >= 100 or any(row["engine"] != "torch" for row in rows)
    columns = ["model", "dataset"] + (["engine"] if engines else [])
    table.add_column("name", overflow="fold", min_width=8)
    for column in columns:
        table.add_column(column, overflow="fold")
    for column in ("epochs", "best", "final", "time"):
        table.add_column(column, justify="right", no_wrap=True)
    for row, (best, final) in zip(rows, shown):
        table.add_row(row["name"], *(row[c] for c in columns), row.get("epochs", "?"), best, final,
                      f"{row['seconds']:.0f} s" if "seconds" in row else "-")
    console.print(table)
    for row in rows:
        if "damaged" in row:
            console.print(f"damaged: {row['damaged']}", soft_wrap=True)
    return 0
