"""`report.html` for a run, or for a model from the user's own file (`--model`): one self-contained file (figures
embedded as PNG data) a browser opens offline."""

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

from cnnlab.models.complexity import profile
from cnnlab.train.batches import TensorSplit, eval_batch_size
from cnnlab.train.streaming import split_for
from cnnlab.train.evaluation import evaluate, evaluate_segmentation
from cnnlab.train.runs import Run
from cnnlab.train.tasks import task_for
from cnnlab.train.user_model import UserModel
from cnnlab.viz.activations import conv_layers, feature_maps, normalize_input
from cnnlab.viz.features import plot_feature_maps
from cnnlab.viz.handcrafted import by_short_name
from cnnlab.viz.kernels import plot_kernels
from cnnlab.viz.saliency import grad_cam, gradient_saliency, plot_saliency
from cnnlab.viz.segmentation_figures import plot_iou, plot_scenes
from cnnlab.viz.training import plot_confusion, plot_curves, plot_mistakes

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}summary{cursor:pointer;margin:.5em 0}img{max-width:100%;height:auto;display:block;margin:.8em 0}
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


def _run_figure(run: Run | UserModel, file: str, regenerate) -> bytes:
    """A figure the Trainer wrote into the run folder, or the same figure drawn now if it is missing (or there is
    no run folder)."""
    path = run.path / file if run.path else None
    if path and path.is_file():
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        regenerate(Path(tmp) / file)
        return (Path(tmp) / file).read_bytes()


def _headline(run: Run | UserModel, metrics: list[dict], segmentation: bool) -> str:
    config = run.config
    if isinstance(run, UserModel):
        return (f"<p>{html.escape(run.caption)}, a model of your own (<code>--model {html.escape(run.spec)}</code>), "
                f"on the {html.escape(run.info.name)} test set.</p>")
    if not metrics:
        return "<p class=note>No metrics recorded (the run stopped before its first epoch ended).</p>"
    key, name = ("test_miou", "test mean IoU") if segmentation else ("test_acc", "test accuracy")
    number = (lambda v: f"{v:.4f}") if segmentation else (lambda v: f"{v:.2%}")
    best = max(metrics, key=lambda r: r[key])
    return (f"<p>{html.escape(config.model)} on {html.escape(config.dataset)} with the {html.escape(config.engine)} "
            f"engine: <b>{number(metrics[-1][key])}</b> {name} after {len(metrics)} of {config.epochs} epochs "
            f"(best {number(best[key])} at epoch {best['epoch']}), {sum(r['seconds'] for r in metrics):.0f} s of "
            "training.</p>")


def _curves(run: Run, metrics: list[dict], segmentation: bool) -> list[str]:
    if not metrics:
        return []
    header = ["epoch", "train loss", "train acc", "test loss", "test acc"] + (["test mean IoU"] if segmentation
                                                                              else []) + ["seconds"]
    rows = [[r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['test_loss']:.4f}",
             f"{r['test_acc']:.2%}"] + ([f"{r['test_miou']:.4f}"] if segmentation else []) + [f"{r['seconds']:.1f}"]
            for r in metrics]
    return ["<h2>Training curves</h2>", _table(header, rows),
            _img(_run_figure(run, "curves.png", lambda p: plot_curves(metrics, p, title=run.name)), "training curves")]


def _classification_results(run: Run | UserModel, model, test, metrics: list[dict]) -> list[str]:
    info, config = test.info, run.config
    cache = {}

    def evaluated():
        if not cache:
            split = split_for(test, limit=config.test_limit)
            with torch.inference_mode():
                cache["split"], cache["evaluation"] = split, evaluate(
                    model, split, eval_batch_size(config.eval_batch_size, split.shape))
        return cache["split"], cache["evaluation"]

    accuracy = []
    if isinstance(run, UserModel):  # no curves: its accuracy is measured now
        split, evaluation = evaluated()
        accuracy = [f"<p>On {len(split):,} test images: <b>{evaluation.accuracy:.2%}</b> accuracy.</p>"]
    return _curves(run, metrics, False) + accuracy + [
        "<h2>Confusion matrix</h2>",
        _img(_run_figure(run, "confusion.png", lambda p: plot_confusion(
            evaluated()[1].confusion(info.num_classes), info.classes, p)), "confusion matrix"),
        "<h2>Most confident mistakes</h2>",
        _img(_run_figure(run, "mistakes.png", lambda p: plot_mistakes(
            evaluated()[0].images, evaluated()[1], info.classes, p)), "mistakes")]


