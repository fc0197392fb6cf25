"""Write docs/api.md from the API's docstrings (their one source): `python docs/make_api.py`. tests/test_api.py
checks that docs/api.md is what this script writes, and runs every example in it."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path

import cnnlab
import cnnlab.data
import cnnlab.export
import cnnlab.models
import cnnlab.transfer
from cnnlab.train import api, inference
from cnnlab.viz import show

OUT = Path(__file__).resolve().parent / "api.md"

# (how a user calls it, the object whose docstring says what it does), in the order a notebook meets them
SECTIONS = {
    "Training and runs": [
        ("cnnlab.train", api.train), ("cnnlab.open", api.open), ("cnnlab.runs", api.runs),
        ("cnnlab.transfer", cnnlab.transfer.transfer_run), ("cnnlab.export", cnnlab.export.export_run),
    ],
    "A Run": [
        ("Run", api.Run), ("run.history", api.Run.history), ("run.model", api.Answers.model),
        ("run.evaluate", api.Answers.evaluate), ("Scores", inference.Scores), ("run.predict", api.Answers.predict),
        ("run.summary", api.Answers.summary), ("run.show", api.Answers.show),
    ],
    "Pictures: run.show (cnnlab show)": [
        (f"run.show.{name}", getattr(show.Show, name)) for name in
        ("filters", "features", "saliency", "occlusion", "deconv", "dream", "curves", "confusion", "mistakes")
    ],
    "A model of your own": [("cnnlab.inspect", api.inspect), ("Model", api.Model)],
    "Models and data": [
        ("cnnlab.models.list", cnnlab.models.list), ("cnnlab.models.get", cnnlab.models.get),
        ("cnnlab.models.summary", cnnlab.models.summary), ("cnnlab.data.load", cnnlab.data.load),
    ],
}


def signature(name: str, obj) -> str:
    if isinstance(obj, (property, functools.cached_property, type)):  # an attribute, not a call
        return f"`{name}`"
    function = getattr(obj, "func", obj)
    parameters = [p.replace(annotation=inspect.Parameter.empty)  # the docstring says what each takes
                  for p in inspect.signature(function).parameters.values() if p.name != "self"]
    shown = str(inspect.Signature(parameters)).replace("'", '"')
    return f"`{name}{shown}`"


def fenced(doc: str) -> str:
    """A docstring as Markdown: its examples (>>> lines and what they print, up to a blank line) and its indented
    blocks fenced as code."""
    lines, fence = [], None
    for line in doc.splitlines():
        if fence == "pycon" and not line.strip() or fence == "python" and not line.startswith("    "):
            lines.append("```")
            fence = None
        if fence is None and line.startswith(">>> "):
            lines.append("```pycon")
            fence = "pycon"
        elif fence is None and line.startswith("    ") and (not lines or not lines[-1].strip()):
            lines.append("```python")
            fence = "python"
        lines.append(line[4:] if fence == "python" else line)
    return "\n".join(lines + (["```"] if fence else []))


def render() -> str:
    lines = ["# The Python API", "",
             "Written from the docstrings by `python docs/make_api.py` (tests/test_api.py checks that this page is "
             "current and runs every example on it, with `run` a Run of the default recipe trained for one epoch "
             "on 5,000 images and `tmp` an empty folder).", "",
             fenced(inspect.getdoc(cnnlab).split("\n", 1)[1].strip("\n")), ""]
    for title, entries in SECTIONS.items():
        lines += [f"## {title}", ""]
        for name, obj in entries:
            doc = inspect.getdoc(obj.fget if isinstance(obj, property) else getattr(obj, "func", obj)) or ""
            lines += [f"### {signature(name, obj)}", "", fenced(doc), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
