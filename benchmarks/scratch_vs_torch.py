"""The scratch engine against PyTorch: one MNIST epoch of the same LeNet-style model (cnnlab's `simple-cnn`), same
initial weights, same batches, same optimizer, same thread count, in the same process.

The two engines take turns batch by batch (their order alternating), and each step (forward, loss, backward,
update) is timed on its own, so that both epoch times are measured under the same machine load. Also printed:
the achieved GFLOP/s of forward+backward and the machine's single-precision matrix-product (sgemm) GFLOP/s.

    python benchmarks/scratch_vs_torch.py                  # 1 thread each, batch 64, full epoch
    python benchmarks/scratch_vs_torch.py --threads 2 --limit 12800 --test-limit 2000
"""

from __future__ import annotations

import argparse
import os
import sys


def count(text: str) -> int:
    """A whole number of images, at least 1 (argparse turns the ValueError into a one-line error, exit 2)."""
    if int(text) < 1:
        raise ValueError(text)
    return int(text)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads and NumPy's BLAS threads")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9, Nesterov)")
    p.add_argument("--limit", type=count, default=None, help="train on the first N images only")
    p.add_argument("--test-limit", type=count, default=None, help="test on the first N test images only")
    return p.parse_args()


args = parse_args()
# BLAS reads its thread count once, when NumPy loads it: set it before the first import of numpy.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cnnlab.data import load_dataset  # noqa: E402
from cnnlab.models import get_model  # noqa: E402
from cnnlab.scratch import Tensor, no_grad, optim  # noqa: E402
from cnnlab.scratch import functional as F  # noqa: E402
from cnnlab.scratch.twin import twin  # noqa: E402


def mnist(split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("mnist", split)
    images = ((data.images[:limit] / 255.0 - data.info.mean) / data.info.std).astype(np.float32)[:, None]
    return images, data.labels[:limit]


def training_flops_per_image(model: torch.nn.Module, shape=(1, 1, 28, 28)) -> float:
    """Multiply-adds x 2 of conv and linear layers: once forward, once for the weight gradients and once for the
    input gradients (except for the first layer, whose input needs none)."""
    forward = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            macs = output[0].numel() * module.in_channels // module.groups * np.prod(module.kernel_size)
        else:
            macs = module.in_features * module.out_features
        forward.append(2 * macs)
    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return 3 * sum(forward) - forward[0]


def sgemm_gflops(n: int = 1024, repeats: int = 10) -> tuple[float, float]:
    """Median GFLOP/s of an n x n float32 matrix product, in NumPy (its BLAS) and in torch."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    ta = torch.from_numpy(a)
    results = []
    for mm in (lambda: a @ a, lambda: ta @ ta):
        mm()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            mm()
            times.append(time.perf_counter() - start)
        results.append(2 * n**3 / np.median(times) / 1e9)
    return results[0], results[1]


def main() -> int:
    torch.set_num_threads(args.threads)
    x, y = mnist("train", args.limit)
    x_test, y_test = mnist("test", args.test_limit)
    torch.manual_seed(0)
    model = get_model("simple-cnn")
    scratch_model = twin(model)  # same layers, same initial weights
    flops = training_flops_per_image(model)
    theirs = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
    ours = optim.SGD(scratch_model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)

    def torch_step(xb, yb):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        theirs.zero_grad()
        loss.backward()
        theirs.step()

    def scratch_step(xb, yb):
        loss = F.cross_entropy(scratch_model(Tensor(xb)), yb)
        ours.zero_grad()
        loss.backward()
        ours.step()

    seconds = {"torch": 0.0, "scratch": 0.0}
    steps = {"torch": torch_step, "scratch": scratch_step}
    order = np.random.default_rng(0).permutation(len(x))
    for i, start in enumerate(range(0, len(x), args.batch_size)):
        idx = np.sort(order[start:start + args.batch_size])
        xb, yb = np.ascontiguousarray(x[idx]), y[idx]
        for name in (("torch", "scratch") if i % 2 == 0 else ("scratch", "torch")):
            t0 = time.perf_counter()
            steps[name](xb, yb)
            seconds[name] += time.perf_counter() - t0

    chunks = range(0, len(x_test), 1000)  # bounded memory: im2col of 10,000 images would take ~1.6 GB
    with torch.no_grad():
        torch_pred = np.concatenate([model(torch.from_numpy(x_test[i:i + 1000])).argmax(1).numpy() for i in chunks])
    with no_grad():
        scratch_pred = np.concatenate([scratch_model(Tensor(x_test[i:i + 1000])).data.argmax(1) for i in chunks])
    torch_acc, scratch_acc = (torch_pred == y_test).mean(), (scratch_pred == y_test).mean()
    numpy_gemm, torch_gemm = sgemm_gflops()

    print(f"one epoch of simple-cnn on {len(x):,} MNIST images, batch {args.batch_size}, SGD lr {args.lr}\n"
          f"Nesterov momentum 0.9, {args.threads} thread(s); tested on {len(x_test):,} test images")
    print(f"{'engine':<9}{'epoch s':>9}{'img/s':>9}{'GFLOP/s':>9}{'test acc':>10}")
    for name, acc in (("torch", torch_acc), ("scratch", scratch_acc)):
        print(f"{name:<9}{seconds[name]:>9.2f}{len(x) / seconds[name]:>9,.0f}"
              f"{flops * len(x) / seconds[name] / 1e9:>9.1f}{acc:>10.2%}")
    print(f"scratch / torch epoch time: {seconds['scratch'] / seconds['torch']:.2f}x (target <= 2.0x)")
    print(f"forward+backward: {flops / 1e6:.1f} MFLOP per image\n"
          f"sgemm 1024^3: NumPy {numpy_gemm:.0f} GFLOP/s, torch {torch_gemm:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