def _segmentation_results(run: Run, model, test, metrics: list[dict]) -> list[str]:
    """The IoU of every class on the test scenes (evaluated now: the table needs the numbers, not a figure),
    the IoU figure, the curves and the sample scenes."""
    config, classes = run.config, test.info.classes
    split = TensorSplit(test, limit=config.test_limit)
    with torch.inference_mode():
        evaluation = evaluate_segmentation(model, split, config.eval_batch_size)
    # a class absent from both labels and predictions has no IoU (NaN): a dash, as the mean leaves it out
    iou = [[name, "—" if np.isnan(value) else f"{value:.3f}"]
           for name, value in zip(classes, evaluation.iou.tolist())]
    summary = (f"<p>On {len(split):,} test scenes: mean IoU <b>{evaluation.mean_iou:.4f}</b> (background included), "
               f"pixel accuracy <b>{evaluation.accuracy:.2%}</b>.</p>")
    return ["<h2>IoU per class</h2>", summary, _table(["class", "IoU"], iou),
            _img(_run_figure(run, "iou.png", lambda p: plot_iou(metrics, evaluation, classes, p)), "IoU per class"),
            *_curves(run, metrics, True),
            "<h2>Test scenes</h2>",
            _img(_run_figure(run, "scenes.png", lambda p: plot_scenes(
                split.images[:, 0].numpy(), split.labels.numpy(), evaluation.predictions.numpy(), classes, p)),
                "scenes")]


def _input_shape(images: np.ndarray) -> tuple[int, ...]:
    """(C, H, W) of one image of a split: grayscale splits store [N, H, W]."""
    return (1, *images.shape[1:]) if images.ndim == 3 else tuple(images.shape[1:])


def _model_summary(model, input_shape: tuple[int, ...]) -> list[str]:
    """Every layer call with its output shape and parameters, then the totals (frozen parameters say so)."""
    counted = profile(model, input_shape)
    rows = [[r.name or "(model)", r.kind, "×".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}"]
            for r in counted.rows]
    frozen = counted.params - counted.trainable
    totals = (f"<p>{counted.params:,} parameters"
              + (f", of which {frozen:,} frozen and {counted.trainable:,} trainable" if frozen else "")
              + f"; {counted.macs:,} multiply-accumulates for one {'×'.join(map(str, input_shape))} input.</p>")
    return ["<h2>Model</h2>", totals,
            _table(["layer", "kind", "output shape", "parameters", "multiply-accumulates"], rows)]


def _configuration(run: Run | UserModel) -> list[str]:
    if isinstance(run, UserModel):
        settings = [["model", run.spec], ["weights", str(run.weights or "as the model builds itself")],
                    ["dataset", run.info.name], ["input shape", "×".join(map(str, run.input_shape))],
                    ["classes", ", ".join(run.info.classes)]]
        return ["<h2>Your model</h2>", _table(["setting", "value"], settings)]
    settings = [[k, json.dumps(v)] for k, v in run.config.to_dict().items()]
    # The Trainer stores versions, creation time and command line under "_meta" in config.json.
    meta = json.loads((run.path / "config.json").read_text()).get("_meta") or {}
    settings += [[f"_meta.{k}", json.dumps(v)] for k, v in meta.items()]
    return ["<h2>Configuration</h2>",
            f"<details><summary>{len(settings)} settings (config.json)</summary>"
            f"{_table(['setting', 'value'], settings)}</details>"]


