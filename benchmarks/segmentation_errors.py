"""Where a segmentation run's errors are: mean IoU by how many digit classes a scene holds, what the wrongly
labelled pixels are, how many digits are mostly mislabelled (alone in their scene or not), and, for a run
trained with class weights but without logit adjustment, what it would change (subtracting log of the run's class
weights from the logits).

    python benchmarks/segmentation_errors.py runs/NAME --limit 1000
"""

from __future__ import annotations

import argparse
import json

import torch

from cnnlab.tasks.classification import confusion_matrix
from cnnlab.tasks.segmentation import iou_per_class
from cnnlab.train.batches import TensorSplit
from cnnlab.train.runs import Run
from cnnlab.train.weighting import class_weights


def mean_iou(predicted: torch.Tensor, target: torch.Tensor, k: int) -> float:
    return round(iou_per_class(confusion_matrix(predicted, target, k)).nanmean().item(), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a segmentation run folder")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last")
    parser.add_argument("--limit", type=int, default=1000, help="the first N test scenes")
    args = parser.parse_args()

    run = Run.open(args.run)
    model = run.build_model(args.checkpoint).eval()
    test = TensorSplit(run.config.load_split("test"), limit=args.limit)
    k = test.info.num_classes
    with torch.inference_mode():
        logits = torch.cat([model(x) for x, _ in test.batches(100)])
    labels, predicted = test.labels.long(), logits.argmax(1)

    classes_in_scene = torch.tensor([int((scene.unique() > 0).sum()) for scene in labels])
    by_classes = {n: mean_iou(predicted[classes_in_scene == n], labels[classes_in_scene == n], k)
                  for n in sorted(classes_in_scene.unique().tolist())}

    wrong = predicted != labels
    pixels = {"wrong": int(wrong.sum()), "digit_as_other_digit": int((wrong & (labels > 0) & (predicted > 0)).sum()),
              "background_as_digit": int((wrong & (labels == 0)).sum()),
              "digit_as_background": int((wrong & (predicted == 0)).sum())}

    right_share = {"alone": [], "sharing": []}  # per digit class in a scene: the share of its pixels labelled right
    for scene, guess, n in zip(labels, predicted, classes_in_scene):
        for c in scene.unique().tolist():
            if c:
                right_share["alone" if n == 1 else "sharing"].append((guess[scene == c] == c).float().mean().item())
    mostly_wrong = {key: {"digits": len(v), "under_half_right": round(sum(x < 0.5 for x in v) / max(1, len(v)), 4)}
                    for key, v in right_share.items()}

    result = {"run": str(run.path), "scenes": len(test), "mean_iou": mean_iou(predicted, labels, k),
              "mean_iou_by_digit_classes_in_scene": by_classes, "pixels": pixels, "digits": mostly_wrong}
    if run.config.class_weights != "none" and not run.config.logit_adjustment:  # else the model has it already
        train = TensorSplit(run.config.load_split("train", limit=run.config.train_limit), limit=run.config.train_limit)
        log_weights = class_weights(run.config.class_weights, train.labels, k).log()[None, :, None, None]
        result["logit_adjusted_mean_iou"] = mean_iou((logits - log_weights).argmax(1), labels, k)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
