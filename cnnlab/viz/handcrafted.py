"""Hand-crafted filters: the classic 3x3 kernels (identity, edge detection, sharpen, blurs), applied to a photograph
with the scratch engine's conv2d, and the lecture's table of them as one figure: operation | filter | convolved
image.

A CNN learns kernels like these from data; here they are written by hand to see what a single convolution does.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError, ImageError
from cnnlab.scratch import Tensor
from cnnlab.scratch import functional as F


@dataclass(frozen=True)
class Filter:
    operation: str
    matrix: tuple[tuple[float, ...], ...]  # as printed in the table
    scale: Fraction = Fraction(1)  # the kernel is scale * matrix

    @property
    def kernel(self) -> np.ndarray:
        return float(self.scale) * np.array(self.matrix, dtype=np.float32)


CATALOGUE: tuple[Filter, ...] = (
    Filter("Identity", ((0, 0, 0), (0, 1, 0), (0, 0, 0))),
    Filter("Edge detection", ((1, 0, -1), (0, 0, 0), (-1, 0, 1))),
    Filter("Edge detection", ((0, 1, 0), (1, -4, 1), (0, 1, 0))),
    Filter("Edge detection", ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1))),
    Filter("Sharpen", ((0, -1, 0), (-1, 5, -1), (0, -1, 0))),
    Filter("Box blur\n(normalized)", ((1, 1, 1), (1, 1, 1), (1, 1, 1)), Fraction(1, 9)),
    Filter("Gaussian blur 3x3\n(approximation)", ((1, 2, 1), (2, 4, 2), (1, 2, 1)), Fraction(1, 16)),
)


def numbered(names: list[str]) -> list[str]:
    """Names made unique by numbering the repeated ones: the catalogue has three "Edge detection" rows."""
    repeated, seen = Counter(names), Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name} {seen[name]}" if repeated[name] > 1 else name)
    return out


def by_short_name() -> dict[str, np.ndarray]:
    """The catalogue's kernels by a short, unique name ("Box blur", "Edge detection 2"), for figure labels."""
    return dict(zip(numbered([f.operation.split("\n")[0] for f in CATALOGUE]), (f.kernel for f in CATALOGUE)))


def playground_entries() -> list[dict]:
    """[{name, title, kernel}] for a web page and its API: name like `edge-detection-2`, title the whole operation
    on one line, kernel a list of rows of floats (scale applied, exact in float64: a box blur's 1/9)."""
    titles = numbered([" ".join(f.operation.split()) for f in CATALOGUE])
    return [{"name": re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"), "title": title,
             "kernel": [[float(f.scale) * v for v in row] for row in f.matrix]} for f, title in zip(CATALOGUE, titles)]

# Grace Hopper's official US Navy portrait (public domain), shipped with matplotlib; the default crop is her
# face at full resolution, where a 3x3 kernel's effect is visible.
DEFAULT_CROP = (slice(110, 366), slice(128, 384))
MAX_SIDE = 512  # larger user images are scaled down to this (long side)
MAX_KERNEL_SIDE = 31  # a hand-made kernel; larger ones would take the work of a large convolution layer


def parse_kernel(text: str) -> Filter:
    """'0,-1,0;-1,5,-1;0,-1,0' -> a custom Filter: rows separated by ';', values by ','; odd sides, so that the
    kernel has a centre pixel and zero padding keeps the image size."""
    rows = [row.split(",") for row in text.strip().split(";")]
    try:
        matrix = tuple(tuple(float(v) for v in row) for row in rows)
    except ValueError:
        raise ConfigError(f"--kernel {text!r}: values must be numbers, rows separated by ';' and values by ','") \
            from None
    widths = sorted({len(row) for row in matrix})
    if len(widths) != 1:
        raise ConfigError(f"--kernel {text!r}: rows have different lengths {widths}")
    if max(len(matrix), widths[0]) > MAX_KERNEL_SIDE:
        raise ConfigError(f"--kernel {text[:40]!r}: {len(matrix)}x{widths[0]} is larger than "
                          f"{MAX_KERNEL_SIDE}x{MAX_KERNEL_SIDE}")
    if len(matrix) % 2 == 0 or widths[0] % 2 == 0:
        raise ConfigError(f"--kernel {text!r}: a {len(matrix)}x{widths[0]} kernel has no centre; "
                          "use odd sides (3x3, 5x5, ...)")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError(f"--kernel {text!r}: values must be finite")
    return Filter("Custom", matrix)


def load_image(path: str | Path | None = None) -> np.ndarray:
    """An RGB image as float32 [H, W, 3] in [0, 1]: the file at `path` (scaled down to MAX_SIDE pixels if
    larger), or the default photograph's crop."""
    from PIL import Image, UnidentifiedImageError

    if path is None:
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)[DEFAULT_CROP] / 255
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max(im.size) > MAX_SIDE:  # a 3x3 kernel's effect is invisible on a photo shown 2 inches wide
                im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.float32) / 255
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"{path}: not an image PIL can read ({err})") from None