def _filters(model) -> list[str]:
    parts = ["<h2>Learned filters</h2>"]
    for index, (name, conv) in enumerate(conv_layers(model)[:2]):
        parts.append(_img(_png(plot_kernels(name, conv, by_short_name() if index == 0 else None)),
                          f"kernels of {name}"))
    return parts


def _inside(model, image: np.ndarray, x: torch.Tensor, target: int, caption: str, why: str) -> list[str]:
    """Feature maps of one input, then the saliency and Grad-CAM of class `target`."""
    maps, _ = feature_maps(model, x)
    cam, layer = grad_cam(model, x, target)
    return [f"<h3>{html.escape(caption)}</h3>", _img(_png(plot_feature_maps(image, maps, 8, caption)),
                                                    f"feature maps, {caption}"),
            _img(_png(plot_saliency(image, gradient_saliency(model, x, target), cam, layer, f"{why} {caption}")),
                 f"saliency, {caption}")]


def _classification_inside(model, test, samples: int) -> list[str]:
    info = test.info
    parts = [f"<h2>Feature maps and saliency of {samples} test images</h2>"]
    for index in _sample_indices(test.labels, samples):
        image = test.images[index]
        x = normalize_input(image, info.mean, info.std)
        with torch.no_grad():
            probs = model(x)[0].softmax(0)
        predicted = int(probs.argmax())
        # the label first: the samples are one per class, in class order (their test indices need not rise)
        caption = (f"label {info.classes[int(test.labels[index])]}, test image {index}: predicted "
                   f"{info.classes[predicted]} ({float(probs[predicted]):.0%})")
        parts += _inside(model, image, x, predicted, caption, f"Why {info.classes[predicted]}?")
    return parts


def _segmentation_inside(model, test, samples: int) -> list[str]:
    """Each scene's maps, and the saliency of the digit class the model labels most pixels with (the class of
    most true digit pixels where it labels none): the region of that class is what the maps explain."""
    info = test.info
    parts = [f"<h2>Feature maps and saliency of {samples} test scenes</h2>"]
    for index in range(min(samples, len(test.images))):
        image = test.images[index]
        x = normalize_input(image, info.mean, info.std)
        with torch.no_grad():
            predicted = model(x)[0].argmax(0).numpy()
        counts = np.bincount(predicted.ravel(), minlength=info.num_classes)[1:]
        if not counts.any():
            counts = np.bincount(test.labels[index].ravel(), minlength=info.num_classes)[1:]
        target = 1 + int(counts.argmax())
        caption = (f"test scene {index}: class {info.classes[target]}, {int((predicted == target).sum())} pixels "
                   "predicted")
        parts += _inside(model, image, x, target, caption, f"Which pixels make the {info.classes[target]} region?")
    return parts


def write_report(run: Run | UserModel, out: Path | None = None, samples: int = 3, checkpoint: str = "last") -> Path:
    """Results first (curves and accuracy, confusion and mistakes; or IoU and scenes), then the model and its
    configuration, then its filters, feature maps and saliency. A user's model has no folder: `out` is needed."""
    out = Path(out or run.path / "report.html")
    config, metrics = run.config, run.metrics()
    segmentation = task_for(config).name == "segmentation"
    model = run.build_model(checkpoint)
    test = run.test_split()
    results, inside = ((_segmentation_results, _segmentation_inside) if segmentation
                       else (_classification_results, _classification_inside))
    what = "Model" if isinstance(run, UserModel) else "Run"
    parts = [f"<h1>{what} <code>{html.escape(run.name)}</code></h1>", _headline(run, metrics, segmentation),
             *results(run, model, test, metrics),
             *_model_summary(model, _input_shape(test.images)),
             *_configuration(run), *_filters(model), *inside(model, test, samples)]
    document = (f"<!doctype html><html><head><meta charset=utf-8><title>cnnlab {what.lower()} "
                f"{html.escape(run.name)}</title><style>{STYLE}</style></head><body>{''.join(parts)}"
                f"<p class=note>Written by <code>cnnlab report</code> from {html.escape(str(run.path or run.spec))}."
                "</p>"
                "</body></html>\n")
    out.write_text(document, encoding="utf-8")
    return out
