"""Time-budgeted probes of U-Net training choices on mnist-scenes: loss weighting, widths, learning rate, data.

Each probe trains for a fixed budget of *training* seconds (evaluation excluded) rather than a fixed number of
epochs, so choices that cost more per step are judged by what they reach in the same time on this CPU. Mean IoU
(background included) and the digits' mean IoU are measured every --eval-every seconds on the first 500 test
scenes and, to tell under- from over-fitting, on the first 500 training scenes. One line of JSON per evaluation.

    python benchmarks/segmentation_probe.py --loss weighted --seconds 150      # the loss ablation
    python benchmarks/segmentation_probe.py --widths 8,16,32,64,128 --seconds 300 --schedule cosine
    python benchmarks/segmentation_probe.py --train-scenes 60000 --train-digits 5 --seconds 300 --schedule cosine \
        --precision bf16                                                        # the recipe's data, in 5 minutes
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time

import torch
import torch.nn.functional as F

from cnnlab.data.scenes import load_scenes
from cnnlab.models import get_model
from cnnlab.tasks.classification import confusion_matrix
from cnnlab.tasks.segmentation import iou_per_class
from cnnlab.train.torch_engine import logit_shift
from cnnlab.train.weighting import class_weights

EVAL_SCENES = 500


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per class, averaged over classes (the V-Net / nnU-Net companion of the cross-entropy)."""
    probabilities = logits.softmax(1)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    overlap = (probabilities * one_hot).sum((0, 2, 3))
    total = probabilities.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))
    return (1 - (2 * overlap + 1) / (total + 1)).mean()


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Lovasz-softmax (Berman et al., 2018): a convex surrogate of 1 - IoU per class, over the whole batch,
    averaged over the classes present in it.

    Only pixels whose error exceeds `floor` are sorted: they come first in the descending order, and the
    Lovasz gradient of a position depends only on the positions before it, so the loss and the gradients of
    the kept pixels are exact; the dropped ones (nearly all background, for a digit class) would get a
    vanishing push. Sorting every pixel for every class cost 40% of a training step."""
    probabilities = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    target = target.flatten()
    losses = []
    for c in range(logits.shape[1]):
        truth = (target == c).float()
        positives = truth.sum()
        if positives == 0:
            continue
        errors = (truth - probabilities[:, c]).abs()
        keep = errors > floor
        errors, order = errors[keep].sort(descending=True)
        truth = truth[keep][order]
        intersection = positives - truth.cumsum(0)
        union = positives + (1 - truth).cumsum(0)
        jaccard = 1 - intersection / union
        gradient = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(errors @ gradient)
    return torch.stack(losses).mean()


def mean_ious(model, images, labels, autocast, shift=None) -> tuple[float, float]:
    """(mean IoU, digits' mean IoU); `shift` is added to the logits (post-hoc logit adjustment)."""
    model.eval()
    confusion = 0
    with torch.inference_mode(), autocast():
        for i in range(0, len(images), 100):
            logits = model(images[i:i + 100].contiguous(memory_format=torch.channels_last)).float()
            if shift is not None:
                logits = logits + shift.view(1, -1, 1, 1)
            confusion = confusion + confusion_matrix(logits.argmax(1), labels[i:i + 100], 11)
    model.train()
    iou = iou_per_class(confusion)
    return round(iou.nanmean().item(), 4), round(iou[1:].nanmean().item(), 4)


def lr_factor(schedule: str, elapsed: float, budget: float) -> float:
    if schedule == "constant":
        return 1.0
    warm = 0.1 * budget  # linear warm-up, then half a cosine, over the time budget
    if elapsed < warm:
        return max(elapsed / warm, 0.02)
    return max(0.5 * (1 + math.cos(math.pi * (elapsed - warm) / (budget - warm))), 0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--widths", help="U-Net widths per level, e.g. 16,32,64,128,256 (the default)")
    parser.add_argument("--deep-supervision", action="store_true", help="U-Net: auxiliary losses from coarser levels")
    parser.add_argument("--loss", choices=["plain", "weighted", "balanced", "dice", "lovasz"], default="weighted",
                        help="cross-entropy plain, weighted by frequency^-1/2, by frequency^-1, plain + soft Dice, "
                             "or frequency^-1/2-weighted + Lovasz-softmax")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast")
    parser.add_argument("--prior-bias", action="store_true", help="start the classifier's bias at log(frequency)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--seconds", type=float, default=150, help="training time budget")
    parser.add_argument("--eval-every", type=float, default=50, help="training seconds between evaluations")
    parser.add_argument("--train-scenes", type=int, default=10_000)
    parser.add_argument("--train-digits", type=int, default=3, help="at most this many digits per train scene")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_scenes("train", count=args.train_scenes, quiet=True, max_digits=args.train_digits)
    test = load_scenes("test", quiet=True)
    images = torch.from_numpy(train.images).float().div(255).unsqueeze(1)
    labels = torch.from_numpy(train.labels).long()
    mean, std = images.mean(), images.std()
    images = (images - mean) / std
    test_images = (torch.from_numpy(test.images[:EVAL_SCENES]).float().div(255).unsqueeze(1) - mean) / std
    test_labels = torch.from_numpy(test.labels[:EVAL_SCENES]).long()

    options = {"widths": tuple(map(int, args.widths.split(",")))} if args.widths else {}
    if args.deep_supervision:
        options["deep_supervision"] = True
    model = get_model(args.model, num_classes=11, **options).to(memory_format=torch.channels_last)
    if args.prior_bias:
        classifier = model.classify if hasattr(model, "classify") else model.score
        frequency = torch.bincount(labels.flatten(), minlength=11).double() / labels.numel()
        with torch.no_grad():
            classifier.bias.copy_(frequency.log())
    weights = {"weighted": "inverse-sqrt-frequency", "lovasz": "inverse-sqrt-frequency",
               "balanced": "inverse-frequency"}.get(args.loss, "none")
    weight = class_weights(weights, labels, 11)
    autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)

    elapsed, steps, next_eval, order, position = 0.0, 0, args.eval_every, torch.randperm(len(images), generator=generator), 0
    while elapsed < args.seconds:
        start = time.perf_counter()
        if position + args.batch_size > len(images):
            order, position = torch.randperm(len(images), generator=generator), 0
        batch = order[position:position + args.batch_size]
        position += args.batch_size
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(args.schedule, elapsed, args.seconds)
        with autocast():
            outputs = model(images[batch].contiguous(memory_format=torch.channels_last))
        logits, *aux = [o.float() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
        loss = F.cross_entropy(logits, labels[batch], weight)
        loss = loss + sum(model.aux_weight * F.cross_entropy(o, labels[batch], weight) for o in aux)
        if args.loss == "dice":
            loss = loss + dice_loss(logits, labels[batch])
        if args.loss == "lovasz":
            loss = loss + lovasz_softmax(logits, labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        elapsed += time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= args.seconds:
            next_eval += args.eval_every
            test_miou, test_digits = mean_ious(model, test_images, test_labels, autocast)
            train_miou, train_digits = mean_ious(model, images[:EVAL_SCENES], labels[:EVAL_SCENES], autocast)
            # Post-hoc logit adjustment: undo the weighting's bias towards the up-weighted classes.
            adjusted = ({"test_miou_minus_log_weight": mean_ious(model, test_images, test_labels, autocast,
                                                                 logit_shift(weight))[0]}
                        if args.loss in ("weighted", "lovasz") else {})
            print(json.dumps({"seconds": round(elapsed), "steps": steps, "scenes_per_s": round(steps * args.batch_size / elapsed),
                              "loss": round(loss.item(), 4), "test_miou": test_miou, "test_digits_miou": test_digits,
                              "train_miou": train_miou, "train_digits_miou": train_digits, **adjusted}), flush=True)
    print(json.dumps({"settings": vars(args), "steps": steps, "test_miou": test_miou}))


if __name__ == "__main__":
    main()
