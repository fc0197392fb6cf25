"""The four engines side by side: torch, the NumPy engine (scratch), Keras 3 on torch and PyTensor, training simple-cnn
on MNIST with the default recipe (Adam, one-cycle, batch 64), in one process.

Every engine starts from the same initial weights and sees the same batches in the same order; they take turns batch
by batch (the order rotating), and each step (forward, loss, backward, update) is timed on its own, so that all four
epoch times are measured under the same machine load. Printed: the median epoch time, its ratio to torch's, the
achieved GFLOP/s of forward+backward, PyTensor's compile time, and each engine's test accuracy after the last epoch.

    python benchmarks/engines.py                     # 3 epochs, 1 thread per engine
    python benchmarks/engines.py --epochs 1 --limit 6400 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads and NumPy's BLAS threads")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--engines", default="torch,scratch,keras,pytensor")
    return p.parse_args()


args = parse_args()
# BLAS reads its thread count once, when NumPy loads it: set it before the first import of numpy.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import copy  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from cnnlab.data import load_dataset  # noqa: E402
from cnnlab.models import get_model  # noqa: E402
from cnnlab.models.complexity import profile  # noqa: E402
from cnnlab.train.batches import TensorSplit  # noqa: E402
from cnnlab.train.config import recipe_config  # noqa: E402
from cnnlab.train.distributed import World  # noqa: E402
from cnnlab.train.trainer import make_engine  # noqa: E402

SHAPE = (1, 28, 28)


def training_flops_per_image(model: torch.nn.Module) -> float:
    """Multiply-adds x 2 of conv and linear layers: once forward, once for the weight gradients and once for the
    input gradients (except for the first layer, whose input needs none)."""
    macs = [row.macs for row in profile(model, SHAPE).rows if row.macs]
    return 2 * (3 * sum(macs) - macs[0])


def accuracy(engine, data: TensorSplit) -> float:
    correct = 0
    for x, y in data.batches(1000):
        correct += int((engine.logits(x).argmax(1) == y).sum())
    return correct / len(data)


def main() -> int:
    torch.set_num_threads(args.threads)
    names = args.engines.split(",")
    train = TensorSplit(load_dataset("mnist", "train"), "cpu", args.limit)
    test = TensorSplit(load_dataset("mnist", "test"), "cpu")
    torch.manual_seed(0)
    model = get_model("simple-cnn")
    flops = training_flops_per_image(model)
    steps = train.num_batches(64)
    engines, built_in = {}, {}
    for name in names:
        # fp32 everywhere: --precision auto would give torch bf16 on CPUs that compute it natively
        config = recipe_config(engine=name, epochs=args.epochs, precision="fp32", device="cpu", threads=args.threads)
        start = time.perf_counter()
        engines[name] = make_engine(config, SHAPE, steps, torch.device("cpu"), World(), copy.deepcopy(model))
        built_in[name] = time.perf_counter() - start
    epoch_seconds = {name: [] for name in names}
    generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        seconds = dict.fromkeys(names, 0.0)
        for i, (x, y) in enumerate(train.batches(64, shuffle=True, generator=generator)):
            turn = names[i % len(names):] + names[:i % len(names)]
            for name in turn:
                start = time.perf_counter()
                engines[name].train_batch(x, y)
                seconds[name] += time.perf_counter() - start
        for name in names:
            epoch_seconds[name].append(seconds[name])
        print(f"epoch {epoch + 1}: " + ", ".join(f"{n} {s:.1f} s" for n, s in seconds.items()), flush=True)

    print(f"\nsimple-cnn on {len(train):,} MNIST images x {args.epochs} epochs, default recipe (Adam 2e-3, one-cycle, "
          f"batch 64), fp32, {args.threads} thread(s); {platform.processor() or platform.machine()}")
    print(f"{'engine':<10}{'epoch s':>9}{'x torch':>9}{'img/s':>9}{'GFLOP/s':>9}{'test acc':>10}  built in")
    reference = statistics.median(epoch_seconds[names[0]])
    for name in names:
        epoch = statistics.median(epoch_seconds[name])
        print(f"{name:<10}{epoch:>9.2f}{epoch / reference:>8.2f}x{len(train) / epoch:>9,.0f}"
              f"{flops * len(train) / epoch / 1e9:>9.1f}{accuracy(engines[name], test):>10.2%}  "
              f"{built_in[name]:.1f} s")
    print(f"forward+backward: {flops / 1e6:.1f} MFLOP per image; epoch time: the median of {args.epochs}; "
          f"'built in': translating the model (and PyTensor's compilation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
