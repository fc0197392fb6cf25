"""The filter playground's catalogue: `cnnlab.filters.CATALOGUE` (the seed's hand-crafted filters), given the
unique names and one-line titles a web page and its API need (the seed has three "Edge detection" rows)."""

from __future__ import annotations

import re
from collections import Counter

from cnnlab.filters import CATALOGUE


def filter_catalogue() -> list[dict]:
    """[{name, title, kernel}]: name like `edge-detection-2`, kernel a list of rows of floats (scale applied)."""
    titles = [" ".join(f.operation.split()) for f in CATALOGUE]
    repeated, seen = Counter(titles), Counter()
    items = []
    for f, title in zip(CATALOGUE, titles):
        seen[title] += 1
        if repeated[title] > 1:
            title = f"{title} {seen[title]}"
        name = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        items.append({"name": name, "title": title, "kernel": [[float(f.scale) * v for v in row] for row in f.matrix]})
    return items
