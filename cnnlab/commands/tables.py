"""Every printer of the commands that is more than a line: a task's tables (cnnlab.tasks.parts.Table), a
training run's epochs and its summary path."""

from __future__ import annotations


def print_table(table, title: str | None = None) -> None:
    """A task's table in the terminal, numbers right-aligned, then its title line."""
    from rich.console import Console
    from rich.table import Table

    shown = Table()
    for index, column in enumerate(table.header):
        shown.add_column(column, justify="left" if index == 0 else "right")
    for row in table.rows:
        shown.add_row(*row)
    console = Console()
    console.print(shown)
    if title or table.title:
        console.print(title or table.title, soft_wrap=True)


def print_training(result) -> None:
    """What a finished training run prints: its epochs, the task's tables where it has them (a segmentation's IoU
    per class), its final and best measure, and where its summary is."""
    from rich.console import Console
    from rich.table import Table

    from cnnlab.tasks.parts import epoch_table

    task, metric = result.task, result.task.metric
    epochs = epoch_table(task, result.history)
    console = Console()
    # A word a line keeps the columns narrow; where a task's numbers still make the table wider than the terminal,
    # the learning rate's column, then the speed's, give way to them (both are in summary.md).
    header = [column.replace(" ", "\n") for column in epochs.header]
    shown = list(range(len(header)))
    for optional in ("lr", "img/s"):
        widths = [max(len(line) for text in [header[i], *(row[i] for row in epochs.rows)] for line in text.split("\n"))
                  for i in shown]
        if sum(widths) + 3 * len(shown) + 1 <= console.width:
            break
        shown.remove(epochs.header.index(optional))
    table = Table()
    for i in shown:
        table.add_column(header[i], justify="right")
    best = max(result.history, key=lambda r: r[metric.key])
    for r, row in zip(result.history, epochs.rows):
        table.add_row(*(row[i] for i in shown), style="bold green" if r is best else None)
    # soft_wrap: a path is never broken across lines (the terminal wraps it, if it must, and copying still works)
    console.print(f"Results — {result.run_dir}", soft_wrap=True)
    console.print(table)
    if task.tables_after_training:
        for extra in task.tables(result.final, result.classes):
            print_table(extra)
    console.print(f"final {metric.name} [bold]{metric.format(result.history[-1][metric.key])}[/] (best "
                  f"{metric.format(best[metric.key])}) in {result.seconds:.1f} s")
    print_summary_path(result)


def print_summary_path(result) -> None:
    """The run's summary, on a line of its own: the lines above then fit 80 columns whatever the run's name."""
    from rich.console import Console

    # soft_wrap: the path is never broken across lines (the terminal wraps it, if it must; copying still works)
    Console().print(f"see {result.run_dir}/summary.md", soft_wrap=True)


def print_experiment_summary(record: dict) -> None:
    """An experiment's headline numbers: mean ± std over its seeds (accuracies, errors and correlations alike)."""
    from rich.console import Console
    from rich.table import Table

    seeds = record["seeds"]
    table = Table(title=f"{record['experiment']}: mean ± std over {seeds} seed{'s' * (seeds > 1)}")
    table.add_column("number")
    table.add_column("mean ± std", justify="right")
    for name, row in record["summary"].items():
        spread = f" ± {row['std']:.4f}" if row["std"] is not None else ""
        table.add_row(name, f"{row['mean']:.4f}{spread}")
    Console().print(table)
