"""Sanity checks for saliency maps (Adebayo et al. 2018): does an explanation depend on what the network learned?

A simple-cnn trained on MNIST (cached, as the transfer experiment's source) explains its test images with each
method; then its layers are re-initialized at random one at a time from the top (fc2, then fc1 as well, ... down
to conv1: "cascading" randomization), and each method explains the same images (the same class: the true label)
again. The Spearman rank correlation between the map of the trained net and the map after each step says how
much of the explanation survives the loss of what was learned: a method whose maps stay the same explains the
input (edges, ink), not the model. Maps are compared as magnitudes, as in the paper.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from cnnlab.data import dataset_info, load_dataset
from cnnlab.experiments.common import mean_std, seed_results
from cnnlab.experiments.transfer import source_run
from cnnlab.models.layer_kinds import leaves
from cnnlab.train.runs import Run
from cnnlab.viz.activations import normalize_input
from cnnlab.viz.occlusion import occlusion
from cnnlab.viz.saliency import HEAT, grad_cam, gradient_saliency, integrated_gradients

CLAIM = ("A saliency map explains what the network learned: randomizing the network's weights changes the map "
         "(Adebayo et al.'s sanity check; some methods fail it).")

METHODS = ("gradient", "guided backprop", "integrated gradients", "Grad-CAM", "occlusion")
SETTINGS = {
    # Sized for 2 shared CPU cores: the source trains once (cached); then 5 methods x 5 nets x `images` maps.
    "full": {"source": {"train_limit": 30000, "epochs": 2}, "images": 32, "ig_steps": 32, "occlusion": [6, 2],
             "seed": 0},
    "quick": {"source": {"train_limit": 600, "epochs": 1}, "images": 3, "ig_steps": 8, "occlusion": [7, 7],
              "seed": 0},
}


def weighted_layers(model: nn.Module) -> list[str]:
    """Names of the layers with parameters, from the output down: the order of cascading randomization."""
    return [n for n, m in leaves(model) if any(True for _ in m.parameters(recurse=False))][::-1]


def explain(model: nn.Module, x: torch.Tensor, target: int, settings: dict) -> dict[str, np.ndarray]:
    """Each method's map [H, W] (a magnitude) for one input [1, 1, H, W]."""
    size, stride = settings["occlusion"]
    occluded = occlusion(model, x, target, size, stride)
    return {"gradient": gradient_saliency(model, x, target),
            "guided backprop": gradient_saliency(model, x, target, guided=True),
            "integrated gradients": np.abs(integrated_gradients(model, x, target, steps=settings["ig_steps"]).sum(0)),
            "Grad-CAM": grad_cam(model, x, target, "relu2")[0],
            # the probability's drop over square positions (a coarser grid than the pixels, the same for every net)
            "occlusion": np.abs(occluded.unoccluded_probability - occluded.probability)}


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a flat array, ties given their average rank (Grad-CAM's maps have many zeros)."""
    order = values.argsort(kind="stable")
    sorted_values = values[order]
    first = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    result = np.empty(len(values))
    result[order] = ((starts + ends - 1) / 2)[group]
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps; 0 when either is constant (no ranking to compare)."""
    ra, rb = ranks(a.ravel()), ranks(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / norm) if norm > 0 else 0.0


def run(settings: dict, progress: bool = False) -> dict:
    run_dir = source_run("mnist", {**settings["source"], "seed": settings["seed"]}, progress)
    info = dataset_info("mnist")
    test = load_dataset("mnist", "test", quiet=True)
    images, labels = test.images[:settings["images"]], test.labels[:settings["images"]].tolist()
    inputs = [normalize_input(image, info.mean, info.std) for image in images]
    model = Run.open(run_dir).build_model()
    layers = weighted_layers(model)
    torch.manual_seed(settings["seed"])
    original = [explain(model, x, t, settings) for x, t in zip(inputs, labels)]
    correlations = {m: [[1.0] * len(inputs)] for m in METHODS}
    examples = {m: [original[0][m]] for m in METHODS}
    for layer in layers:
        dict(model.named_modules())[layer].reset_parameters()  # cascading: the layers above stay random
        maps = [explain(model, x, t, settings) for x, t in zip(inputs, labels)]
        for m in METHODS:
            correlations[m].append([spearman(o[m], now[m]) for o, now in zip(original, maps)])
            examples[m].append(maps[0][m])
        if progress:
            print(f"randomized down to {layer}: " + ", ".join(
                f"{m} {np.mean(correlations[m][-1]):+.2f}" for m in METHODS))
    return {"source": run_dir.name, "layers": layers, "labels": labels,
            "rank_correlation": {m: {"mean": [round(float(np.mean(c)), 4) for c in correlations[m]],
                                     "std": [round(float(np.std(c)), 4) for c in correlations[m]]}
                                 for m in METHODS},
            "example": {"image": _rows(images[0] / 255), "label": labels[0],
                        "maps": {m: [_rows(e / (e.max() or 1.0)) for e in examples[m]] for m in METHODS}}}


def summary(result: dict, settings: dict) -> dict[str, float]:
    """The headline numbers, which `cnnlab experiment --seeds N` gives as mean ± std: each method's mean rank
    correlation after each step of the randomization."""
    return {f"{method}, random down to {layer}": row["mean"][step + 1]
            for method, row in result["rank_correlation"].items() for step, layer in enumerate(result["layers"])}


def _rows(values: np.ndarray) -> list[str]:
    """A map in [0, 1] as one line of percents per row: result.json stays small and readable (a list of
    numbers would take one line per pixel)."""
    return [" ".join(str(round(100 * float(v))) for v in row) for row in values]


def _unrows(rows: list[str]) -> np.ndarray:
    return np.array([row.split() for row in rows], dtype=float) / 100


def plot(record: dict, path) -> None:
    result = record["result"]
    steps = ["trained"] + [f"→ {layer}" for layer in result["layers"]]
    fig = plt.figure(figsize=(16, 6.4))
    columns = 1 + len(steps)  # the input, then one map per net
    grid = fig.add_gridspec(len(METHODS), 3 + columns, width_ratios=[6, 0.5] + [1] * columns + [0.12])
    curves = fig.add_subplot(grid[:, 0])
    lowest = -0.3
    seeds = record.get("seeds", 1)
    for m in METHODS:
        if seeds > 1:  # each seed's mean over the images; the band is the spread over seeds
            mean, std = mean_std([r["rank_correlation"][m]["mean"] for r in seed_results(record)])
        else:  # one seed: the band is the spread over the images
            mean, std = np.array(result["rank_correlation"][m]["mean"]), np.array(result["rank_correlation"][m]["std"])
        curves.plot(range(len(steps)), mean, "o-", label=m)
        curves.fill_between(range(len(steps)), mean - std, mean + std, alpha=0.12)
        lowest = min(lowest, float((mean - std).min()))
    curves.axhline(0, color="grey", lw=0.8)
    curves.set_xticks(range(len(steps)), steps, rotation=30, ha="right")
    curves.set(ylim=(max(lowest - 0.05, -1.05), 1.05), xlabel="layers re-initialized at random, from the top "
               "(cascading)", ylabel="Spearman rank correlation with the trained net's map",
               title=f"mean ± std over {seeds} seeds, each the mean of {len(result['labels'])} test images"
                     if seeds > 1 else
                     f"mean ± std over {len(result['labels'])} MNIST test images")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8, loc="lower left")
    example = result["example"]
    image = _unrows(example["image"])
    side = image.shape[-1]
    extent = (-0.5, side - 0.5, side - 0.5, -0.5)
    size, stride = record["settings"]["occlusion"]
    centres = np.unique(np.r_[np.arange(0, side - size + 1, stride), side - size]) + (size - 1) / 2
    half = (centres[-1] - centres[0]) / max(len(centres) - 1, 1) / 2  # occlusion: a cell per square, at its centre
    square_extent = (centres[0] - half, centres[-1] + half, centres[-1] + half, centres[0] - half)
    for r, m in enumerate(METHODS):
        ax = fig.add_subplot(grid[r, 2])
        ax.imshow(image, cmap="gray")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(m.replace(" ", "\n", 1), fontsize=8)
        if r == 0:
            ax.set_title("input", fontsize=8)
        for c, values in enumerate(example["maps"][m]):
            ax = fig.add_subplot(grid[r, 3 + c])
            mapped = ax.imshow(_unrows(values), cmap=HEAT, vmin=0, vmax=1,
                               extent=square_extent if m == "occlusion" else extent)
            ax.set_xlim(extent[:2]), ax.set_ylim(extent[2:])
            ax.set_facecolor("0.85")  # occlusion's margin, no square's centre, as in `show occlusion`
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(steps[c], fontsize=8)
    fig.colorbar(mapped, cax=fig.add_subplot(grid[:, -1]), label="each map relative to its maximum")
    fig.suptitle(f"Sanity check of explanations (Adebayo et al. 2018): simple-cnn on MNIST; right: test image 0 "
                 f"(a {example['label']}) explained by each net", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
