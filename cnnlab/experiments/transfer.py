"""Transfer learning with few labels: scratch vs feature extraction vs fine-tuning, MNIST <-> Fashion-MNIST.

A simple-cnn is trained once on the source dataset (cached under $CNNLAB_CACHE/transfer-sources, keyed by its
settings). For each target, labels-per-class N and seed, four nets train on the same balanced subset of N
images per class (drawn with the random seed): from scratch; the source with a new last layer trained on its frozen
features (`cnnlab transfer --mode feature-extract`); its convolutions frozen and the classifier retrained
(`--mode fine-tune --freeze-until pool2`); and all of it fine-tuned (`--mode fine-tune`). All use the same
optimizer, schedule and steps. Smaller subsets get more epochs so that every net takes a useful number of steps.
Test accuracy is monitored on the first `test_limit` test images each epoch and measured at the end on the
whole test set.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np

from cnnlab.data import load_dataset
from cnnlab.data.datasets import cache_dir
from cnnlab.tasks.classification import evaluate
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer
from cnnlab.transfer import load_source, prepare

CLAIM = ("What a network learned on one task transfers to another: with few labels, starting from a network "
         "trained on a related dataset beats training from scratch.")

# How each net starts: None trains from scratch, otherwise the `cnnlab.transfer.prepare` options. "frozen convs"
# keeps the source's convolutional features but retrains the whole classifier (fc1 and fc2), where
# feature-extract retrains only the last layer on the source's penultimate features.
METHODS = {"scratch": None, "feature-extract": {"mode": "feature-extract"},
           "frozen convs": {"mode": "fine-tune", "freeze_until": "pool2"}, "fine-tune": {"mode": "fine-tune"}}
_TRAIN = {"optimizer": "adam", "lr": 2e-3, "schedule": "onecycle", "batch_size": 32}
SETTINGS = {
    # Sized for 2 shared CPU cores: sources on 30,000 images x 2 epochs; epochs per subset size chosen so that
    # the 10-per-class nets take 100 steps and the 1000-per-class ones see 20,000 images.
    "full": {**_TRAIN, "directions": [["mnist", "fashion-mnist"], ["fashion-mnist", "mnist"]],
             "source": {"train_limit": 30000, "epochs": 2}, "labels_per_class": [10, 100, 1000],
             "epochs": [25, 6, 2], "seeds": [0, 1, 2], "test_limit": 1000},
    # The machinery only, on the bundled MNIST (no download in tests): source and target are both MNIST.
    "quick": {**_TRAIN, "directions": [["mnist", "mnist"]], "source": {"train_limit": 1000, "epochs": 1},
              "labels_per_class": [10], "epochs": [3], "seeds": [0], "test_limit": 100},
}


def source_run(dataset: str, source: dict, progress: bool = False):
    """The source run folder, trained on first use and cached by its settings."""
    config = recipe_config("default", dataset=dataset, **source)
    key = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    root, name = cache_dir() / "transfer-sources", f"simple-cnn-{dataset}-{key}"
    if (root / name / "model.safetensors").is_file():
        return root / name
    shutil.rmtree(root / name, ignore_errors=True)  # an interrupted earlier attempt
    result = Trainer(config, name=name, runs_dir=root, progress=progress).fit()
    if progress:
        print(f"source {name}: {dataset} test accuracy {result.final_test_acc:.2%}")
    return result.run_dir


def train_one(method: str, source, target: str, per_class: int, epochs: int, seed: int, settings: dict) -> float:
    """Test accuracy on the whole target test set after training `method` on `per_class` labels per class."""
    training = {k: settings[k] for k in _TRAIN}
    common = {**training, "dataset": target, "labels_per_class": per_class, "epochs": epochs, "seed": seed,
              "test_limit": settings["test_limit"]}
    if METHODS[method] is None:
        trainer = Trainer(recipe_config("default", **common), progress=False, save=False)
    else:
        config, model = prepare(source, **METHODS[method], **common)
        trainer = Trainer(config, progress=False, save=False, model=model)
    trainer.fit()
    test = TensorSplit(load_dataset(target, "test", quiet=True), trainer.device)
    return evaluate(trainer.engine.logits, test).accuracy


def run(settings: dict, progress: bool = False) -> dict:
    directions = {}
    for source_dataset, target in settings["directions"]:
        source = load_source(source_run(source_dataset, settings["source"], progress))
        table = {}
        for per_class, epochs in zip(settings["labels_per_class"], settings["epochs"]):
            table[str(per_class)] = {}
            for method in METHODS:
                accuracies = [train_one(method, source, target, per_class, epochs, seed, settings)
                              for seed in settings["seeds"]]
                table[str(per_class)][method] = {"test_acc": [round(a, 5) for a in accuracies],
                                                 "mean": round(float(np.mean(accuracies)), 5),
                                                 "std": round(float(np.std(accuracies, ddof=1)), 5)
                                                 if len(accuracies) > 1 else 0.0}
                if progress:
                    row = table[str(per_class)][method]
                    print(f"{source_dataset} -> {target}, {per_class}/class, {method}: "
                          f"{row['mean']:.2%} ± {row['std']:.2%}")
        directions[f"{source_dataset} -> {target}"] = {"source": source.record(), "labels_per_class": table}
    return {"directions": directions}


def summary(result: dict, settings: dict) -> dict[str, list[float]]:
    """The headline numbers with every seed's value (this experiment repeats over seeds itself)."""
    return {f"{direction}, {n}/class, {method}": row["test_acc"] for direction, found in result["directions"].items()
            for n, methods in found["labels_per_class"].items() for method, row in methods.items()}


def plot(record: dict, path) -> None:
    directions = record["result"]["directions"]
    colors = {"scratch": "grey", "feature-extract": "darkorange", "frozen convs": "seagreen", "fine-tune": "steelblue"}
    fig, axes = plt.subplots(1, len(directions), figsize=(5.8 * len(directions), 4.2), squeeze=False)
    for ax, (name, direction) in zip(axes[0], directions.items()):
        sizes = [int(n) for n in direction["labels_per_class"]]
        for method in METHODS:
            rows = [direction["labels_per_class"][str(n)][method] for n in sizes]
            mean = np.array([100 * r["mean"] for r in rows])
            std = np.array([100 * r["std"] for r in rows])
            ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=4, color=colors[method], label=method)
            ax.fill_between(sizes, mean - std, mean + std, color=colors[method], alpha=0.12)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set(title=name, xlabel="labelled training images per class", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    s = record["settings"]
    seeds = len(s["seeds"])
    fig.suptitle(f"simple-cnn: scratch vs transfer — mean ± std over {seeds} seed{'s' * (seeds > 1)}, "
                 f"epochs {s['epochs']} for {s['labels_per_class']} labels per class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
