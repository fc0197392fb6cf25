"""`report.html` for a run, or for a model from the user's own file (`--model`): one self-contained file (figures
embedded as PNG data) a browser opens offline."""

from __future__ import annotations

import base64
import html
import io
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.models.complexity import profile
from cnnlab.tasks.parts import EMPHASIS, Figure, Section, Table
from cnnlab.train.batches import eval_batch_size
from cnnlab.train.inspected import Inspected
from cnnlab.train.streaming import split_for
from cnnlab.viz.activations import conv_layers, feature_maps, normalize_input
from cnnlab.viz.features import plot_feature_maps
from cnnlab.viz.handcrafted import by_short_name
from cnnlab.viz.kernels import plot_kernels
from cnnlab.viz.saliency import grad_cam, gradient_saliency, plot_saliency

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


def _paragraph(text: str) -> str:
    """A task's paragraph: escaped, with its **emphasis** bold and its `code` as code."""
    marked = EMPHASIS.sub(r"<b>\1</b>", html.escape(text))
    return "<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", marked) + "</p>"


def _figure(figure: Figure, run: Inspected) -> str:
    """A figure the Trainer wrote into the run folder, or the same figure drawn now if it is missing (or there is
    no run folder)."""
    path = run.path / figure.file if run.path else None
    if path and path.is_file():
        return _img(path.read_bytes(), figure.alt)
    with tempfile.TemporaryDirectory() as tmp:
        figure.draw(Path(tmp) / figure.file)
        return _img((Path(tmp) / figure.file).read_bytes(), figure.alt)


def _section(section: Section, run: Inspected) -> list[str]:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    for part in section.parts:
        if isinstance(part, Table):
            parts.append(_table(list(part.header), part.rows))
        elif isinstance(part, Figure):
            parts.append(_figure(part, run))
        else:
            parts.append(_paragraph(part))
    return parts


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


def _configuration(run: Inspected) -> list[str]:
    settings = [list(row) for row in run.settings()]
    return ["<h2>Configuration</h2>",
            f"<details><summary>{len(settings)} settings</summary>{_table(['setting', 'value'], settings)}</details>"]


def _filters(model) -> list[str]:
    parts = ["<h2>Learned filters</h2>"]
    for index, (name, conv) in enumerate(conv_layers(model)[:2]):
        parts.append(_img(_png(plot_kernels(name, conv, by_short_name() if index == 0 else None)),
                          f"kernels of {name}"))
    return parts


def _inside(run: Inspected, model, test, samples: int) -> list[str]:
    """Feature maps of a few test images, then the saliency and Grad-CAM of what the task explains by default
    (a classifier's predicted class, a segmentation's largest digit region)."""
    info, task = test.info, run.task
    parts = [f"<h2>Feature maps and saliency of {samples} test {task.example}s</h2>"]
    for index in task.samples(test.labels, samples):
        image = test.images[index]
        x = normalize_input(image, info.mean, info.std)
        maps, output = feature_maps(model, x)
        target, verdict = task.verdict(output, info)
        caption = f"{task.caption(info, test.labels, index)}: {verdict}"
        cam, layer = grad_cam(model, x, target)
        why = task.question(info, target)
        parts += [f"<h3>{html.escape(caption)}</h3>",
                  _img(_png(plot_feature_maps(image, maps, 8, caption)), f"feature maps, {caption}"),
                  _img(_png(plot_saliency(image, gradient_saliency(model, x, target), cam, layer,
                                          f"{why[0].upper()}{why[1:]} {caption}")), f"saliency, {caption}")]
    return parts


def write_report(run: Inspected, out: Path | None = None, samples: int = 3, checkpoint: str = "last") -> Path:
    """Results first (the task's sections: curves, confusion and mistakes; or IoU and scenes), then the model and
    its configuration, then its filters, feature maps and saliency. A user's model has no folder: `out` is needed."""
    out = Path(out or run.path / "report.html")
    config, task = run.config, run.task
    model = run.build_model(checkpoint)
    test = run.test_split()
    cache = {}

    def evaluated():
        if not cache:
            split = split_for(test, limit=config.test_limit)
            with torch.inference_mode():
                cache["measured"] = split, task.evaluate(model, split,
                                                         eval_batch_size(config.eval_batch_size, split.shape))
        return cache["measured"]

    results = task.sections(run.metrics(), evaluated, run.name)
    what = run.kind.capitalize()
    parts = [f"<h1>{what} <code>{html.escape(run.name)}</code></h1>", _paragraph(run.introduction()),
             *(line for section in results for line in _section(section, run)),
             *_model_summary(model, _input_shape(test.images)),
             *_configuration(run), *_filters(model), *_inside(run, model, test, samples)]
    document = (f"<!doctype html><html><head><meta charset=utf-8><title>cnnlab {run.kind} "
                f"{html.escape(run.name)}</title><style>{STYLE}</style></head><body>{''.join(parts)}"
                f"<p class=note>Written by <code>cnnlab report</code> from {html.escape(str(run.path or run.name))}."
                "</p>"
                "</body></html>\n")
    out.write_text(document, encoding="utf-8")
    return out
