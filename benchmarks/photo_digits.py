"""Digits as people photograph them: MNIST test digits written on shaded, tinted, textured paper, at several sizes
and angles, photographed as JPEGs; how well a run classifies them after the preparation that `cnnlab predict` and
the explorer's uploads share (`cnnlab.data.preprocess.load_digit`), beside its accuracy on the same digits clean.

    python benchmarks/photo_digits.py runs/NAME                 # 1,000 photos: docs/explorer.md's table
    python benchmarks/photo_digits.py runs/NAME --count 200 --small --save /tmp/photos

Each photo: paper of one of four tints with fibres and grain, lit unevenly (a fall-off from one side and towards
the corners), often with a soft shadow across it; the digit in one of four inks (black, blue, red, pencil), 15-60%
of the photo's height, turned by up to 12 degrees; sensor noise; JPEG at quality 80. The same seed makes the same
photos. --small keeps the photos at most 640 pixels a side (the tests' short mode).
"""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

PAPERS = {"white": (0.93, 0.93, 0.91), "cream": (0.96, 0.90, 0.74), "grey-blue": (0.80, 0.85, 0.90),
          "kraft": (0.78, 0.66, 0.50)}
INKS = {"black": ((0.08, 0.08, 0.10), 1.0), "blue": ((0.10, 0.20, 0.62), 1.0), "red": ((0.62, 0.10, 0.12), 1.0),
        "pencil": ((0.30, 0.30, 0.33), 0.8)}  # (colour, opacity)
SIZES = [(640, 480), (480, 640), (1024, 768), (1600, 1200)]
SMALL_SIZES = [(400, 300), (300, 400), (640, 480)]


@dataclass
class Photo:
    jpeg: bytes
    paper: str
    ink: str
    size: tuple[int, int]
    height: float  # the digit's height, as a share of the photo's
    angle: float  # degrees
    shadow: bool


def _smooth_noise(rng, shape, cells: int) -> np.ndarray:
    """Noise in [-1, 1] that varies over about `cells` cells across the image (paper fibres, lighting)."""
    coarse = rng.uniform(-1, 1, (max(2, shape[0] * cells // max(shape)), max(2, shape[1] * cells // max(shape))))
    return np.asarray(Image.fromarray(coarse.astype(np.float32), "F").resize(shape[::-1], Image.Resampling.BICUBIC))


def photograph(digit: np.ndarray, rng: np.random.Generator, sizes=SIZES) -> Photo:
    """One photo (JPEG bytes) of a 28x28 MNIST digit (white on black) written on paper, with how it was made."""
    width, height = sizes[rng.integers(len(sizes))]
    paper_name = list(PAPERS)[rng.integers(len(PAPERS))]
    ink_name = list(INKS)[rng.integers(len(INKS))]
    share, angle = rng.uniform(0.15, 0.6), rng.uniform(-12, 12)
    shadow = bool(rng.random() < 0.5)

    # the ink's coverage: the digit scaled so that its 28-pixel box is `share` of the photo's height, turned
    side = max(8, round(share * height))
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC).rotate(
        angle, Image.Resampling.BICUBIC, expand=True)
    coverage = np.zeros((height, width), np.float32)
    top = rng.integers(0, max(1, height - ink.height))
    left = rng.integers(0, max(1, width - ink.width))
    patch = np.asarray(ink, np.float32)[:height - top, :width - left] / 255
    coverage[top:top + patch.shape[0], left:left + patch.shape[1]] = patch

    # paper: its tint, fibres and grain; ink: its colour where it covers the paper
    paper = np.asarray(PAPERS[paper_name], np.float32)
    texture = 1 + 0.04 * _smooth_noise(rng, (height, width), 60) + 0.02 * rng.standard_normal((height, width))
    colour, opacity = INKS[ink_name]
    alpha = (coverage * opacity)[..., None]
    reflectance = (paper * texture[..., None]) * (1 - alpha) + np.asarray(colour, np.float32) * alpha

    # light: falling off from one side and towards the corners, and perhaps a soft shadow across the page
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys, xs = ys / height - 0.5, xs / width - 0.5
    direction = rng.uniform(0, 2 * math.pi)
    ramp = xs * math.cos(direction) + ys * math.sin(direction)
    light = 1 - rng.uniform(0.15, 0.45) * (ramp + 0.5) - rng.uniform(0.1, 0.3) * (xs ** 2 + ys ** 2) * 2
    if shadow:
        edge = rng.uniform(-0.3, 0.3)
        across = xs * math.cos(direction + 1.2) + ys * math.sin(direction + 1.2) - edge
        softness = rng.uniform(0.03, 0.12)
        light *= 1 - rng.uniform(0.3, 0.5) * (1 / (1 + np.exp(-across / softness)))
    pixels = reflectance * light[..., None] + 0.01 * rng.standard_normal((height, width, 1))
    image = Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))  # a little out of focus
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return Photo(buffer.getvalue(), paper_name, ink_name, (width, height), share, angle, shadow)


