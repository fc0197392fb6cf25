"""The filter playground's catalogue: the hand-crafted 3x3 filters of the seed, before CNNs learned their own.

Kept behind `filter_catalogue()` alone: when `cnnlab.filters` (the package's filter catalogue) lands, this
function is the one place to point at it.
"""

from __future__ import annotations

_FILTERS = [
    ("identity", "Identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]], 1),
    ("edge-diagonal", "Edge detection (diagonal)", [[1, 0, -1], [0, 0, 0], [-1, 0, 1]], 1),
    ("edge-laplacian", "Edge detection (Laplacian, 4-neighbour)", [[0, 1, 0], [1, -4, 1], [0, 1, 0]], 1),
    ("edge-all", "Edge detection (8-neighbour)", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], 1),
    ("sharpen", "Sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], 1),
    ("box-blur", "Box blur", [[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),
    ("gaussian-blur", "Gaussian blur 3x3", [[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),
]


def filter_catalogue() -> list[dict]:
    """[{name, title, kernel}] with the kernel as a 3x3 list of floats (scale applied)."""
    return [{"name": name, "title": title, "kernel": [[v * scale for v in row] for row in kernel]}
            for name, title, kernel, scale in _FILTERS]
