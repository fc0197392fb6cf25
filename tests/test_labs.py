"""The lab's two scripts, in their short mode (--quick: a few hundred steps on part of MNIST), run as a student runs
them, with accuracy floors that an untrained or broken network (~10%) fails; and both open as notebooks (cells)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def run_lab(name: str, cwd) -> str:
    # one thread: the test suite runs two processes on two cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, REPO / "labs" / name, "--quick"], capture_output=True, text=True,
                         timeout=600, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_lab1_keras_trains_three_convnets_and_compares_them(tmp_path):
    out = run_lab("lab1_keras.py", tmp_path)
    rows = dict(re.findall(r"^(\w+)\s+[\d,]+\s+[\d.]+\s+([\d.]+)%$", out, re.M))
    assert set(rows) == {"keras_example", "lenet5", "deeper_batch_norm"}
    # 100 steps of batch 128, 2,000 test images, the lab's seed: measured 89.75% (keras_example), 87.40% (lenet5),
    # 93.95% (deeper_batch_norm; 8.95% with Keras's default batch-norm momentum, whose averages had not settled)
    for name, accuracy in rows.items():
        assert float(accuracy) >= 80.0, name
    assert (tmp_path / "lab1_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.xdist_group("pytensor-c")  # tests/test_engines.py: COMPILED_C
def test_lab2_theano_cnn_learns(tmp_path):
    out = run_lab("lab2_theano.py", tmp_path)
    # 400 SGD steps of 64 images, 2,000 test images: measured 95.05% (untrained: ~10%)
    accuracy = float(re.search(r"^test accuracy ([\d.]+)%$", out, re.M).group(1))
    assert accuracy >= 93.0


@pytest.mark.parametrize("name", ["lab1_keras.py", "lab2_theano.py"])
def test_labs_open_as_notebooks(name):
    """Percent cells: code cells, and markdown cells whose every line is a comment (so the script runs as is)."""
    text = (REPO / "labs" / name).read_text()
    cells = re.split(r"^# %%.*$", text, flags=re.M)
    assert len(cells) >= 8 and cells[0].strip() == ""
    markdown = [c for c in re.findall(r"^# %% \[markdown\]\n((?:#.*\n)+)", text, re.M)]
    assert markdown and all(line.startswith("#") for c in markdown for line in c.splitlines())
