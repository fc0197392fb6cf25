"""Does pooling make a CNN invariant to translation and rotation? Train otherwise equal nets — max, average and
sum pooling, and strided convolution instead of pooling — without augmentation, then measure test accuracy on
test images shifted (horizontally, -6..+6 px) and rotated (-45..+45 degrees)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import load_dataset
from cnnlab.experiments.common import mean_std, seed_results, seeds_label, train
from cnnlab.models import get_model
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import recipe_config

CLAIM = "Pooling makes a CNN invariant to small translations, rotations and shifts of its input."

POOLINGS = ("max", "average", "sum", "strided conv")
_TRAIN = {"dataset": "mnist", "optimizer": "adam", "lr": 2e-3, "schedule": "onecycle", "seed": 0, "batch_size": 64}
SETTINGS = {
    "full": {**_TRAIN, "epochs": 2, "train_limit": 20000, "test_limit": 5000,
             "shifts": list(range(-6, 7)), "rotations": list(range(-45, 46, 5))},
    "quick": {**_TRAIN, "epochs": 1, "train_limit": 600, "test_limit": 200,
              "shifts": [-4, 0, 4], "rotations": [-30, 0, 30]},
}


class SumPool2d(nn.Module):
    """Sum pooling, which torch.nn lacks: average pooling times the window area is exactly the window sum
    (and reuses the fast average-pooling kernel)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size) * self.kernel_size ** 2


def pooled_cnn(pooling: str) -> nn.Sequential:
    """simple-cnn with its two 2x2 max-pools replaced; "strided conv" drops the pools and gives each conv
    stride 2, which yields the same map sizes (28 → 12 → 4) and so the same fully connected layers."""
    model = get_model("simple-cnn")
    for i in (1, 2):
        if pooling == "strided conv":
            conv = getattr(model, f"conv{i}")
            setattr(model, f"conv{i}", nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=2))
            setattr(model, f"pool{i}", nn.Identity())
        else:
            setattr(model, f"pool{i}", {"max": nn.MaxPool2d(2), "average": nn.AvgPool2d(2),
                                        "sum": SumPool2d(2)}[pooling])
    return model


def transform(x: torch.Tensor, shift_px: float = 0.0, rotate_deg: float = 0.0) -> torch.Tensor:
    """Shift a normalized batch right by `shift_px` pixels and rotate it by `rotate_deg` (clockwise as displayed);
    pixels that come in from outside are background."""
    n, _, h, w = x.shape
    angle = math.radians(rotate_deg)
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse motion, and a pixel is 2/w wide.
    theta = torch.tensor([[math.cos(angle), math.sin(angle), -2 * shift_px / w],
                          [-math.sin(angle), math.cos(angle), 0.0]], dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


@torch.inference_mode()
def accuracy_under(model: nn.Module, test: TensorSplit, shift_px: float = 0.0, rotate_deg: float = 0.0) -> float:
    model.eval()
    correct = 0
    for x, y in test.batches(1000):
        correct += int((model(transform(x, shift_px, rotate_deg)).argmax(1) == y).sum())
    return correct / len(test)


def run(settings: dict, progress: bool = False) -> dict:
    training = {k: v for k, v in settings.items() if k not in ("shifts", "rotations")}
    config = recipe_config("default", **training)
    test = TensorSplit(load_dataset("mnist", "test", quiet=True), limit=settings["test_limit"])
    nets = {}
    for pooling in POOLINGS:
        torch.manual_seed(config.seed)
        model = pooled_cnn(pooling)
        train(config, model, progress)
        nets[pooling] = {
            "shift": [round(accuracy_under(model, test, shift_px=s), 5) for s in settings["shifts"]],
            "rotation": [round(accuracy_under(model, test, rotate_deg=r), 5) for r in settings["rotations"]]}
        if progress:
            middle = settings["shifts"].index(0) if 0 in settings["shifts"] else 0
            print(f"{pooling}: accuracy {nets[pooling]['shift'][middle]:.2%} unshifted, "
                  f"{nets[pooling]['shift'][-1]:.2%} at {settings['shifts'][-1]:+} px, "
                  f"{nets[pooling]['rotation'][-1]:.2%} at {settings['rotations'][-1]:+}°")
    return {"nets": nets}


def summary(result: dict, settings: dict) -> dict[str, float]:
    """The headline numbers, which `cnnlab experiment --seeds N` gives as mean ± std: the accuracy unmoved, and
    at each shift and rotation the mean of its two directions."""
    numbers = {}
    for pooling, net in result["nets"].items():
        for motion, unit, key in (("shift", " px", "shifts"), ("rotation", "°", "rotations")):
            steps = settings[key]
            if motion == "shift" and 0 in steps:
                numbers[f"{pooling}: unmoved"] = net["shift"][steps.index(0)]
            for step in sorted(s for s in steps if s > 0 and -s in steps):
                numbers[f"{pooling}: {motion} ±{step}{unit}"] = round(
                    (net[motion][steps.index(step)] + net[motion][steps.index(-step)]) / 2, 5)
    return numbers


def plot(record: dict, path) -> None:
    s, nets = record["settings"], record["result"]["nets"]
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for pooling in nets:
        for ax, motion, steps in ((ax_s, "shift", s["shifts"]), (ax_r, "rotation", s["rotations"])):
            mean, std = mean_std([[100 * a for a in r["nets"][pooling][motion]] for r in seed_results(record)])
            line, = ax.plot(steps, mean, "o-", ms=4, label=pooling)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax_s.set(xlabel="horizontal shift of the test images (pixels)", ylabel="test accuracy (%)",
             title="Translation")
    ax_r.set(xlabel="rotation of the test images (degrees)", title="Rotation")
    for ax in (ax_s, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(title="downsampling")
    fig.suptitle(f"Invariance on MNIST: nets trained without augmentation ({s['epochs']} epoch"
                 f"{'s' if s['epochs'] > 1 else ''}), tested on {s['test_limit']:,} moved test images; "
                 f"{seeds_label(record)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
