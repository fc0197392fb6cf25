"""The parts a task describes a run's results with: tables, figures and sections of text, and their Markdown.

A task says *what* a run shows (`Task.sections`); the run folder (its PNG files and summary.md, written here), the
report (`cnnlab.report`, HTML) and the terminal (`cnnlab.commands.tables`) each render the same parts, so that
the three never disagree. Paragraphs are plain text in which `**words**` are the emphasis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cnnlab.viz.training import plot_curves

EMPHASIS = re.compile(r"\*\*(.+?)\*\*")


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[list[str]]
    title: str = ""  # a line said after the table in a terminal, where a heading would be in a document


@dataclass(frozen=True)
class Figure:
    file: str  # its name in a run folder, "confusion.png"
    alt: str  # what it shows, in words
    draw: Callable[[Path], None] = field(repr=False)  # writes the PNG to the path it is given


@dataclass(frozen=True)
class Section:
    title: str
    parts: tuple  # paragraphs (str), Tables and Figures, in order


def plain(text: str) -> str:
    """A paragraph without its emphasis marks (a terminal line)."""
    return EMPHASIS.sub(r"\1", text)


def figures(sections: list[Section]) -> list[Figure]:
    return [part for section in sections for part in section.parts if isinstance(part, Figure)]


def epoch_table(task, history: list[dict]) -> Table:
    """One row per epoch: the losses and accuracies every task records, the task's own numbers, the learning
    rate and the time."""
    accuracy = task.accuracy_words
    header = ("epoch", "train loss", f"train {accuracy}", "test loss", f"test {accuracy}",
              *(metric.column for metric in task.columns), "lr", "time (s)", "img/s")
    rows = [[str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['test_loss']:.4f}",
             f"{r['test_acc']:.2%}", *(metric.format(r[metric.key]) for metric in task.columns), f"{r['lr']:.2e}",
             f"{r['seconds']:.1f}", f"{r['images_per_s']:,.0f}"] for r in history]
    return Table(header, rows)


def curves_section(task, history: list[dict], title: str) -> list[Section]:
    """The epochs' table and curves (none for a model without a training history)."""
    if not history:
        return []
    return [Section("Training curves", (epoch_table(task, history),
                                        Figure("curves.png", "training curves",
                                               lambda path: plot_curves(history, path, title=title))))]


def run_sentence(task, config, history: list[dict]) -> str:
    """What a run reached, in one sentence: its measure after the last epoch, the best epoch, the time."""
    metric = task.metric
    best = max(history, key=lambda r: r[metric.key])
    return (f"{config.model} on {config.dataset} with the {config.engine} engine, recipe `{config.recipe}`: "
            f"**{metric.format(history[-1][metric.key])}** {metric.name} after {len(history)} of {config.epochs} "
            f"epochs (best {metric.format(best[metric.key])} at epoch {best['epoch']}), "
            f"{sum(r['seconds'] for r in history):.1f} s of training.")


def table_markdown(table: Table) -> list[str]:
    right = [i for i, _ in enumerate(table.header) if i and all(_numeric(row[i]) for row in table.rows)]
    rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(table.header))) + "|"
    return ["| " + " | ".join(table.header) + " |", rule, *("| " + " | ".join(row) + " |" for row in table.rows)]


def _numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?%?|—|-|nan", cell))


def markdown(sections: list[Section]) -> list[str]:
    lines = []
    for section in sections:
        lines += [f"## {section.title}", ""]
        for part in section.parts:
            if isinstance(part, Table):
                lines += [*table_markdown(part), ""]
            elif isinstance(part, Figure):
                lines += [f"![{part.alt}]({part.file})", ""]
            else:
                lines += [part, ""]
    return lines


def write_run_folder(run_dir: Path, task, config, history: list[dict], sections: list[Section]) -> None:
    """A finished run's figures, then summary.md: what it reached, then the task's sections."""
    for figure in figures(sections):
        figure.draw(run_dir / figure.file)
    lines = [f"# Run `{run_dir.name}`", "", run_sentence(task, config, history), "", *markdown(sections),
             f"Reproduce: `cnnlab train --config {run_dir / 'config.json'}`", ""]
    (run_dir / "summary.md").write_text("\n".join(lines))
