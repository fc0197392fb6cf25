"""U-Net training steps per second in fp32 and in bf16 autocast, side by side in one process.

Every (widths, precision) variant trains on the same synthetic batch of 64x84 scenes; the variants take turns, a
round of --steps steps each, and the median over --rounds rounds (after one warm-up round) is reported, so a
noisy machine slows all of them alike. bf16 pays where the CPU multiplies bf16 natively (AVX512-BF16, AMX).

    python benchmarks/segmentation_speed.py
    python benchmarks/segmentation_speed.py --widths 8,16,32,64,128 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab.models import get_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=["8,16,32,64,128", "16,32,64,128,256"],
                        help="U-Net widths per level, one variant each")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 1, 64, 84).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (args.batch_size, 64, 84))
    variants = []
    for widths in args.widths:
        for precision in ("fp32", "bf16"):
            model = get_model("unet", num_classes=11, widths=tuple(map(int, widths.split(","))))
            model = model.to(memory_format=torch.channels_last)
            variants.append({"widths": widths, "precision": precision, "model": model,
                             "optimizer": torch.optim.Adam(model.parameters(), 1e-3), "rates": []})

    for round_ in range(args.rounds + 1):
        for v in variants:
            start = time.perf_counter()
            for _ in range(args.steps):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v["precision"] == "bf16"):
                    logits = v["model"](x).float()
                loss = F.cross_entropy(logits, y)
                v["optimizer"].zero_grad()
                loss.backward()
                v["optimizer"].step()
            if round_:  # the first round warms up oneDNN's kernels
                v["rates"].append(args.steps * args.batch_size / (time.perf_counter() - start))

    print(f"| U-Net widths | batch | fp32 scenes/s | bf16 scenes/s | bf16 / fp32 |\n|---|---:|---:|---:|---:|")
    for fp32, bf16 in zip(variants[::2], variants[1::2]):
        a, b = statistics.median(fp32["rates"]), statistics.median(bf16["rates"])
        print(f"| {fp32['widths']} | {args.batch_size} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    print(f"native bf16 on this CPU: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")


if __name__ == "__main__":
    main()
