"""Tables as aligned plain text that is also Markdown: readable in a terminal, pasteable into docs/."""

from __future__ import annotations


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Pipe table with padded columns; columns whose index is in `right` are right-aligned (numbers)."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def human(count: int | float) -> str:
    """1498376192 -> '1.498 G' (G, M, k; four significant digits, as torchvision and the papers quote them)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.4g} {unit}"
    return str(int(count))


def print_training(result) -> None:
    """What a finished training run prints: its epochs (classification) or its IoU per class (segmentation)."""
    from rich.console import Console

    if result.task == "segmentation":
        print_iou(result.final, result.classes,
                  f"{result.run_dir.name}: {len(result.history)} epochs in {result.seconds:.0f} s")
        Console().print(f"see {result.run_dir}/summary.md")
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
                  f"{result.seconds:.1f} s — see {result.run_dir}/summary.md", soft_wrap=True)


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
