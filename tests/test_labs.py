"""The lab's notebooks, run as a student runs them: top to bottom in a fresh Jupyter kernel, in QUICK mode, with
accuracy floors that an untrained or broken network (~10%) fails; each paired with its `# %%` script by jupytext
(one source: the two say the same, and git holds no outputs); and the first cell, which installs cnnlab where it is
missing (Colab)."""

from __future__ import annotations

import re
import sys
import tomllib

import jupytext
import nbformat
import pytest

from conftest import REPO
from notebooks import code_cells, execute, images, text

LABS = REPO / "labs"
NOTEBOOKS = sorted(LABS.glob("*.ipynb"))
# Each notebook's QUICK run must take at most 3 minutes of one core (labs/README.md has the measured times).
BUDGET_S = 180


@pytest.mark.slow
def test_lab1_keras_trains_three_convnets_and_compares_them(tmp_path, monkeypatch):
    nb, _, cpu = execute(LABS / "lab1_keras.ipynb", tmp_path, monkeypatch=monkeypatch)
    rows = dict(re.findall(r"^(\w+)\s+[\d,]+\s+[\d.]+\s+([\d.]+)%$", text(nb), re.M))
    assert set(rows) == {"keras_example", "lenet5", "deeper_batch_norm"}
    # 100 steps of batch 128, 2,000 test images, the lab's seed: measured 89.75% (keras_example), 87.40% (lenet5),
    # 93.95% (deeper_batch_norm; 8.95% with Keras's default batch-norm momentum, whose averages had not settled)
    for name, accuracy in rows.items():
        assert float(accuracy) >= 80.0, name
    assert len(images(nb)) == 1  # the curves, shown in the notebook
    assert (tmp_path / "lab1_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cpu < BUDGET_S


@pytest.mark.slow
@pytest.mark.xdist_group("pytensor-c")  # tests/test_engines.py: COMPILED_C
def test_lab2_theano_cnn_learns(tmp_path, monkeypatch):
    nb, _, cpu = execute(LABS / "lab2_theano.ipynb", tmp_path, monkeypatch=monkeypatch)
    # 400 SGD steps of 64 images, 2,000 test images: measured 95.05% (untrained: ~10%)
    accuracy = float(re.search(r"^test accuracy ([\d.]+)%$", text(nb), re.M).group(1))
    assert accuracy >= 93.0
    assert cpu < BUDGET_S


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_is_its_script_paired_and_holds_no_outputs(notebook):
    """One source of truth: the notebook's cells are jupytext's reading of its `# %%` script, and git holds it
    without outputs (`jupytext --sync labs/*.py` after editing a script; JupyterLab with jupytext keeps both)."""
    script = notebook.with_suffix(".py")
    assert script.is_file(), f"{notebook.name} has no paired script"
    stored = nbformat.read(notebook, as_version=4)
    paired = jupytext.read(script)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in paired.cells], \
        f"{notebook.name} and {script.name} differ: run `jupytext --sync {script.relative_to(REPO)}`"
    assert stored.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in stored.cells if c.cell_type == "code")


def repository() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_the_first_cell_installs_cnnlab_only_where_it_is_missing(notebook, monkeypatch):
    """The logic of the first cell, as Colab runs it: cnnlab missing, pip installs it from the repository with the
    notebook's extras (and keeps Colab's torch: tests/test_install.py); cnnlab present, nothing is installed. The
    QUICK switch is the cell's first statement."""
    import importlib.util
    import subprocess

    from packaging.requirements import Requirement

    first = code_cells(notebook)[0]
    assert re.search(r"^QUICK = False$", first, re.M)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    real_find_spec = importlib.util.find_spec
    for missing in (True, False):
        calls.clear()
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if missing and name == "cnnlab" else real_find_spec(name, *a))
        exec(compile(first, notebook.name, "exec"), {})
        if not missing:
            assert calls == []
            continue
        (command,) = calls
        assert command[:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
        wanted = Requirement(command[5])
        assert wanted.name == "cnnlab" and wanted.url == f"git+{repository()}"
        assert wanted.extras <= {"labs", "explorer", "export", "notebooks"}


@pytest.mark.slow
def test_the_lecture_tour_runs_slide_by_slide(tmp_path, monkeypatch):
    from conftest import fashion_data_dir

    monkeypatch.setenv("CNNLAB_DATA", fashion_data_dir())  # the transfer slide's target
    nb, _, cpu = execute(LABS / "lecture_tour.ipynb", tmp_path, monkeypatch=monkeypatch)
    out = text(nb)
    assert "[[4. 3. 4.]\n [2. 4. 3.]\n [2. 3. 4.]]" in out  # the slide's feature map
    assert "conv2d + ReLU gradients match finite differences" in out
    # the NumPy engine's small CNN after 32 steps: 83.8% measured (untrained: ~10%)
    assert float(re.search(r"after \d+ steps: loss [\d.]+, test accuracy ([\d.]+)%", out).group(1)) >= 60
    shown = [o.data for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    html = "".join(data.get("text/html", "") for data in shown)
    # deep-cnn, 1 epoch of 5,000 images: 93.2% measured
    assert float(re.search(r"test accuracy ([\d.]+)%", html).group(1)) >= 85
    reused, scratch = map(float, re.search(r"reused features ([\d.]+)%, from scratch ([\d.]+)%", out).groups())
    assert reused >= 40  # 10 labels per class of Fashion-MNIST, 8 epochs: 52.2-55.0% over seeds 0-2 (fp32, Zen 4)
    # FCN-8s, 2 epochs of 2,000 scenes (tests/test_seg_train.py's short run): 0.220-0.239 over seeds 0-3 (fp32, Zen 4;
    # the short run's 0.184-0.243 over seeds, threads and AVX2/AVX-512 kernels); background everywhere: 0.08
    assert float(re.search(r"mean IoU ([\d.]+)", out).group(1)) >= 0.15
    markdown = "".join(data.get("text/markdown", "") for data in shown)
    assert "conv3-64" in markdown and "3x3, 64" in markdown  # the VGG and ResNet tables
    assert "<table>" in html and "resnet20" in html  # a summary
    assert len(images(nb)) >= 7
    assert cpu < BUDGET_S
