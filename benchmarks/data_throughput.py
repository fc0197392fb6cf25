"""Images per second delivered to the training step (read, decoded, augmented, normalized, on the device) from a
folder of photos, by cnnlab's loader (its decoded cache read by index, or each file decoded when read) and by a
plain torchvision-style reference written here: an ImageFolder-like dataset that opens each file with PIL in the
DataLoader's workers, resizes and centre-crops it, then pads, crops, flips and normalizes each image on its own,
as torchvision's transforms do (torchvision itself is not installed here). Same files, same batch size, same
number of workers, the same augmentation (ResNet's padded crop and flip), side by side: each configuration runs
--repeat times in turn, and the table gives medians.

    python benchmarks/data_throughput.py                        # 32 and 224 px, 0/1/2 workers, on the CPU
    python benchmarks/data_throughput.py --device cuda          # ... and ResNet-18 at 224 px: how busy the GPU is
    python benchmarks/data_throughput.py --short                # seconds: the code paths, not the numbers

With --device cuda, ResNet-18 trains at 224 px (bf16 autocast, channels-last) on batches from the cached loader,
then on one batch kept on the GPU: the ratio of the two speeds is the share of the time the GPU is busy (100%:
the loader never makes it wait).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import folders, load_dataset
from cnnlab.train.batches import Augment
from cnnlab.train.streaming import StreamSplit

PADDING = {32: 4, 224: 16}  # the padded crop, in pixels, at each side (ResNet's 4 at CIFAR's 32)


def generate(root: Path, count: int, size: int, seed: int = 0) -> None:
    """`count` JPEG photos of size x size in 4 classes: coloured discs on noisy backgrounds."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for c in range(4):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.normal(rng.integers(40, 216, 3), 25, (size, size, 3))
        cy, cx, r = *rng.integers(size // 4, 3 * size // 4, 2), size // 5
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"class{i % 4}" / f"{i:06d}.jpg",
                                                                      quality=90)


class ReferenceFolder(torch.utils.data.Dataset):
    """torchvision's ImageFolder with Resize(side), CenterCrop(side), RandomCrop(side, padding), RandomHorizontalFlip,
    ToTensor and Normalize, one image at a time, written out in PIL and torch (no torchvision here)."""

    def __init__(self, files, labels, side: int, mean, std):
        self.files, self.labels, self.side = files, labels, side
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            image = image.convert("RGB")
        w, h = image.size
        scale = self.side / min(w, h)
        image = image.resize((max(self.side, round(w * scale)), max(self.side, round(h * scale))),
                             Image.Resampling.BILINEAR)
        left, top = (image.width - self.side) // 2, (image.height - self.side) // 2
        image = image.crop((left, top, left + self.side, top + self.side))
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        pad = PADDING[self.side] if self.side in PADDING else self.side // 8
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        x = x[:, i:i + self.side, j:j + self.side]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x.float() / 255 - self.mean) / self.std, self.labels[index]


