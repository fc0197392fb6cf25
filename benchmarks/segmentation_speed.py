"""U-Net training steps per second in fp32 and in bf16 autocast, side by side in one process.

Every (widths, precision) variant trains on the same synthetic batch of 64x84 scenes; the variants take turns, a
round of --steps steps each, and the median over --rounds rounds (after one warm-up round) is reported, so a
noisy machine slows all of them alike. bf16 pays where the CPU multiplies bf16 natively (AVX512-BF16, AMX).

The first row, U-Net 8-128 in fp32 at batch 16, is also the yardstick of the segmentation recipe's time budget:
15 minutes on a machine where it trains 146 scenes/s (a 2-core AMD EPYC Zen 3, AVX2, no native bf16), scaled by
this machine's rate (`reference_budget`; benchmarks/segmentation.py prints it next to the wall time).

    python benchmarks/segmentation_speed.py
    python benchmarks/segmentation_speed.py --widths 8,16,32,64,128 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab import hardware
from cnnlab.models import get_model


REFERENCE_WIDTHS = "8,16,32,64,128"
REFERENCE_RATE = 146.0  # fp32 scenes/s of U-Net 8-128 at batch 16 on the 2-core Zen 3 machine
REFERENCE_BUDGET_S = 15 * 60  # the recipe's budget there, training + evaluation


def reference_budget(rate: float) -> float:
    """The recipe's wall-time budget in seconds on a machine whose reference rate (fp32 U-Net 8-128 at batch 16)
    is `rate` scenes/s."""
    return REFERENCE_BUDGET_S * REFERENCE_RATE / rate


def training_rates(variants: list[tuple[str, str]], batch_size: int = 16, steps: int = 5, rounds: int = 5) -> list[float]:
    """Median training scenes/s of each (widths, precision) variant, the variants taking turns."""
    torch.manual_seed(0)
    x = torch.randn(batch_size, 1, 64, 84).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (batch_size, 64, 84))
    states = []
    for widths, precision in variants:
        model = get_model("unet", num_classes=11, widths=tuple(map(int, widths.split(","))))
        model = model.to(memory_format=torch.channels_last)
        states.append({"precision": precision, "model": model,
                       "optimizer": torch.optim.Adam(model.parameters(), 1e-3), "rates": []})
    for round_ in range(rounds + 1):
        for v in states:
            start = time.perf_counter()
            for _ in range(steps):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v["precision"] == "bf16"):
                    logits = v["model"](x).float()
                loss = F.cross_entropy(logits, y)
                v["optimizer"].zero_grad()
                loss.backward()
                v["optimizer"].step()
            if round_:  # the first round warms up oneDNN's kernels
                v["rates"].append(steps * batch_size / (time.perf_counter() - start))
    return [statistics.median(v["rates"]) for v in states]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=["8,16,32,64,128", "16,32,64,128,256"],
                        help="U-Net widths per level, one variant each")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32-only", action="store_true",
                        help="skip bf16 (on a CPU without native bf16 it is emulated and takes minutes)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    precisions = ("fp32",) if args.fp32_only else ("fp32", "bf16")
    variants = [(widths, precision) for widths in args.widths for precision in precisions]
    rates = training_rates(variants, args.batch_size, args.steps, args.rounds)
    if args.fp32_only:
        print(f"| U-Net widths | batch | fp32 scenes/s | / first row |\n|---|---:|---:|---:|")
        for (widths, _), a in zip(variants, rates):
            print(f"| {widths} | {args.batch_size} | {a:.0f} | {a / rates[0]:.2f} |")
    else:
        print(f"| U-Net widths | batch | fp32 scenes/s | bf16 scenes/s | bf16 / fp32 | fp32 / first row |\n"
              f"|---|---:|---:|---:|---:|---:|")
        for (widths, _), a, b in zip(variants[::2], rates[::2], rates[1::2]):
            print(f"| {widths} | {args.batch_size} | {a:.0f} | {b:.0f} | {b / a:.2f} | {a / rates[0]:.2f} |")
    print(f"CPU: {hardware.cpu_model()}, {hardware.cpu_capability()} kernels, "
          f"native bf16: {'yes' if hardware.native_bf16() else 'no'}")
    if variants[0][0] == REFERENCE_WIDTHS and args.batch_size == 16:
        print(f"segmentation recipe budget here: {reference_budget(rates[0]):.0f} s "
              f"(15 min x {REFERENCE_RATE:.0f} / {rates[0]:.0f} fp32 scenes/s of U-Net {REFERENCE_WIDTHS})")


if __name__ == "__main__":
    main()
