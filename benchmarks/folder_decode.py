"""Decode throughput of a `folder:PATH` dataset: a generated folder of PNG and JPEG photos (half each, 3 classes
of coloured shapes on noisy backgrounds) decoded to side x side, first with one process, then with every core
(the way `cnnlab train` decodes), then the cached start, which memory-maps the decoded set.

The one-process and all-core runs decode the same files one after the other in this script, so that the ratio
of the two is the measurement a noisy machine cannot fake; each cached start is timed --repeat times (median).

    python benchmarks/folder_decode.py                       # 10,000 files of 96x72, side 32
    python benchmarks/folder_decode.py --files 2000 --source-size 640x480 --side 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cnnlab.data import folders, load_dataset


def generate(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    shapes = ("circle", "square", "triangle")
    for name in shapes:
        (root / name).mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(count):
        shape = shapes[i % 3]
        background = np.clip(rng.normal(rng.integers(0, 256, 3), 20, (h, w, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(background)
        draw = ImageDraw.Draw(image)
        r = int(rng.integers(min(w, h) // 5, min(w, h) // 2))
        cx, cy = int(rng.integers(r, w - r + 1)), int(rng.integers(r, h - r + 1))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        image.save(root / shape / f"{i:05d}.{'png' if i % 2 else 'jpg'}", quality=90)


def decode_seconds(root: Path, side: int, cores: int) -> float:
    """Seconds to decode the folder from scratch with `cores` processes (its cache removed first)."""
    shutil.rmtree(root / folders.CACHE_FOLDER, ignore_errors=True)
    folders.decoded.cache_clear()
    default = folders.workers
    folders.workers = lambda: cores
    try:
        start = time.perf_counter()
        folders.decoded(root, side, "crop", quiet=True)
        return time.perf_counter() - start
    finally:
        folders.workers = default


def cached_start(root: Path, side: int) -> float:
    """Seconds from nothing in memory to both splits loaded and normalized statistics known."""
    folders.decoded.cache_clear()
    folders._folder_dataset.cache_clear()
    start = time.perf_counter()
    name = f"folder:{root}"
    train = load_dataset(name, "train", quiet=True, options={"side": side})
    load_dataset(name, "test", quiet=True, options={"side": side})
    train.info.mean  # noqa: B018  (the statistics pass is part of a start)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--source-size", default="96x72", help="WxH of the generated photos")
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5, help="cached starts timed (median)")
    parser.add_argument("--folder", help="generate here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.source_size.split("x"))
    root = Path(args.folder or tempfile.mkdtemp(prefix="cnnlab-folder-bench-")) / "photos"
    try:
        start = time.perf_counter()
        if not root.is_dir():
            generate(root, args.files, size)
        print(f"{args.files:,} files of {args.source_size} (PNG and JPEG) generated in "
              f"{time.perf_counter() - start:.1f} s; decoding to {args.side}x{args.side}, centre crop")
        cores = folders.workers()
        one = decode_seconds(root, args.side, 1)
        every = decode_seconds(root, args.side, cores)
        cached = statistics.median(cached_start(root, args.side) for _ in range(args.repeat))
        cache_file = next((root / folders.CACHE_FOLDER).glob("*.npy"))
        print(f"\n| run | seconds | files/s |\n|---|---:|---:|")
        print(f"| first, 1 process | {one:.2f} | {args.files / one:,.0f} |")
        print(f"| first, {cores} processes | {every:.2f} | {args.files / every:,.0f} |")
        print(f"| cached start (median of {args.repeat}) | {cached:.3f} | {args.files / cached:,.0f} |")
        print(f"\n{cores} processes vs 1: {one / every:.2f}x; cached start vs first ({cores} processes): "
              f"{every / cached:.0f}x faster; cache {cache_file.stat().st_size / 2**20:.1f} MiB")
    finally:
        if not args.folder:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    main()