def photographs(images: np.ndarray, seed: int = 0, sizes=SIZES) -> list[Photo]:
    rng = np.random.default_rng(seed)
    return [photograph(digit, rng, sizes) for digit in images]


def accuracy(model, info, images, labels) -> float:
    from cnnlab.viz.activations import predict_probabilities

    predicted = predict_probabilities(model, info, list(images)).argmax(1).numpy()
    return float((predicted == np.asarray(labels)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a classifier run on MNIST")
    p.add_argument("--count", type=int, default=1000, help="test digits photographed (the first N)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="photos at most 640 pixels a side")
    p.add_argument("--save", metavar="DIR", help="also write the photos there, as JPEGs")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import time
    from pathlib import Path

    import torch

    from cnnlab.data.preprocess import load_digit
    from cnnlab.train.runs import Run

    torch.set_num_threads(args.threads)
    run = Run.open(args.run)
    model, info = run.build_model(), run.info
    test = run.test_split(args.count)
    images, labels = test.images[:args.count], np.asarray(test.labels[:args.count])
    photos = photographs(images, args.seed, SMALL_SIZES if args.small else SIZES)
    start = time.perf_counter()
    prepared = [load_digit(photo.jpeg, f"photo {i}") for i, photo in enumerate(photos)]
    seconds = (time.perf_counter() - start) / len(photos)
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (photo, label) in enumerate(zip(photos, labels)):
            (folder / f"{i:04d}-{label}.jpg").write_bytes(photo.jpeg)
    from cnnlab.viz.activations import predict_probabilities

    right = predict_probabilities(model, info, prepared).argmax(1).numpy() == labels
    clean = accuracy(model, info, images, labels)

    def row(name: str, chosen) -> str:
        chosen = np.asarray(chosen)
        return f"| {name} | {int(chosen.sum())} | {right[chosen].mean():.1%} |"

    print(f"{run.name}: {len(photos)} test digits; clean {clean:.1%}, photographed {right.mean():.1%} "
          f"({(right.mean() - clean) * 100:+.1f} points); preparation {seconds * 1000:.0f} ms a photo")
    print("| photos | count | accuracy |\n|---|---|---|")
    print(f"| the digits as stored (clean) | {len(photos)} | {clean:.1%} |")
    print(row("all photographed", [True] * len(photos)))
    for paper in PAPERS:
        print(row(f"{paper} paper", [ph.paper == paper for ph in photos]))
    for ink in INKS:
        print(row(f"{ink} ink", [ph.ink == ink for ph in photos]))
    print(row("with a soft shadow", [ph.shadow for ph in photos]))
    for low, high in ((0.15, 0.3), (0.3, 0.45), (0.45, 0.6)):
        print(row(f"digit {low:.0%}-{high:.0%} of the photo's height", [low <= ph.height < high for ph in photos]))
    for low, high in ((0, 4), (4, 8), (8, 12.01)):
        print(row(f"turned {low:g}-{min(high, 12):g} degrees", [low <= abs(ph.angle) < high for ph in photos]))
    for size in sorted({ph.size for ph in photos}):
        print(row(f"{size[0]}x{size[1]} photo", [ph.size == size for ph in photos]))


if __name__ == "__main__":
    main()
