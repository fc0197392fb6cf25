"""`report.html` for a run: one self-contained file (figures embedded as PNG data) a browser opens offline."""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.data import dataset_info
from cnnlab.train.batches import TensorSplit
from cnnlab.train.evaluation import evaluate
from cnnlab.train.runs import Run
from cnnlab.viz.activations import conv_layers, feature_maps, normalize_input
from cnnlab.viz.features import plot_feature_maps
from cnnlab.viz.handcrafted import by_short_name
from cnnlab.viz.kernels import plot_kernels
from cnnlab.viz.saliency import grad_cam, gradient_saliency, plot_saliency
from cnnlab.viz.training import plot_confusion, plot_curves, plot_mistakes

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto;display:block;margin:.8em 0}
.note{color:#666;font-size:.9em}"""


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _sample_indices(labels: np.ndarray, count: int) -> list[int]:
    """The first test image of each of the first `count` classes: one digit (or garment) per class."""
    return [int(np.argmax(labels == c)) for c in range(count) if (labels == c).any()]


def _run_figure(run: Run, file: str, regenerate) -> bytes:
    """A figure the Trainer wrote into the run folder, or the same figure drawn now if it is missing."""
    path = run.path / file
    if path.is_file():
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        regenerate(Path(tmp) / file)
        return (Path(tmp) / file).read_bytes()


def write_report(run: Run, out: Path | None = None, samples: int = 3, checkpoint: str = "last") -> Path:
    out = Path(out or run.path / "report.html")
    config, metrics = run.config, run.metrics()
    info = dataset_info(config.dataset)
    model = run.build_model(checkpoint)
    test = config.load_split("test", quiet=True)
    evaluation = None

    def evaluated():
        nonlocal evaluation
        if evaluation is None:
            split = TensorSplit(test, limit=config.test_limit)
            with torch.inference_mode():
                evaluation = (split, evaluate(model, split, config.eval_batch_size))
        return evaluation

    parts = [f"<h1>Run <code>{html.escape(run.name)}</code></h1>"]
    if metrics:
        best = max(metrics, key=lambda r: r["test_acc"])
        parts.append(f"<p>{html.escape(config.model)} on {html.escape(config.dataset)} with the "
                     f"{html.escape(config.engine)} engine: <b>{metrics[-1]['test_acc']:.2%}</b> test accuracy after "
                     f"{len(metrics)} of {config.epochs} epochs (best {best['test_acc']:.2%} at epoch "
                     f"{best['epoch']}), {sum(r['seconds'] for r in metrics):.0f} s of training.</p>")
    else:
        parts.append("<p class=note>No metrics recorded (the run stopped before its first epoch ended).</p>")

    settings = [[k, json.dumps(v)] for k, v in config.to_dict().items()]
    # The Trainer stores versions, creation time and command line under "_meta" in config.json.
    meta = json.loads((run.path / "config.json").read_text()).get("_meta") or {}
    settings += [[f"_meta.{k}", json.dumps(v)] for k, v in meta.items()]
    parts += ["<h2>Configuration</h2>", _table(["setting", "value"], settings)]
    if metrics:
        parts += ["<h2>Training curves</h2>",
                  _table(["epoch", "train loss", "train acc", "test loss", "test acc", "seconds"],
                         [[r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['test_loss']:.4f}",
                           f"{r['test_acc']:.2%}", f"{r['seconds']:.1f}"] for r in metrics]),
                  _img(_run_figure(run, "curves.png", lambda p: plot_curves(metrics, p, title=run.name)),
                       "training curves")]
    parts += ["<h2>Confusion matrix</h2>",
              _img(_run_figure(run, "confusion.png", lambda p: plot_confusion(
                  evaluated()[1].confusion(info.num_classes), info.classes, p)), "confusion matrix"),
              "<h2>Most confident mistakes</h2>",
              _img(_run_figure(run, "mistakes.png", lambda p: plot_mistakes(
                  evaluated()[0].images, evaluated()[1], info.classes, p)), "mistakes")]

    parts.append("<h2>Learned filters</h2>")
    for index, (name, conv) in enumerate(conv_layers(model)[:2]):
        parts.append(_img(_png(plot_kernels(name, conv, by_short_name() if index == 0 else None)),
                          f"kernels of {name}"))

    parts.append(f"<h2>Feature maps and saliency of {samples} test images</h2>")
    for index in _sample_indices(test.labels, samples):
        image = test.images[index]
        x = normalize_input(image, info.mean, info.std)
        maps, logits = feature_maps(model, x)
        probs = logits.softmax(0)
        predicted = int(probs.argmax())
        caption = (f"test image {index} (label {info.classes[int(test.labels[index])]}): predicted "
                   f"{info.classes[predicted]} ({float(probs[predicted]):.0%})")
        parts += [f"<h3>{html.escape(caption)}</h3>", _img(_png(plot_feature_maps(image, maps, 8, caption)),
                                                           f"feature maps, {caption}")]
        cam, layer = grad_cam(model, x, predicted)
        parts.append(_img(_png(plot_saliency(image, gradient_saliency(model, x, predicted), cam, layer,
                                             f"Why {info.classes[predicted]}? {caption}")), f"saliency, {caption}"))

    document = (f"<!doctype html><html><head><meta charset=utf-8><title>cnnlab run {html.escape(run.name)}</title>"
                f"<style>{STYLE}</style></head><body>{''.join(parts)}"
                f"<p class=note>Written by <code>cnnlab report</code> from {html.escape(str(run.path))}.</p>"
                "</body></html>\n")
    out.write_text(document, encoding="utf-8")
    return out
