"""Seconds to reach 99.0% MNIST test accuracy: the PyTorch examples' MNIST recipe vs a cnnlab recipe.

Both run in this one process, with the same thread count and the same in-memory data; each is evaluated on the
full 10,000-image test set after every epoch, and the clock (training + evaluation) stops at the first epoch
that reaches the target. Turns alternate (reference, then cnnlab) so that a noisy machine slows both alike.

    python benchmarks/mnist_time_to_accuracy.py                   # the fast recipe; ~5 minutes on 2 cores
    python benchmarks/mnist_time_to_accuracy.py --repeats 3       # medians over 3 runs of each
    python benchmarks/mnist_time_to_accuracy.py --seeds 10        # the recipe alone on seeds 0-9: how many reach it
    python benchmarks/mnist_time_to_accuracy.py --target 0.995 --recipe fast-99.5   # reference still to 99.0%
    python benchmarks/mnist_time_to_accuracy.py --engines torch,scratch   # the NumPy engine beside torch
    python benchmarks/mnist_time_to_accuracy.py --quick           # seconds: the code paths (the tests), not the speed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import load_mnist
from cnnlab.tasks.classification import evaluate
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer


class ExamplesNet(nn.Module):
    """The network of the PyTorch examples' mnist/main.py."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


def reference(train: TensorSplit, test: TensorSplit, target: float, max_epochs: int, seed: int) -> dict:
    """Adadelta lr 1.0, StepLR gamma 0.7 each epoch, batch 64, normalization (0.1307, 0.3081)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    elapsed, history = 0.0, []
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.train()
        for x, y in train.batches(64, shuffle=True, generator=generator):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.inference_mode():
            accuracy = evaluate(model, test).accuracy
        elapsed += time.perf_counter() - start
        history.append((epoch, elapsed, accuracy))
        if accuracy >= target:
            break
    return crossing(history, target)


def cnnlab_recipe(recipe: str, target: float, seed: int, **overrides) -> dict:
    """The recipe as `cnnlab train --recipe RECIPE --stop-at TARGET` runs it (fp32: the benchmark compares recipes,
    not CPUs' bf16 units)."""
    config = recipe_config(recipe, seed=seed, stop_at=target, precision="fp32", device="cpu", **overrides)
    result = Trainer(config, progress=False, save=False).fit()
    elapsed, history = 0.0, []
    for row in result.history:
        elapsed += row["seconds"]
        history.append((row["epoch"], elapsed, row["test_acc"]))
    return crossing(history, target)


def crossing(history, target) -> dict:
    """The first epoch at the target (epochs None: never), its time, and the accuracy where training stopped."""
    for epoch, seconds, accuracy in history:
        if accuracy >= target:
            return {"epochs": epoch, "seconds": seconds, "accuracy": accuracy, "stopped": epoch}
    epoch, seconds, accuracy = history[-1]
    return {"epochs": None, "seconds": float("inf"), "accuracy": accuracy, "stopped": epoch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.99,
                        help="the test accuracy cnnlab's recipe must reach (default 0.99)")
    parser.add_argument("--reference-target", type=float, default=0.99,
                        help="the reference's target (default 99.0%%: its established figure, which budgets for other "
                        "targets are normalized by)")
    parser.add_argument("--recipe", default="fast", help="the cnnlab recipe (default fast)")
    parser.add_argument("--engines", default="torch", help="cnnlab engines, comma-separated (torch, scratch)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for every run (default: torch's, here %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="side-by-side repeats of the reference and the recipe; medians are reported")
    parser.add_argument("--seeds", type=int, help="run only the recipe, on seeds 0..N-1, and count those that reach "
                        "the target")
    parser.add_argument("--max-epochs", type=int, default=8, help="reference gives up after this many epochs")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training and 1,000 test images, one epoch each: checks the code, not the speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    limits = {"train_limit": 2000, "test_limit": 1000, "epochs": 1} if args.quick else {}
    engines = args.engines.split(",")
    if args.seeds:
        return robustness(args.recipe, engines[0], args.target, args.seeds, limits)
    max_epochs = 1 if args.quick else args.max_epochs
    train = TensorSplit(load_mnist("train"), limit=limits.get("train_limit"))
    test = TensorSplit(load_mnist("test"), limit=limits.get("test_limit"))
    reference_name = "reference (PyTorch examples)"
    runs = {reference_name: [], **{f"cnnlab {args.recipe} ({engine})": [] for engine in engines}}
    for repeat in range(args.repeats):
        runs[reference_name].append(reference(train, test, args.reference_target, max_epochs, repeat))
        for engine in engines:
            runs[f"cnnlab {args.recipe} ({engine})"].append(
                cnnlab_recipe(args.recipe, args.target, repeat, engine=engine, **limits))
        for name, results in runs.items():
            r = results[-1]
            print(f"  repeat {repeat + 1}: {name}: {r['seconds']:.1f} s, epochs {r['epochs']}, acc {r['accuracy']:.2%}",
                  flush=True)
    print(f"\nseconds to {args.target:.1%} MNIST test accuracy (the reference: to {args.reference_target:.1%}),\n"
          f"{args.threads} threads, torch {torch.__version__}, median of {args.repeats}:")
    print("| recipe | epochs to target | seconds to target | accuracy then |\n|---|---:|---:|---:|")
    medians = {}
    for name, results in runs.items():
        medians[name] = statistics.median(r["seconds"] for r in results)
        epochs = statistics.median(r["epochs"] or float("inf") for r in results)
        accuracy = statistics.median(r["accuracy"] for r in results)
        print(f"| {name} | {epochs:g} | {medians[name]:.1f} | {accuracy:.2%} |")
    for name in list(runs)[1:]:
        # per repeat, then the median: each ratio is of two runs side by side
        ratios = [a["seconds"] / b["seconds"] for a, b in zip(runs[reference_name], runs[name])]
        print(f"speed-up of {name}: {statistics.median(ratios):.1f}x (per repeat: "
              f"{', '.join(f'{r:.1f}' for r in ratios)})")


def robustness(recipe: str, engine: str, target: float, seeds: int, limits: dict) -> None:
    """The recipe on seeds 0..N-1: how many reach the target, and the accuracy where each stopped."""
    results = [cnnlab_recipe(recipe, target, seed, engine=engine, **limits) for seed in range(seeds)]
    for seed, r in enumerate(results):
        print(f"  seed {seed}: {r['accuracy']:.2%} after {r['stopped']} epoch(s), {r['seconds']:.1f} s", flush=True)
    reached = sum(r["epochs"] is not None for r in results)
    accuracy = statistics.mean(r["accuracy"] for r in results)
    print(f"\n{recipe} ({engine}): {reached}/{seeds} seeds reached {target:.2%}; mean accuracy where they stopped "
          f"{accuracy:.2%}; median {statistics.median(r['seconds'] for r in results):.1f} s")


if __name__ == "__main__":
    main()
