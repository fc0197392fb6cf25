"""Text out: tables fitted to a terminal's width, aligned Markdown pipe tables to paste into docs/, counts as the
papers quote them (1.498 G), and JSON that is always valid JSON."""

from __future__ import annotations

import json
import math
import re
import textwrap

WIDTH = 80  # columns: what a table printed to a terminal fits (`--markdown` prints the wide form)


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first), or WIDTH when the output is not a terminal."""
    import shutil

    return shutil.get_terminal_size((WIDTH, 24)).columns


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Pipe table with padded columns; columns whose index is in `right` are right-aligned (numbers)."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def fit_columns(headers: list[str], rows: list[list[str]], right: set[int] = frozenset(),
                whole: set[int] = frozenset(), width: int = WIDTH, gap: int = 2) -> tuple[list[str], list[list[str]]]:
    """(the header's lines, each row's lines) of a plain table inside `width` columns. Numbers (the columns in
    `right`, right-aligned) and the columns in `whole` (a name to copy) keep each cell on one line; the others,
    widest first, wrap their cells between words, then break a word too long for them after a '.', '_' or '/'
    (a layer name such as inception4a.branch2.0.conv), or anywhere as a last resort. Headers wrap between words."""
    whole = set(whole) | set(right)
    cells = [[str(c) for c in row] for row in [headers, *rows]]

    def longest_word(i, rows):
        return max(len(w) for row in rows for w in (row[i].split() or [""]))

    widths = [max([len(row[i]) for row in cells[1:]] + [longest_word(i, cells[:1])]) if i in whole else
              max(len(row[i]) for row in cells) for i in range(len(headers))]
    floor = [longest_word(i, cells) for i in range(len(headers))]  # before words are broken
    budget = width - gap * (len(headers) - 1)
    while sum(widths) > budget:
        shrinkable = [i for i in range(len(widths)) if i not in whole and widths[i] > 4]
        if not shrinkable:
            break
        above = [i for i in shrinkable if widths[i] > floor[i]]
        widths[max(above or shrinkable, key=lambda i: widths[i])] -= 1

    def lines_of(row, wrapped_columns):
        wrapped = [_wrap(cell, w) if i in wrapped_columns else [cell]
                   for i, (cell, w) in enumerate(zip(row, widths))]
        out = []
        for n in range(max(len(w) for w in wrapped)):
            parts = [(w[n] if n < len(w) else "") for w in wrapped]
            out.append((" " * gap).join(p.rjust(widths[i]) if i in right else p.ljust(widths[i])
                                        for i, p in enumerate(parts)).rstrip())
        return out

    every, wrapping = set(range(len(headers))), set(range(len(headers))) - whole
    header = lines_of(cells[0], every) + [(" " * gap).join("-" * w for w in widths)]
    return header, [lines_of(row, wrapping) for row in cells[1:]]


def text_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset(),
               whole: set[int] = frozenset(), width: int = WIDTH, notes: dict[int, list[str]] | None = None) -> str:
    """`fit_columns` as one string; `notes[i]`: lines printed under row i, indented, wrapped to `width`. A row
    whose continuation lines hold several cells is followed by a blank line, so that its lines read as one."""
    header, blocks = fit_columns(headers, rows, right, whole, width)
    out = list(header)
    for i, block in enumerate(blocks):
        out += block
        for note in (notes or {}).get(i, []):
            out += textwrap.wrap(note, width, initial_indent="    ", subsequent_indent="      ",
                                 break_on_hyphens=False)
        if i < len(blocks) - 1 and any(len(line.split()) > 1 for line in block[1:]):
            out.append("")
    return "\n".join(out)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
            continue
        while len(word) > width:  # broken after the last '.', '_' or '/' that leaves a piece inside the column
            cut = max((m.end() for m in re.finditer(r"[._/]", word[:width])), default=width)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines or [""]


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
