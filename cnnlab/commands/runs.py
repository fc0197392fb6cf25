"""`cnnlab runs`: the table of run folders with their accuracy and time."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "runs", "List training runs with best accuracy and time.", [
        "cnnlab runs",
        "cnnlab runs --runs-dir experiments/runs --json",
        "cnnlab runs --markdown > runs.md",
    ], run)
    p.add_argument("--runs-dir", help="folder of run folders (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--json", action="store_true", help="the runs as JSON")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (one line per run, however wide)")
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
    import textwrap

    from cnnlab.text import fit_columns, markdown_table, terminal_width

    if not rows:
        print(f"no runs in {args.runs_dir or RUNS_DIR}/ (train one with `cnnlab train`)")
        return 0
    headers = ["name", "model", "dataset", "engine", "epochs", "best", "final", "time"]
    cells = [[row["name"], row["model"], row["dataset"], row["engine"], row.get("epochs", "?"), best, final,
              f"{row['seconds']:.0f} s" if "seconds" in row else "-"] for row, (best, final) in zip(rows, shown)]
    numbers = {4, 5, 6, 7}
    if args.markdown:
        print(markdown_table(headers, cells, right=numbers))
        return 0
    print(f"Runs in {args.runs_dir or RUNS_DIR}/")
    width = terminal_width()
    # A run's name is what a user types next: it is never broken. When the table is wider than the terminal,
    # each name goes on a line of its own, above its numbers.
    header, blocks = fit_columns(headers, cells, numbers, whole={0}, width=10**6)
    if max(len(line) for line in header) <= width:
        print("\n".join(header + [line for block in blocks for line in block]))
    else:
        indent = "    "
        header, blocks = fit_columns(headers[1:], [row[1:] for row in cells], {n - 1 for n in numbers},
                                     width=width - len(indent))
        print("\n".join(["name", *(indent + line for line in header)]))
        for row, block in zip(cells, blocks):
            print(row[0])
            print("\n".join(indent + line for line in block))
    for row in rows:  # wrapped between words; a path in the reason stays whole
        if "damaged" in row:
            print(textwrap.fill(f"damaged: {row['damaged']}", width, subsequent_indent="  ", break_long_words=False,
                                break_on_hyphens=False))
    return 0
