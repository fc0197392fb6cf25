"""Text out: aligned Markdown pipe tables, readable in a terminal and pasteable into docs/, counts as the papers
quote them (1.498 G), and JSON that is always valid JSON."""

from __future__ import annotations

import json
import math


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


def to_json(value, **options) -> str:
    """JSON that every parser reads: NaN and infinities (an IoU of a class that never occurs, a diverged loss)
    become null, which JSON has, rather than NaN, which it does not."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
