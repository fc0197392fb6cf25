"""Every printer of the commands that is more than a line: training results, IoU tables."""

from __future__ import annotations



def print_training(result) -> None:
    """What a finished training run prints: its epochs (classification) or its IoU per class (segmentation)."""
    if result.task == "segmentation":
        print_iou(result.final, result.classes,
                  f"{result.run_dir.name}: {len(result.history)} epochs in {result.seconds:.0f} s")
        print_summary_path(result)
        return
    print_epochs(result)


def print_epochs(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    # Two-line headers keep the eight columns inside an 80-column terminal.
    for column in ("epoch", "train\nloss", "train\nacc", "test\nloss", "test\nacc", "lr", "time\n(s)", "images\n/s"):
        table.add_column(column, justify="right")
    best = max(result.history, key=lambda r: r["test_acc"])
    for r in result.history:
        style = "bold green" if r is best else None
        table.add_row(str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['test_loss']:.4f}",
                      f"{r['test_acc']:.2%}", f"{r['lr']:.2e}", f"{r['seconds']:.1f}", f"{r['images_per_s']:,.0f}",
                      style=style)
    console = Console()
    # soft_wrap: a path is never broken across lines (the terminal wraps it, if it must, and copying still works)
    console.print(f"Results — {result.run_dir}", soft_wrap=True)
    console.print(table)
    console.print(f"final test accuracy [bold]{result.final_test_acc:.2%}[/] (best {result.best_test_acc:.2%}) in "
                  f"{result.seconds:.1f} s")
    print_summary_path(result)


def print_summary_path(result) -> None:
    """The run's summary, on a line of its own: the lines above then fit 80 columns whatever the run's name."""
    from rich.console import Console

    # soft_wrap: the path is never broken across lines (the terminal wraps it, if it must; copying still works)
    Console().print(f"see {result.run_dir}/summary.md", soft_wrap=True)


def print_iou(result, classes, title: str) -> None:
    """Pixels and IoU per class of a segmentation evaluation, then its mean IoU and pixel accuracy."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("class", "pixels", "IoU"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, pixels, iou in zip(classes, result.confusion.sum(1).tolist(), result.iou.tolist()):
        table.add_row(name, f"{pixels:,}", f"{iou:.4f}")
    console = Console()
    console.print(table)
    console.print(f"{title}: [bold]mean IoU {result.mean_iou:.4f}[/] (background included), "
                  f"pixel accuracy {result.accuracy:.2%}")


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
