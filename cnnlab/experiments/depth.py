"""Deeper is better only with the right architecture: plain-20/56 vs ResNet-20/56 on Fashion-MNIST.

The ResNet paper's Fig. 6 (CIFAR-10): the 56-layer plain net has *higher training error* than the 20-layer one
(degradation, an optimization problem, not overfitting), while ResNet-56 trains better than ResNet-20.
The nets here are the paper's CIFAR nets (3 stages of n basic blocks, depth 6n+2, shortcut option A) built at
reduced width where stated: on the 2 shared CPU cores the full-width 56-layer net trains at ~25 images/s,
the half-width one at ~90 images/s (one thread).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from cnnlab.experiments.common import count_parameters, curves, train
from cnnlab.models.resnet import BasicBlock, ResNet
from cnnlab.train.config import recipe_config

CLAIM = ("Deeper is better only with the right architecture: a deeper plain net trains worse than a shallower "
         "one, while residual nets of the same depth do not (He et al. 2016, Fig. 6).")

_TRAIN = {"dataset": "fashion-mnist", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
          "schedule": "onecycle", "warmup": 0.2, "seed": 0}
SETTINGS = {
    # GPU-sized version: full width (16, 32, 64), all 60,000 images, ~100 epochs. This CPU setting keeps the
    # depth (the variable under test) and cuts width, data and epochs.
    "full": {**_TRAIN, "depths": [20, 56], "widths": [8, 16, 32], "epochs": 7, "batch_size": 64,
             "train_limit": 3000, "test_limit": 1000},
    # MNIST is bundled, so tests and CI need no data download.
    "quick": {**_TRAIN, "dataset": "mnist", "depths": [8, 14], "widths": [4, 8, 16], "epochs": 2, "batch_size": 32,
              "train_limit": 128, "test_limit": 64},
}


def cifar_net(depth: int, widths, residual: bool, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR-style nets have depth 6n+2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), tuple(widths), num_classes, in_channels, imagenet_stem=False,
                  shortcut="A" if residual else None)


def run(settings: dict, progress: bool = False) -> dict:
    training = {k: v for k, v in settings.items() if k not in ("depths", "widths")}
    config = recipe_config("default", **training)
    nets = {}
    for residual in (False, True):
        for depth in settings["depths"]:
            name = f"{'resnet' if residual else 'plain'}-{depth}"
            torch.manual_seed(config.seed)  # the initial weights follow the seed, as the data order does
            model = cifar_net(depth, settings["widths"], residual)
            result = train(config, model, progress)
            nets[name] = {"depth": depth, "residual": residual, "parameters": count_parameters(model),
                          "final_train_error": round(1 - result.history[-1]["train_acc"], 5),
                          "final_test_error": round(1 - result.final_test_acc, 5), **curves(result.history)}
            if progress:
                print(f"{name}: train error {nets[name]['final_train_error']:.2%}, "
                      f"test error {nets[name]['final_test_error']:.2%}")
    return {"nets": nets}


def summary(result: dict, settings: dict) -> dict[str, float]:
    """The headline numbers, which `cnnlab experiment --seeds N` gives as mean ± std."""
    return {f"{name}: {kind} error": net[f"final_{kind}_error"] for name, net in result["nets"].items()
            for kind in ("train", "test")}


def plot(record: dict, path) -> None:
    nets = record["result"]["nets"]
    s = record["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, residual, title in zip(axes, (False, True), ("plain nets", "ResNets")):
        for name, net in nets.items():
            if net["residual"] != residual:
                continue
            epochs = range(1, len(net["train_acc"]) + 1)
            deep = net["depth"] == max(s["depths"])
            color = "firebrick" if deep else "steelblue"
            ax.plot(epochs, [100 * (1 - a) for a in net["train_acc"]], "--", color=color, label=f"{name} train")
            ax.plot(epochs, [100 * (1 - a) for a in net["test_acc"]], "-", color=color, lw=2, label=f"{name} test")
        ax.set(title=title, xlabel="epoch", ylabel="error (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.suptitle(f"Depth on {s['dataset']}: training (dashed) and test (solid) error — "
                 f"{s['train_limit']} training images, width {tuple(s['widths'])}"
                 + ("" if record.get("seeds", 1) == 1 else f" (seed 0 of {record['seeds']})"))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
