"""GPU benchmark: MNIST time to 99.0% end to end (the fast recipe, 30 seeds, data in device memory), and training throughput of the default CNN, ResNet-18 and
ResNet-50 at their native input sizes (bf16 autocast, channels_last, data resident on the device).

    python benchmarks/gpu.py                          # on a CUDA machine
    python benchmarks/gpu.py --device cpu --quick     # the same code paths, tiny sizes (what the tests run)

Time to accuracy: one warm-up run first (CUDA context, cuDNN autotuning, allocator), then `--repeats` timed
runs of the Trainer with `stop_at`, two figures each: the epochs' seconds (training plus evaluation) and the
seconds end to end (building the Trainer: the model, the optimizer, the data copied to the device; training;
evaluating), after the MNIST files were read once. Throughput: synthetic batches on the device, `--warmup` untimed
steps, then `--steps` timed steps between two device synchronizations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab.models import get_model, model_info
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_to_accuracy(recipe: str, device: str, target: float, repeats: int, quick: bool, **overrides) -> dict:
    settings = dict(device=device, stop_at=target, **overrides)
    if quick:
        settings.update(train_limit=1000, test_limit=500, epochs=1, stop_at=None)
    if not quick:  # the quick mode checks the code paths, not the speed: no warm-up
        Trainer(recipe_config(recipe, **settings), progress=False, save=False).fit()
    runs, on = [], torch.device(device)
    for seed in range(repeats):
        synchronize(on)
        start = time.perf_counter()
        result = Trainer(recipe_config(recipe, **settings, seed=seed), progress=False, save=False).fit()
        synchronize(on)
        runs.append({"seconds": result.seconds, "end_to_end_seconds": time.perf_counter() - start,
                     "epochs": len(result.history), "test_acc": result.final_test_acc})
    return {"median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_end_to_end_seconds": statistics.median(r["end_to_end_seconds"] for r in runs), "runs": runs,
            "mean_test_acc": statistics.mean(r["test_acc"] for r in runs),
            "reached": sum(r["test_acc"] >= target for r in runs)}


def throughput(name: str, device: torch.device, batch_size: int, steps: int, warmup: int, side: int | None = None,
               bf16: bool = True, channels_last: bool = True) -> dict:
    entry = model_info(name)
    channels, native = entry.input_size[0], entry.input_size[-1]
    side = side or native
    model = get_model(name, num_classes=entry.num_classes, in_channels=channels, input_size=side)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, channels, side, side, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, entry.num_classes, (batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        with autocast:
            output = model(x)
            logits = output[0] if isinstance(output, tuple) else output  # GoogLeNet-style auxiliary outputs
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"model": name, "input": [channels, side, side], "batch_size": batch_size,
            "images_per_s": batch_size * steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code paths, not the speed")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--recipe", default="fast", help="MNIST recipe (default fast)")
    parser.add_argument("--repeats", type=int, default=30, help="seeds timed (default 30)")
    parser.add_argument("--batch-size", type=int, default=None, help="MNIST recipe batch size (default: recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="MNIST recipe peak learning rate")
    parser.add_argument("--no-throughput", action="store_true", help="time to accuracy only")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    overrides = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr}.items() if v is not None}
    results = {"device": str(device), "time_to_accuracy": time_to_accuracy(
        args.recipe, args.device, args.target, 1 if args.quick else args.repeats, args.quick, **overrides)}
    timed = results["time_to_accuracy"]
    print(f"MNIST time to {args.target:.1%} ({args.recipe} recipe{', ' if overrides else ''}"
          f"{', '.join(f'{k} {v:g}' for k, v in overrides.items())}): {timed['reached']} of {len(timed['runs'])} "
          f"seeds reached it,\n  mean accuracy {timed['mean_test_acc']:.2%}; median {timed['median_seconds']:.2f} s "
          f"training and evaluating, {timed['median_end_to_end_seconds']:.2f} s end to end")
    sizes = {} if args.no_throughput else {"simple-cnn": (512, None), "resnet18": (256, None), "resnet50": (128, None)}
    # quick: one step each, no warm-up (its bf16 autocast is emulated on a CPU without bf16: 17 s for three steps
    # of each on an AVX2 machine, 7 with the instructions)
    steps, warmup = (1, 0) if args.quick else (50, 10)
    results["throughput"] = []
    for name, (batch, side) in sizes.items():
        if args.quick:
            batch, side = 2, (None if name == "simple-cnn" else 32)
        row = throughput(name, device, batch, steps, warmup, side)
        results["throughput"].append(row)
        print(f"{name:>10} {'x'.join(map(str, row['input']))} batch {batch}: {row['images_per_s']:,.0f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
