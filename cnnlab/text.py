"""Plain-text tables and numbers: aligned Markdown pipe tables, readable in a terminal and pasteable into docs/,
and counts as the papers quote them (1.498 G)."""

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
