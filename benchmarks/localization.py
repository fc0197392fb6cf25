"""The `localization` recipe on mnist-boxes for several seeds: localization accuracy (the right class and IoU >=
0.5), mean box IoU, class accuracy and wall time against the recipe's budget, one row per seed.

Each seed trains in this one process, one after the other, through the ordinary Trainer (run folders under
--runs-dir), in fp32. The budget is 10 minutes on 2 CPU cores, normalized as the segmentation benchmark's is: 10
minutes where U-Net 8-128 trains 146 fp32 scenes/s (benchmarks/segmentation_speed.py; a 2-core Zen 3), scaled by
the rate measured here before and after the runs (their mean). Each row's wall time (building the model, drawing
the images, training and evaluating) is printed next to it, with the load average. On a shared machine the process
gets only part of a core: with --threads 1 its CPU time is the work done, and the budget is also given in CPU
seconds, from the reference's rate per CPU second (its wall rate times the share of a core it had).

    python benchmarks/localization.py --seeds 0 1 2 --threads 2          # the recipe, with the budget here
    python benchmarks/localization.py --seeds 0 --dataset-options '{"clutter": 4}'   # with other digits' fragments
    python benchmarks/localization.py --train-limit 2000 --test-limit 500 --epochs 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from segmentation_speed import REFERENCE_BUDGET_S, REFERENCE_WIDTHS, reference_budget, training_rates

from cnnlab import hardware
from cnnlab.train.config import RECIPES, recipe_config
from cnnlab.train.trainer import Trainer

BUDGET_S = 10 * 60  # on the reference machine, training + evaluation
TARGET = 0.95  # localization accuracy


def run(seed: int, args) -> dict:
    config = recipe_config("localization", seed=seed, epochs=args.epochs, train_limit=args.train_limit,
                           test_limit=args.test_limit, threads=args.threads, precision="fp32",
                           model=args.model, model_options=args.model_options, dataset_options=args.dataset_options)
    start, cpu = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()[0]
    trainer = Trainer(config, name=f"{args.prefix}seed{seed}", runs_dir=args.runs_dir, progress=not args.quiet)
    result = trainer.fit()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    final = result.final
    return {"seed": seed, "model": config.model, "parameters": sum(p.numel() for p in trainer.engine.model.parameters()),
            "epochs": config.epochs, "train_images": len(trainer.train_data), "test_images": len(trainer.test_data),
            "localization_accuracy": final.localization_accuracy, "mean_iou": final.mean_iou,
            "accuracy": final.accuracy, "seconds": result.seconds, "wall_seconds": wall, "cpu_seconds": cpu,
            "load_average": [load_before, os.getloadavg()[0]], "threads": torch.get_num_threads(),
            "run_dir": str(result.run_dir)}


def table(rows: list[dict]) -> str:
    lines = ["| seed | parameters | epochs x train images | test images | localization accuracy | mean IoU | "
             "class accuracy | wall seconds | CPU seconds | load average (start, end) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['parameters']:,} | {r['epochs']} x {r['train_images']:,} | "
                     f"{r['test_images']:,} | **{r['localization_accuracy']:.2%}** | {r['mean_iou']:.4f} | "
                     f"{r['accuracy']:.2%} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
                     f"{r['load_average'][0]:.1f}, {r['load_average'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=RECIPES["localization"]["epochs"])
    parser.add_argument("--train-limit", type=int, help="first N of the 60,000 train images")
    parser.add_argument("--test-limit", type=int, help="first N of the 10,000 test images")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--model", help="another registered localizer than the recipe's")
    parser.add_argument("--model-options", type=json.loads, help="JSON instead of the recipe's model options")
    parser.add_argument("--dataset-options", type=json.loads, help='mnist-boxes settings, e.g. \'{"clutter": 4}\'')
    parser.add_argument("--runs-dir", default="runs/benchmark-localization")
    parser.add_argument("--prefix", default="", help="run folder name prefix")
    parser.add_argument("--json", type=Path, help="also write the rows to this file (appended, one per line)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rate_before, share_before = reference_rate()
    rows = []
    for seed in args.seeds:
        rows.append(run(seed, args))
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    rate_after, share_after = reference_rate()
    rate = (rate_before + rate_after) / 2
    cpu_rate = (rate_before / share_before + rate_after / share_after) / 2
    budget = reference_budget(rate) * BUDGET_S / REFERENCE_BUDGET_S
    cpu_budget = reference_budget(cpu_rate) * BUDGET_S / REFERENCE_BUDGET_S
    print(table(rows))
    print(f"CPU: {hardware.cpu_model()}, {hardware.cpu_capability()} kernels; {torch.get_num_threads()} threads")
    print(f"reference rate (fp32 U-Net {REFERENCE_WIDTHS}, batch 16): {rate_before:.1f} scenes/s before, "
          f"{rate_after:.1f} after (with {share_before:.0%} and {share_after:.0%} of a core per thread); the 10-minute "
          f"budget here: {budget:.0f} s of wall time, {cpu_budget:.0f} s of CPU time")
    for r in rows:
        reached = "reached" if r["localization_accuracy"] >= TARGET else "NOT reached"
        print(f"seed {r['seed']}: localization accuracy {r['localization_accuracy']:.2%} ({TARGET:.0%} {reached}) in "
              f"{r['wall_seconds']:.0f} s wall, {r['wall_seconds'] / budget:.0%} of the budget "
              f"({'within' if r['wall_seconds'] <= budget else 'OVER'}); {r['cpu_seconds']:.0f} CPU s, "
              f"{r['cpu_seconds'] / cpu_budget:.0%} of the CPU budget "
              f"({'within' if r['cpu_seconds'] <= cpu_budget else 'OVER'})")


def reference_rate() -> tuple[float, float]:
    """(the reference's scenes/s, the share of a core per thread this process had while it was measured)."""
    start, cpu = time.perf_counter(), time.process_time()
    rate = training_rates([(REFERENCE_WIDTHS, "fp32")])[0]
    return rate, (time.process_time() - cpu) / ((time.perf_counter() - start) * torch.get_num_threads())


if __name__ == "__main__":
    main()