def reference_epoch(dataset: ReferenceFolder, batch_size: int, workers: int, device: torch.device) -> float:
    """Images per second of one pass of the reference loader, each batch on the device."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        seen += len(y)
    synchronize(device)
    return seen / (time.perf_counter() - start)


def cnnlab_epoch(split, batch_size: int, workers: int, device: torch.device, side: int) -> float:
    """Images per second of one pass of cnnlab's loader over `split` (read from its cache, or decoded)."""
    data = StreamSplit(split, device, workers=workers)
    augment = Augment(crop_padding=PADDING.get(side, side // 8), flip=0.5)
    start, seen = time.perf_counter(), 0
    for x, y in data.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0), augment=augment):
        seen += len(y)
    synchronize(device)
    return seen / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_busy(split, batch_size: int, workers: int, device: torch.device, steps: int) -> tuple[float, float]:
    """(images/s of ResNet-18 training on the cached loader's batches, the share of the time the GPU was busy:
    that speed over the speed on one batch kept on the GPU)."""
    from cnnlab.models import get_model

    model = get_model("resnet18", num_classes=split.info.num_classes, in_channels=3, input_size=224).to(
        device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    data = StreamSplit(split, device, workers=workers)
    augment = Augment(crop_padding=16, flip=0.5)
    kept = next(data.batches(batch_size, True, torch.Generator().manual_seed(0), augment))
    for _ in range(5):  # warm-up: cuDNN's choice of kernels
        step(*kept)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*kept)
    synchronize(device)
    alone = steps * batch_size / (time.perf_counter() - start)
    start, seen = time.perf_counter(), 0
    while seen < steps * batch_size:
        for x, y in data.batches(batch_size, True, torch.Generator().manual_seed(seen), augment, drop_last=True):
            step(x, y)
            seen += len(y)
            if seen >= steps * batch_size:
                break
    synchronize(device)
    fed = seen / (time.perf_counter() - start)
    return fed, fed / alone


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="photos in the generated folder")
    parser.add_argument("--source-size", type=int, default=256, help="pixels a side of each photo")
    parser.add_argument("--sides", default="32,224", help="sides to train at")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to compare")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="passes of each configuration (median)")
    parser.add_argument("--limit", type=int, default=None, help="224-px rows read only the first N images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--gpu-steps", type=int, default=100, help="ResNet-18 steps timed on a GPU")
    parser.add_argument("--folder", type=Path, help="use this folder of photos instead of generating one")
    parser.add_argument("--short", action="store_true", help="a few seconds: 48 small photos, 0 and 1 worker")
    args = parser.parse_args(argv)
    if args.short:
        args.files, args.source_size, args.sides, args.workers = 48, 64, "32", "0,1"
        args.batch_size, args.repeat = 8, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sides = [int(s) for s in args.sides.split(",")]
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="cnnlab-throughput-") as scratch:
        root = args.folder or Path(scratch) / "photos"
        if args.folder is None:
            generate(root, args.files, args.source_size)
        os.environ.setdefault("CNNLAB_CACHE", str(Path(scratch) / "cache"))
        print(f"{root}: {args.files:,} photos of {args.source_size} px, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores; medians of {args.repeat}")
        print("| side | workers | reference img/s | cnnlab decoding img/s | cnnlab cached img/s | decoding / ref | "
              "cached / ref |")
        print("|---|---|---|---|---|---|---|")
        for side in sides:
            name = f"folder:{root}"
            limit = args.limit if side > 64 else None
            cached = load_dataset(name, "train", quiet=True, options={"side": side})
            decoding = load_dataset(name, "train", quiet=True, options={"side": side, "cache": False})
            if limit:
                cached, decoding = (type(s)(s.images.head(limit), s.labels[:limit], s.info, s.split)
                                    for s in (cached, decoding))
            files = cached.info.split_files("train")[:len(cached)]
            reference = ReferenceFolder(files, cached.labels.tolist(), side, cached.info.mean, cached.info.std)
            for workers in counts:
                rates = {"reference": [], "decoding": [], "cached": []}
                for _ in range(args.repeat):
                    rates["reference"].append(reference_epoch(reference, args.batch_size, workers, device))
                    rates["decoding"].append(cnnlab_epoch(decoding, args.batch_size, workers, device, side))
                    rates["cached"].append(cnnlab_epoch(cached, args.batch_size, workers, device, side))
                ref, dec, cac = (statistics.median(rates[k]) for k in ("reference", "decoding", "cached"))
                print(f"| {side} | {workers} | {ref:,.0f} | {dec:,.0f} | {cac:,.0f} | {dec / ref:.2f}x | "
                      f"{cac / ref:.2f}x |", flush=True)
        if device.type == "cuda" and 224 in sides:
            cached = load_dataset(f"folder:{root}", "train", quiet=True, options={"side": 224})
            for workers in counts:
                fed, busy = gpu_busy(cached, args.batch_size, workers, device, args.gpu_steps)
                print(f"ResNet-18 at 224 px, {workers} worker(s): {fed:,.0f} img/s, GPU busy {busy:.0%}")
    folders.decoded.cache_clear()


if __name__ == "__main__":
    sys.exit(main())
