"""Hand-crafted vs learned first-layer filters: the same small CNN with its first conv layer frozen to the
lecture's hand-crafted 3x3 filters, frozen at its random initialization, or learned — same data, steps and
optimizer for all three."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.experiments.common import count_parameters, curves, mean_std, seed_results, seeds_label, train
from cnnlab.models import get_model
from cnnlab.train.config import recipe_config
from cnnlab.viz.handcrafted import by_short_name

CLAIM = ("Hand-crafted filters (edges, sharpen, blur) are what a CNN's first layer learns by itself: learned "
         "filters do at least as well as engineered ones.")

ARMS = ("hand-crafted (frozen)", "random (frozen)", "learned")
_TRAIN = {"optimizer": "adam", "lr": 2e-3, "schedule": "onecycle", "seed": 0, "batch_size": 64}
SETTINGS = {
    "full": {**_TRAIN, "datasets": ["mnist", "fashion-mnist"], "epochs": 2, "train_limit": 20000,
             "test_limit": None},
    "quick": {**_TRAIN, "datasets": ["mnist"], "epochs": 1, "train_limit": 600, "test_limit": 300},
}


def first_layer_model(arm: str, dataset_classes: int = 10) -> torch.nn.Module:
    """simple-cnn with 3x3 kernels and one first-layer filter per hand-crafted filter, set up for `arm`."""
    kernels = torch.from_numpy(np.stack(list(by_short_name().values())))
    model = get_model("simple-cnn", num_classes=dataset_classes, channels=[len(kernels), 32], kernel_size=3)
    if arm == "hand-crafted (frozen)":
        with torch.no_grad():
            model.conv1.weight.copy_(kernels[:, None])
            model.conv1.bias.zero_()
    if arm != "learned":
        model.conv1.requires_grad_(False)
    return model


def run(settings: dict, progress: bool = False) -> dict:
    results = {}
    for dataset in settings["datasets"]:
        config = recipe_config("default", dataset=dataset,
                               **{k: v for k, v in settings.items() if k != "datasets"})
        results[dataset] = {}
        for arm in ARMS:
            torch.manual_seed(config.seed)
            model = first_layer_model(arm)
            result = train(config, model, progress)
            results[dataset][arm] = {"test_acc": round(result.final_test_acc, 5),
                                     "trainable_parameters": count_parameters(model, trainable_only=True),
                                     "curves": curves(result.history)}
            if arm == "learned":
                results[dataset][arm]["filters"] = model.conv1.weight[:, 0].detach().round(decimals=4).tolist()
            if progress:
                print(f"{dataset}, first layer {arm}: test accuracy {result.final_test_acc:.2%}")
    return {"datasets": results, "filters": list(by_short_name())}


def summary(result: dict, settings: dict) -> dict[str, float]:
    """The headline numbers, which `cnnlab experiment --seeds N` gives as mean ± std."""
    return {f"{dataset}, {arm}: test accuracy": row["test_acc"] for dataset, arms in result["datasets"].items()
            for arm, row in arms.items()}


def plot(record: dict, path) -> None:
    """Test accuracy per arm and dataset (top); the hand-crafted filters and the learned ones (bottom)."""
    s, data = record["settings"], record["result"]["datasets"]
    names = record["result"]["filters"]
    fig = plt.figure(figsize=(max(5.5 * len(data), 1.3 * len(names)), 4.2 + 1.5 * (1 + len(data))))
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.2, 1.5 * (1 + len(data))])
    for ax, (dataset, arms) in zip(top.subplots(1, len(data), squeeze=False)[0], data.items()):
        accuracy, spread = mean_std([[100 * r["datasets"][dataset][a]["test_acc"] for a in ARMS]
                                     for r in seed_results(record)])
        bars = ax.bar(range(len(ARMS)), accuracy, yerr=spread, capsize=4, color=["darkorange", "grey", "steelblue"])
        ax.bar_label(bars, [f"{a:.2f} ± {s:.2f}%" if record.get("seeds", 1) > 1 else f"{a:.2f}%"
                            for a, s in zip(accuracy, spread)], padding=2, fontsize=9)
        ax.set_xticks(range(len(ARMS)), [a.replace(" (", "\n(") for a in ARMS])
        ax.set(ylabel="test accuracy (%)\n(axis does not start at 0)", title=dataset,
               ylim=(max(0, min(accuracy) - 8), 100))
        ax.grid(axis="y", alpha=0.3)
    top.suptitle(f"First conv layer: {len(names)} hand-crafted 3×3 filters vs random vs learned "
                 f"({s['epochs']} epoch{'s' if s['epochs'] > 1 else ''}, {s['train_limit']:,} training images; "
                 f"{seeds_label(record)}; kernels: seed 0)", fontsize=10)
    _plot_kernels(bottom, names, data)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _plot_kernels(bottom, names: list[str], data: dict) -> None:
    """The hand-crafted filters titled with their names, then each dataset's learned ones titled with their index:
    a learned filter has no name, and column j of the learned rows has nothing to do with hand-crafted filter j."""
    rows = [("hand-crafted", np.stack(list(by_short_name().values())), names)] + [
        (f"learned\n{dataset}", np.array(arms["learned"]["filters"]),
         [f"learned filter {i}" for i in range(len(names))]) for dataset, arms in data.items()]
    axes = bottom.subplots(len(rows), len(names), squeeze=False)
    for (label, kernels, titles), row in zip(rows, axes):
        for ax, kernel, title in zip(row, kernels, titles):
            limit = float(np.abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(title, fontsize=7)
        row[0].set_ylabel(label, fontsize=8)
    bottom.suptitle(f"The {len(names)} first-layer kernels, each on its own zero-centred scale (red > 0 > blue): "
                    "the hand-crafted ones, and those the 'learned' arm learned (in no particular order)", fontsize=9)
