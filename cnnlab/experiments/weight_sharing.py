"""Conv layers are fully connected layers with two restrictions: each output sees only a small window (local
connectivity) and every position uses the same weights (weight sharing). This experiment counts what the
restrictions save and measures what they cost or buy in accuracy: the default CNN against MLPs on MNIST.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from cnnlab.experiments.common import count_parameters, mean_std, seed_results, seeds_label, train
from cnnlab.models import get_model
from cnnlab.train.config import recipe_config

CLAIM = ("A convolutional layer is a fully connected layer restricted to local windows with shared weights: "
         "far fewer parameters, and a prior that helps on images.")

_TRAIN = {"dataset": "mnist", "optimizer": "adam", "lr": 2e-3, "schedule": "onecycle", "seed": 0}
SETTINGS = {
    "full": {**_TRAIN, "epochs": 2, "batch_size": 64, "train_limit": None, "test_limit": None,
             "mlp_hidden": [[100], [1024, 1024]]},
    "quick": {**_TRAIN, "epochs": 1, "batch_size": 64, "train_limit": 600, "test_limit": 300,
              "mlp_hidden": [[100]]},
}


def mlp(hidden: list[int], inputs: int = 28 * 28, num_classes: int = 10) -> nn.Sequential:
    layers, width = [nn.Flatten()], inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def conv_as_dense(model: nn.Module, input_shape=(1, 28, 28)) -> list[dict]:
    """For each conv layer: its parameters, and those of a locally connected layer (same windows, no sharing)
    and of a fully connected layer (every input to every output) with the same input and output shapes."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, (i[0].shape[1:], o.shape[1:])))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    rows = []
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        (c_in, h_in, w_in), (c_out, h_out, w_out) = shapes[name]
        window = c_in * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
        outputs = c_out * h_out * w_out
        rows.append({"layer": name, "input": [c_in, h_in, w_in], "output": [c_out, h_out, w_out],
                     "conv": count_parameters(conv),
                     "locally_connected": outputs * (window + 1),
                     "fully_connected": outputs * (c_in * h_in * w_in + 1)})
    return rows


def run(settings: dict, progress: bool = False) -> dict:
    config = recipe_config("default", **{k: v for k, v in settings.items() if k != "mlp_hidden"})
    torch.manual_seed(config.seed)  # every net's initial weights follow the seed
    cnn = get_model("simple-cnn")
    layers = conv_as_dense(cnn)
    rest = count_parameters(cnn) - sum(row["conv"] for row in layers)
    nets = {}
    candidates = [("CNN (simple-cnn)", cnn)] + [
        (f"MLP {'-'.join(map(str, [784, *hidden, 10]))}", mlp(hidden)) for hidden in settings["mlp_hidden"]]
    for name, model in candidates:
        result = train(config, model, progress)
        nets[name] = {"parameters": count_parameters(model), "test_acc": round(result.final_test_acc, 5),
                      "train_acc": round(result.history[-1]["train_acc"], 5), "seconds": round(result.seconds, 1)}
        if progress:
            print(f"{name}: {nets[name]['parameters']:,} parameters, test accuracy {nets[name]['test_acc']:.2%}")
    return {"nets": nets, "conv_layers": layers,
            "cnn_if_locally_connected": rest + sum(r["locally_connected"] for r in layers),
            "cnn_if_fully_connected": rest + sum(r["fully_connected"] for r in layers)}


def summary(result: dict, settings: dict) -> dict[str, float]:
    """The headline numbers, which `cnnlab experiment --seeds N` gives as mean ± std."""
    return {f"{name}: test accuracy": net["test_acc"] for name, net in result["nets"].items()}


def plot(record: dict, path) -> None:
    result = record["result"]
    nets = result["nets"]
    cnn_name = next(iter(nets))
    fig, (ax_p, ax_a) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    labels = [*nets, "same CNN, conv layers\nlocally connected", "same CNN, conv layers\nfully connected"]
    counts = [n["parameters"] for n in nets.values()] + [result["cnn_if_locally_connected"],
                                                          result["cnn_if_fully_connected"]]
    colors = ["steelblue"] + ["darkorange"] * (len(nets) - 1) + ["lightsteelblue"] * 2
    bars = ax_p.barh(labels, counts, color=colors)
    ax_p.set_xscale("log")
    ax_p.bar_label(bars, [f"{c:,}" for c in counts], padding=3, fontsize=8)
    ax_p.set(xlabel="parameters (log scale)", title="Parameters (pale bars: counted, not trained)",
             xlim=(min(counts) / 2, max(counts) * 20))
    ax_p.invert_yaxis()
    accuracy, spread = mean_std([[100 * r["nets"][n]["test_acc"] for n in nets] for r in seed_results(record)])
    bars = ax_a.barh(list(nets), accuracy, xerr=spread, capsize=4, color=colors[:len(nets)])
    ax_a.bar_label(bars, [f"{a:.2f} ± {s:.2f}%" if record.get("seeds", 1) > 1 else f"{a:.2f}%"
                          for a, s in zip(accuracy, spread)], padding=8, fontsize=8)
    low = min(accuracy)
    ax_a.set(xlabel="test accuracy (%, axis does not start at 0)",
             title=f"MNIST test accuracy (trained nets only; {seeds_label(record)})", xlim=(max(0, low - 5), 100.8))
    ax_a.invert_yaxis()
    for ax in (ax_p, ax_a):
        ax.grid(axis="x", alpha=0.3)
    s = record["settings"]
    fig.suptitle(f"Weight sharing: {cnn_name} vs MLPs, {s['epochs']} epoch{'s' if s['epochs'] > 1 else ''} on "
                 f"{s['train_limit'] or 60000:,} MNIST images, same optimizer and schedule", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
