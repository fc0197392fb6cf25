"""`import cnnlab` as a notebook user meets it: light to import, every public function's docstring example run as a
test (doctest), and the first hour in a real Jupyter kernel — train, evaluate, predict a drawn digit, look inside,
inspect a model defined in the notebook — with no file path typed and no CLI module imported."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import torch

import cnnlab
from conftest import train_into
from notebooks import execute, images, outputs

# Where the API's docstrings are: each example runs with `cnnlab`, `torch`, `run` (a trained Run) and `tmp` (a
# folder) defined, as docs/api.md says.
DOCUMENTED = ["cnnlab.train.api", "cnnlab.viz.show", "cnnlab.models.registry", "cnnlab.models.zoo", "cnnlab.data",
              "cnnlab.export", "cnnlab.transfer"]


# The default recipe, 1 epoch on 5,000 images, on the whole test set: 91.95-92.90% over seeds 0-4 with 1 and 2
# threads, 92.72-92.82% with AVX2 kernels (seeds 0-2, 1 thread); fp32, Zen 4. An untrained model: ~10%.
FLOOR = 0.90


@pytest.fixture(scope="module")
def run(shared):
    return cnnlab.open(shared.get("api-run", lambda folder: train_into(folder, epochs=1, train_limit=5000,
                                                                        test_limit=1000, threads=1)))


def test_import_cnnlab_loads_no_torch_and_names_the_api():
    code = "import sys, cnnlab; print('torch' in sys.modules, sorted(cnnlab.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False ")
    for name in ("train", "transfer", "export", "open", "runs", "inspect", "models", "data", "Run"):
        assert name in out and callable(getattr(cnnlab, name)) or name in ("models", "data")
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        cnnlab.trian  # noqa: B018


def test_train_transfer_and_export_are_modules_and_functions():
    import cnnlab.train.config

    assert cnnlab.train.config.TrainConfig and callable(cnnlab.train)
    assert callable(cnnlab.transfer) and cnnlab.transfer.load_source
    assert callable(cnnlab.export) and cnnlab.export.export_model


@pytest.mark.parametrize("module", DOCUMENTED)
def test_every_example_in_the_docstrings_runs(module, run, tmp_path):
    tests = [t for t in doctest.DocTestFinder().find(importlib.import_module(module)) if t.examples]
    assert tests, f"{module} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        test.globs.update(cnnlab=cnnlab, torch=torch, run=run, tmp=tmp_path)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_every_public_function_of_the_api_has_an_example():
    from cnnlab.train.api import Answers, Run
    from cnnlab.viz.show import Show

    public = [cnnlab.open, cnnlab.runs, cnnlab.inspect, cnnlab.train.api.train, cnnlab.transfer.transfer_run,
              cnnlab.export.export_run, cnnlab.models.list, cnnlab.models.get, cnnlab.models.summary, cnnlab.data.load,
              Answers.predict, Answers.evaluate, Answers.summary,
              *(getattr(Show, name) for name in ("filters", "features", "saliency", "occlusion", "deconv", "dream",
                                                 "curves", "confusion", "mistakes"))]
    assert [f.__qualname__ for f in public if ">>> " not in (f.__doc__ or "")] == []
    assert Run.__doc__ and "history" in Run.__doc__


def test_docs_api_is_written_from_the_docstrings():
    from conftest import REPO

    spec = importlib.util.spec_from_file_location("make_api", REPO / "docs" / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    assert (REPO / "docs" / "api.md").read_text() == make_api.render(), "run: python docs/make_api.py"


def test_a_run_answers_in_python_what_the_cli_prints(run, capsys):
    from conftest import run_in_process

    import json

    scores = run.evaluate()
    code, out, _ = run_in_process(capsys, "evaluate", run.path, "--json")
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(scores.accuracy)
    assert scores.accuracy >= FLOOR and len(scores.data) == 10_000
    # the history's test accuracy is on the run's test images (its first 1,000)
    assert len(run.history) == 1 and run.history[0]["test_acc"] == pytest.approx(run.evaluate(limit=1000).accuracy)
    image = cnnlab.data.load("mnist", "test", limit=2).images
    as_array, as_tensor = run.predict(image[0]), run.predict(torch.tensor(image[0]) / 255.0)
    assert as_array["class"] == as_tensor["class"] == "7" and len(as_array["probabilities"]) == 3
    assert [a["class"] for a in run.predict(list(image), top=1)] == ["7", "2"]
    assert "<b>run</b>" in run._repr_html_() and "data:image/png;base64," in run._repr_html_()


def test_an_untrained_model_fails_the_floor():
    net = cnnlab.models.get("simple-cnn")
    assert cnnlab.inspect(net).evaluate(limit=1000).accuracy < FLOOR


# -- the first hour, in a real kernel ---------------------------------------------------------------------------
FIRST_HOUR = [
    "import cnnlab\nrun = cnnlab.train(epochs=1, train_limit=5000)",
    "run",
    "run.evaluate()",
    "run.predict('digit.png')",
    "run.show.features('digit.png')",
    "import torch\nfrom torch import nn\n\n"
    "class Net(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.conv = nn.Conv2d(1, 8, 5)\n"
    "        self.head = nn.Linear(8 * 12 * 12, 10)\n\n"
    "    def forward(self, x):\n"
    "        return self.head(torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))\n\n"
    "mine = cnnlab.inspect(Net())\n"
    "mine.show.filters()",
    "mine.summary()",
    "import sys\nsorted(m for m in sys.modules if m.startswith('cnnlab.commands') or m == 'cnnlab.cli')",
]


@pytest.mark.slow
def test_a_notebook_users_first_hour(tmp_path, monkeypatch):
    from PIL import Image

    # a 7 drawn dark on white paper, larger than MNIST's 28x28, as a user's own picture is
    seven = cnnlab.data.load("mnist", "test", limit=1).images[0]
    Image.fromarray(255 - np.kron(seven, np.ones((8, 8), np.uint8))).save(tmp_path / "digit.png")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in FIRST_HOUR])
    nb, _, cpu = execute(nb, tmp_path, monkeypatch=monkeypatch)
    training, card, scores, answer, features, filters, summary, cli = (cell.outputs for cell in nb.cells)
    # one bar for the one epoch, updated in place: a single output, as it ended
    assert len(training) == 1 and training[0].output_type == "display_data"
    assert "epoch 1/1" in training[0].data["text/plain"] and "test acc" in training[0].data["text/plain"]
    assert "test accuracy" in card[0].data["text/html"] and "<img" in card[0].data["text/html"]
    assert float(scores[0].data["text/plain"].split("accuracy ")[1].split("%")[0]) >= 100 * FLOOR
    assert "'class': '7'" in answer[0].data["text/plain"]
    assert "image/png" in features[0].data and "image/png" in filters[0].data  # each shown once, inline
    assert len(features) == len(filters) == 1
    assert "<table>" in summary[0].data["text/html"] and "conv" in summary[0].data["text/html"]
    assert cli[0].data["text/plain"] == "[]"
    assert not outputs(nb, "error") and len(images(nb)) == 2
    assert list((tmp_path / "runs").iterdir())  # the run folder, named for the user
