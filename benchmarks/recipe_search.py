"""Search for recipes: a table of candidate settings, each trained on several seeds, many runs at once.

How the records' recipes were found (docs/records.md): every candidate below is a recipe plus overrides, trained to
the end of its schedule on each seed, its test accuracy after every epoch written to a JSON-lines file as it
comes. The candidates' epochs were sized from their measured seconds per epoch on 2 CPU cores, so that each fits
the issue's CPU budget; on a GPU the whole table runs in minutes, in parallel processes (fp32, TF32 off, so that
the arithmetic is the CPU's), and the winners are then run on the CPU for the record.

    python benchmarks/recipe_search.py --device cuda --jobs 20 --jsonl search.jsonl   # the whole table
    python benchmarks/recipe_search.py --only fashion-deep32 --seeds 0,1,2
    python benchmarks/recipe_search.py --device cpu --quick                          # the code paths, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import torch

MNIST_AUGMENT = {"max_shift": 2.5, "max_rotate_deg": 12.0, "max_scale": 0.1}
FASHION_AUGMENT = {"crop_padding": 2, "flip": 0.5}


def deep(widths: tuple[int, int, int]) -> dict:
    return {"model": "deep-cnn", "model_options": {"widths": list(widths)}}


def simple(channels: tuple[int, int], hidden: int, dropout: float) -> dict:
    return {"model": "simple-cnn",
            "model_options": {"channels": list(channels), "hidden": hidden, "batch_norm": True, "dropout": dropout}}


# name: overrides of the `best` recipe's settings.
# Seconds per epoch on 2 cores (Zen 5, fp32): simple 32/64 6.5, 48/96 10.0, 64/128-512 15.6; deep 16/32/64 13.1,
# 24/48/96 25.5, 32/64/128 31.0; resnet20 34.2.
CANDIDATES: dict[str, dict] = {
    "mnist-simple64": {**simple((64, 128), 512, 0.3), "epochs": 30},
    "mnist-simple48": {**simple((48, 96), 256, 0.25), "epochs": 40},
    "mnist-deep16": {**deep((16, 32, 64)), "epochs": 40},
    "mnist-deep24": {**deep((24, 48, 96)), "epochs": 22},
    "mnist-deep32": {**deep((32, 64, 128)), "epochs": 18},
    "fashion-simple64": {**simple((64, 128), 512, 0.3), "epochs": 30, "dataset": "fashion-mnist",
                         "augment": FASHION_AUGMENT},
    "fashion-deep16": {**deep((16, 32, 64)), "epochs": 36, "dataset": "fashion-mnist", "augment": FASHION_AUGMENT},
    "fashion-deep24": {**deep((24, 48, 96)), "epochs": 20, "dataset": "fashion-mnist", "augment": FASHION_AUGMENT},
    "fashion-deep32": {**deep((32, 64, 128)), "epochs": 16, "dataset": "fashion-mnist", "augment": FASHION_AUGMENT},
    "fashion-resnet20": {"model": "resnet20", "epochs": 14, "dataset": "fashion-mnist", "augment": FASHION_AUGMENT},
    # Second round: random erasing, and what more epochs would buy.
    "fashion-deep32-erase": {**deep((32, 64, 128)), "epochs": 16, "dataset": "fashion-mnist",
                             "augment": {**FASHION_AUGMENT, "erase": 0.5}},
    "fashion-deep24-erase": {**deep((24, 48, 96)), "epochs": 20, "dataset": "fashion-mnist",
                             "augment": {**FASHION_AUGMENT, "erase": 0.5}},
    "fashion-simple64-erase": {**simple((64, 128), 512, 0.3), "epochs": 30, "dataset": "fashion-mnist",
                               "augment": {**FASHION_AUGMENT, "erase": 0.5}},
    "fashion-deep32-erase-flip": {**deep((32, 64, 128)), "epochs": 16, "dataset": "fashion-mnist",
                                  "augment": {"flip": 0.5, "erase": 0.5}},
    "fashion-deep32-erase-drop2": {"model": "deep-cnn", "model_options": {"widths": [32, 64, 128], "dropout": 0.2},
                                   "epochs": 16, "dataset": "fashion-mnist", "augment": {**FASHION_AUGMENT, "erase": 0.5}},
    "fashion-deep32-30": {**deep((32, 64, 128)), "epochs": 30, "dataset": "fashion-mnist", "augment": FASHION_AUGMENT},
}


def train_one(name: str, seed: int, device: str, quick: bool, jsonl: str | None) -> dict:
    from cnnlab.train.config import recipe_config
    from cnnlab.train.trainer import Trainer

    torch.set_num_threads(1 if device.startswith("cuda") else 2)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # the CPU's fp32 arithmetic
    settings = dict(CANDIDATES[name])
    settings.setdefault("augment", MNIST_AUGMENT)
    if quick:
        settings.update(epochs=1, train_limit=512, test_limit=256)
    config = recipe_config("best", device=device, precision="fp32", seed=seed, **settings)
    trainer = Trainer(config, progress=False, save=False)
    done = threading.Event()

    def report_epochs():  # each epoch's line as it comes, so that a run cut short still says how far it got
        written = 0
        while not done.wait(2.0) or written < len(trainer.history):
            for row in trainer.history[written:]:
                append(jsonl, {"name": name, "seed": seed, "epoch": row["epoch"], "test_acc": row["test_acc"],
                               "seconds": row["seconds"]})
            written = len(trainer.history)

    watcher = threading.Thread(target=report_epochs, daemon=True)
    watcher.start()
    start = time.perf_counter()
    result = trainer.fit()
    done.set()
    watcher.join()
    row = {"name": name, "seed": seed, "final": result.final_test_acc, "epochs": len(result.history),
           "best": max(r["test_acc"] for r in result.history), "wall_seconds": time.perf_counter() - start}
    append(jsonl, row)
    return row


def append(path: str | None, row: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", help="comma-separated candidate names (default: all)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds; runs not done by then are dropped")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the code paths, not the recipes")
    parser.add_argument("--jsonl", help="append every epoch's and every run's result to this file")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; expected some of {', '.join(CANDIDATES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    # Longest first, so that the last runs to start are the short ones.
    jobs = sorted(((n, s) for n in names for s in seeds), key=lambda job: -CANDIDATES[job[0]]["epochs"])
    finished: dict[str, list[dict]] = defaultdict(list)
    width = max(len(name) for name in names)
    pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"))
    futures = [pool.submit(train_one, n, s, args.device, args.quick, args.jsonl) for n, s in jobs]
    try:
        for future in as_completed(futures, timeout=args.deadline):
            row = future.result()
            finished[row["name"]].append(row)
            print(f"{row['name']:<{width}} seed {row['seed']}: {row['final']:.2%} after {row['epochs']} epochs "
                  f"(best {row['best']:.2%}), {row['wall_seconds']:.0f} s", flush=True)
    except TimeoutError:
        print(f"deadline: {sum(not f.done() for f in futures)} runs unfinished", flush=True)
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):  # a deadline does not wait for them
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    print(f"\n{'candidate':<{width}} {'seeds':>5} {'mean':>7} {'min':>7} {'epochs':>6}")
    for name in names:
        rows = finished.get(name)
        if rows:
            finals = [r["final"] for r in rows]
            print(f"{name:<{width}} {len(rows):>5} {statistics.mean(finals):>7.2%} {min(finals):>7.2%} "
                  f"{CANDIDATES[name]['epochs']:>6}")


if __name__ == "__main__":
    main()