def apply(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of an [H, W, C] image with `kernel` (zero padding: same size out), unclipped.

    Like every CNN library, conv2d slides the kernel without flipping it (cross-correlation); the catalogue's
    kernels are symmetric, so flipped or not is the same."""
    channels = image.transpose(2, 0, 1)[:, None]  # the channels become a batch of single-channel images
    kh, kw = kernel.shape
    out = F.conv2d(Tensor(channels), Tensor(kernel[None, None]), padding=(kh // 2, kw // 2))
    return out.data[:, 0].transpose(1, 2, 0)


def _draw_matrix(ax, f: Filter) -> None:
    """The kernel as the lecture prints it: a bracketed grid of numbers, with its scale factor in front."""
    rows, cols = len(f.matrix), len(f.matrix[0])
    ax.set_xlim(-1.6, cols + 0.1)
    ax.set_ylim(rows + 0.3, -0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    size = 13 if max(rows, cols) <= 3 else 9
    for i, row in enumerate(f.matrix):
        for j, v in enumerate(row):
            ax.text(j + 0.5, i + 0.5, f"{v:g}", ha="center", va="center", fontsize=size, family="monospace")
    for x, tick in ((0, 0.15), (cols, -0.15)):  # square brackets
        ax.plot([x + tick, x, x, x + tick], [0, 0, rows, rows], color="black", lw=1.2)
    if f.scale != 1:
        ax.text(-0.2, rows / 2, f"{f.scale} ×", ha="right", va="center", fontsize=size)


def is_signed(f: Filter) -> bool:
    """Entries summing to 0 (the edge detectors): the response is 0 on flat areas and as often negative as
    positive, so clipping it to [0, 1] would keep one side of every edge only."""
    return abs(float(np.sum(f.kernel))) < 1e-6


def signed_response(image: np.ndarray, f: Filter) -> tuple[np.ndarray, float]:
    """(the response of the image's luminance to a zero-sum kernel, the ± limit of its colour scale): a colour
    image's three signed channels have no colour of their own, so the figure shows the luma's. The limit is the
    98th percentile of |response|, so that a few extreme pixels do not wash out every edge."""
    luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL converts to grey
    response = apply(luma[..., None], f.kernel)[..., 0]
    return response, float(np.percentile(np.abs(response), 98)) or 1.0


def _draw_response(name_ax, image_ax, image: np.ndarray, f: Filter, name: str) -> None:
    if is_signed(f):
        response, limit = signed_response(image, f)
        image_ax.imshow(response, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        name = f"{name}\n\nred > 0 > blue\n(±{limit:.2g}, white = 0)"
    else:
        image_ax.imshow(np.clip(apply(image, f.kernel), 0, 1), interpolation="nearest")
    name_ax.text(0.5, 0.5, name, ha="center", va="center", fontsize=12, transform=name_ax.transAxes,
                 linespacing=1.1)


def figure(image: np.ndarray, filters: list[Filter], path: str | Path, source: str) -> Path:
    """The table as a PNG: one row per filter, the image convolved with it; see the footnote for the colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = image.shape[:2]
    image_in = 2.4
    row_in = image_in * height / width
    fig, axes = plt.subplots(len(filters) + 1, 3, figsize=(1.9 + 2.3 + image_in + 0.3, 1.0 + row_in * len(filters)),
                             gridspec_kw={"width_ratios": [1.9, 2.3, image_in],
                                          "height_ratios": [0.5 / row_in] + [1] * len(filters)})
    for ax, title in zip(axes[0], ("Operation", "Filter", "Convolved image")):
        ax.axis("off")
        ax.text(0.5, 0.2, title, ha="center", va="center", fontsize=13, weight="bold", transform=ax.transAxes)
    names = numbered([f.operation for f in filters])
    for (name_ax, matrix_ax, image_ax), f, name in zip(axes[1:], filters, names):
        name_ax.axis("off")
        _draw_matrix(matrix_ax, f)
        _draw_response(name_ax, image_ax, image, f, name)
        image_ax.set_xticks([])
        image_ax.set_yticks([])
    fig.text(0.02, 0.003, f"Image: {source}\nEach RGB channel convolved with cnnlab.scratch conv2d (zero padding), "
             "clipped to [0, 1] for display.\nFilters whose entries sum to 0 (edge detectors) give signed values, 0 "
             "on flat areas:\ntheir rows show the luminance's response on a scale centred on 0, red > 0 > blue\n"
             "(±: the 98th percentile of |response|; clipping at 0 would show one side of each edge only).",
             ha="left", va="bottom", fontsize=6.5, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.995, bottom=0.9 / fig.get_figheight(), wspace=0.05, hspace=0.06)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
