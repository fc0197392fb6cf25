"""Test-time augmentation, view set by view set: the test accuracy of trained runs when their class probabilities
are averaged over each set of copies of the test images, and the seconds each set takes.

`cnnlab evaluate RUN --tta` uses one rule (the image, its 1-pixel shifts, mirror images for runs trained with flips,
zooms of 1 +- 0.7 x max_scale for runs trained with scale jitter); this prints that rule's figure beside the others
it was chosen from, for docs/records.md. Views are (dy, dx, mirrored, zoom), as cnnlab.train.evaluation.View.

    python benchmarks/tta_views.py runs/best-s0 runs/best-s1 runs/best-s2
    python benchmarks/tta_views.py RUN --checkpoint best --threads 2 --limit 2000
"""

from __future__ import annotations

import argparse
import statistics
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="classifier run folders")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, metavar="N", help="the first N test images only")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import math

    import torch

    from cnnlab.tasks.classification import evaluate
    from cnnlab.train.batches import TensorSplit
    from cnnlab.train.evaluation import View, averaged, transformed, tta_views
    from cnnlab.train.runs import Run

    torch.set_num_threads(args.threads)
    shifts = tta_views()
    sets = {"plain": (View(),),
            "1-px shifts": shifts,
            "zooms 0.93/1.07": (View(), View(zoom=1.07), View(zoom=0.93)),
            "shifts+zooms 0.96/1.04": shifts + (View(zoom=1.04), View(zoom=0.96)),
            "shifts+zooms 0.93/1.07": shifts + (View(zoom=1.07), View(zoom=0.93)),
            "shifts+zooms 0.90/1.10": shifts + (View(zoom=1.10), View(zoom=0.90))}

    def rotated(model, degrees: float):
        """The model seeing its input rotated (no View: `--tta` has no rotations)."""
        cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        return lambda x: model(transformed(x, [[cos, -sin], [sin, cos]]))

    accuracy = {name: [] for name in [*sets, "rotations +-6 deg"]}
    seconds = {name: [] for name in accuracy}
    for path in args.runs:
        run = Run.open(path)
        model = run.build_model(args.checkpoint).to(memory_format=torch.channels_last)
        data = TensorSplit(run.config.load_split("test", None, quiet=True, limit=args.limit), limit=args.limit)
        candidates = {name: averaged([model], views) for name, views in sets.items()}
        # The image and its two rotations: three "models" averaged, each seeing one view.
        candidates["rotations +-6 deg"] = averaged([model, rotated(model, 6), rotated(model, -6)])
        for name, logits_fn in candidates.items():
            start = time.perf_counter()
            with torch.inference_mode():
                accuracy[name].append(evaluate(logits_fn, data).accuracy)
            seconds[name].append(time.perf_counter() - start)
    print(f"{len(args.runs)} run(s), {args.checkpoint} checkpoint, {args.threads} thread(s)")
    print(f"{'views':<24} {'mean':>8} {'lowest':>8} {'s':>6}  per run")
    for name in accuracy:
        print(f"{name:<24} {statistics.mean(accuracy[name]):8.3%} {min(accuracy[name]):8.2%} "
              f"{statistics.median(seconds[name]):6.1f}  " + " ".join(f"{a:.2%}" for a in accuracy[name]))


if __name__ == "__main__":
    main()
