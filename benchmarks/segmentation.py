"""FCN-32s, FCN-16s, FCN-8s and U-Net on mnist-scenes: the same scenes, recipe and schedule for each; a table of
test mean IoU (background included), pixel accuracy, IoU of the background and of the digits, and time.

Each model trains in this one process, one after the other, through the ordinary Trainer (run folders under
--runs-dir). The machine's load average is recorded next to each row: on a shared machine time is not clean.

Machines differ, so the recipe's time budget is normalized: 15 minutes where U-Net 8-128 trains 146 fp32
scenes/s (benchmarks/segmentation_speed.py; a 2-core Zen 3), scaled by the rate measured here, before and after
the runs (the mean of the two). Each row's wall time (building the model, loading the scenes, training and
evaluating) is printed next to that budget.

    python benchmarks/segmentation.py --models unet --threads 2       # the recipe, with the budget here
    python benchmarks/segmentation.py --models fcn-32s fcn-16s fcn-8s --epochs 1 --threads 2 \
        --dataset-options '{"train_scenes": 60000}'                     # scenes of 1-3 digits, not the recipe's 1-5
    python benchmarks/segmentation.py --train-limit 4000 --test-limit 1000 --epochs 3 --threads 1
    python benchmarks/segmentation.py --models unet --model-options '{"widths": [8, 16, 32, 64, 128]}'  # half as wide
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from segmentation_speed import REFERENCE_WIDTHS, reference_budget, training_rates

from cnnlab import hardware

from cnnlab.train.config import RECIPES, recipe_config
from cnnlab.train.trainer import Trainer

MODELS = ["fcn-32s", "fcn-16s", "fcn-8s", "unet"]


def run(model: str, args) -> dict:
    config = recipe_config("segmentation", model=model, epochs=args.epochs, train_limit=args.train_limit,
                           test_limit=args.test_limit, threads=args.threads, seed=args.seed, precision=args.precision,
                           model_options=args.model_options, dataset_options=args.dataset_options)
    start = time.perf_counter()
    trainer = Trainer(config, name=f"{args.prefix}{model}", runs_dir=args.runs_dir, progress=not args.quiet)
    load_before = os.getloadavg()[0]
    setup = time.perf_counter() - start
    untrained = trainer.task.evaluate(trainer.engine.logits, trainer.test_data, config.eval_batch_size).mean_iou
    start = time.perf_counter()
    result = trainer.fit()
    wall = setup + time.perf_counter() - start  # the untrained evaluation is the benchmark's, not the recipe's
    iou = result.final.iou
    return {"model": model, "parameters": sum(p.numel() for p in trainer.engine.model.parameters()),
            "epochs": config.epochs, "train_scenes": len(trainer.train_data), "test_scenes": len(trainer.test_data),
            "seconds": result.seconds, "wall_seconds": wall, "precision": trainer.engine.precision,
            "untrained_miou": untrained, "mean_iou": result.final.mean_iou,
            "pixel_accuracy": result.final.accuracy, "background_iou": iou[0].item(),
            "digits_mean_iou": iou[1:].nanmean().item(), "load_average": [load_before, os.getloadavg()[0]],
            "threads": config.threads, "run_dir": str(result.run_dir)}


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | epochs x train scenes | test scenes | mean IoU | IoU digits | IoU background | "
             "pixel accuracy | untrained mean IoU | wall seconds | load average (start, end) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['epochs']} x {r['train_scenes']:,} | "
                     f"{r['test_scenes']:,} | **{r['mean_iou']:.4f}** | {r['digits_mean_iou']:.4f} | "
                     f"{r['background_iou']:.4f} | {r['pixel_accuracy']:.2%} | {r['untrained_miou']:.4f} | "
                     f"{r['wall_seconds']:.0f} | {r['load_average'][0]:.1f}, {r['load_average'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--epochs", type=int, default=RECIPES["segmentation"]["epochs"])
    parser.add_argument("--train-limit", type=int, help="first N of the recipe's 60,000 train scenes")
    parser.add_argument("--test-limit", type=int, help="first N of the 2,000 test scenes")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32",
                        help="fp32 (default): the budget is set for it; auto: bf16 where the CPU has it natively")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-options", type=json.loads,
                        help='JSON for every model instead of the recipe\'s (which are for its U-Net), e.g. '
                             '\'{"widths": [16, 32, 64, 128, 256]}\' (the U-Net paper\'s widths / 4)')
    parser.add_argument("--dataset-options", type=json.loads,
                        help='mnist-scenes settings instead of the recipe\'s, e.g. \'{"train_scenes": 10000}\'')
    parser.add_argument("--runs-dir", default="runs/benchmark-segmentation")
    parser.add_argument("--prefix", default="", help="run folder name prefix")
    parser.add_argument("--json", type=Path, help="also write the rows to this file (appended, one per line)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--reference-rounds", type=int, default=5,
                        help="timed rounds of 5 steps of the reference U-Net, before and after (default 5; fewer: "
                        "a rougher budget, sooner)")
    args = parser.parse_args()
    if args.reference_rounds < 1:
        parser.error(f"--reference-rounds {args.reference_rounds}: expected 1 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    rate_before = training_rates([(REFERENCE_WIDTHS, "fp32")], rounds=args.reference_rounds)[0]
    rows = []
    for model in args.models:
        rows.append(run(model, args))
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    rate_after = training_rates([(REFERENCE_WIDTHS, "fp32")], rounds=args.reference_rounds)[0]
    rate = (rate_before + rate_after) / 2
    print(table(rows))
    print(f"CPU: {hardware.cpu_model()}, {hardware.cpu_capability()} kernels, native bf16: "
          f"{'yes' if hardware.native_bf16() else 'no'}; {torch.get_num_threads()} threads")
    print(f"reference rate (fp32 U-Net {REFERENCE_WIDTHS}, batch 16): {rate_before:.0f} scenes/s before, "
          f"{rate_after:.0f} after; the recipe's budget here: {reference_budget(rate):.0f} s")
    for r in rows:
        within = "within" if r["wall_seconds"] <= reference_budget(rate) else "OVER"
        print(f"{r['model']}: mean IoU {r['mean_iou']:.4f} in {r['wall_seconds']:.0f} s wall ({r['precision']}), "
              f"{r['wall_seconds'] / reference_budget(rate):.0%} of the budget: {within}")
    fcn = {r["model"]: r["mean_iou"] for r in rows if r["model"].startswith("fcn")}
    if len(fcn) == 3:
        ordered = fcn["fcn-8s"] >= fcn["fcn-16s"] >= fcn["fcn-32s"]
        print(f"FCN-8s >= FCN-16s >= FCN-32s in mean IoU (the FCN paper's Table 2 order): {ordered}")


if __name__ == "__main__":
    main()
