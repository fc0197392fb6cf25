"""A run's model out of cnnlab: an ONNX file that any ONNX runtime (and Netron, to look at it) opens.

The file holds the trained weights and the graph in float32, with a dynamic batch size, and its metadata says what
a program needs to use it without cnnlab: the class names, the input shape and the input normalization
((pixels / 255 - mean) / std, pixels 0-255 with the digit bright on dark, as the dataset's images). docs/export.md
runs it with ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch

from cnnlab import __version__
from cnnlab.calls import callable_module
from cnnlab.errors import ConfigError, import_optional
from cnnlab.train.runs import Run

OPSET = 18


def onnx_metadata(run: Run, input_shape, checkpoint: str) -> dict[str, str]:
    info = run.info
    return {"cnnlab": __version__, "model": run.config.model, "dataset": run.config.dataset, "task": run.task.name,
            "class_names": json.dumps(list(info.classes)), "input_shape": json.dumps(list(input_shape)),
            "normalization": json.dumps({"scale": 1 / 255, "mean": info.mean, "std": info.std,
                                         "formula": "(pixels / 255 - mean) / std"}),
            "run": run.name, "checkpoint": checkpoint}


class NamedOutputs(torch.nn.Module):
    """A model whose output is split as its task names the parts (a localizer's class scores and box), so that
    the ONNX file has one named output per part."""

    def __init__(self, model: torch.nn.Module, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x):
        return self.task.split_outputs(self.model(x))


def export_model(model: torch.nn.Module, input_shape, out: Path, metadata: dict[str, str] | None = None,
                 output_names: tuple[str, ...] = ("logits",)) -> Path:
    """`model` (eval mode) as an ONNX file whose input "image" is (batch, *input_shape) and whose outputs are
    `output_names` ("logits" for a model with one output)."""
    onnx = import_optional("onnx", "ONNX export")
    import_optional("onnxscript", "ONNX export")  # torch's exporter writes the graph with it
    example = torch.zeros(2, *input_shape)  # two images: a batch of one would let the exporter fix the size at 1
    batch = torch.export.Dim("batch", min=1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    with warnings.catch_warnings():
        # the exporter's notes on its own internals (e.g. that torchvision's ops are skipped: no model here uses them)
        warnings.simplefilter("ignore")
        exporter_log.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(model.eval(), (example,), dynamo=True, input_names=["image"],
                                        output_names=list(output_names), dynamic_shapes=({0: batch},), opset_version=OPSET,
                                        verbose=False)
        finally:
            exporter_log.setLevel(level)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def export_run(run: Run, out: str | Path | None = None, checkpoint: str = "last") -> Path:
    """Write `run`'s model as ONNX (default RUN/model.onnx) and return the file's path; `cnnlab.export(run)` and
    `cnnlab export RUN` call it.

    >>> path = cnnlab.export(run, tmp / "digits.onnx")
    >>> path.name, path.stat().st_size > 100_000
    ('digits.onnx', True)
    """
    out = Path(out) if out else run.path / "model.onnx"
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    model, input_shape = run.load_model(checkpoint)
    input_shape = input_shape or run.input_shape
    task = run.task
    if len(task.output_names) > 1:  # one output split into named parts
        model = NamedOutputs(model, task).eval()
    return export_model(model, input_shape, out, onnx_metadata(run, input_shape, checkpoint), task.output_names)


callable_module(__name__, export_run)
