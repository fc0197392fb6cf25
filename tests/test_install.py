"""The install fits the user's environment: `pip install cnnlab` keeps any torch in the range pyproject.toml
states, and the core install (no extra) trains, evaluates, predicts and draws, each missing extra a one-line error.

pip is asked for its plan (`--dry-run --report`), offline (`--no-index`), in a throwaway venv that sees this
environment's packages through a .pth file, and whose own site-packages holds the metadata of the user's torch: pip
reads which torch is installed from its metadata alone, so the torch a user could have (a CUDA build, the range's
floor, one below it) is simulated without downloading one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO


def fake_dist_info(site, name: str, version: str) -> None:
    info = site / f"{name}-{version.split('+')[0]}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("")


def fake_wheel(folder, name: str, version: str) -> None:
    """A wheel of nothing but its metadata: what the plan would install where the user's torch does not fit."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def offline_pip_env() -> dict[str, str]:
    """This environment without pip's settings (the machine's own index, wheel folder, constraints): pip sees only
    the folder the test gives it."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}


def planned_installs(tmp_path, user_torch: str) -> dict[str, str]:
    """{name: version} that `pip install --dry-run` of this checkout plans where the user has `user_torch`."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # pip, numpy, ... from here
    fake_dist_info(site, "torch", user_torch)  # found before this environment's own torch
    index = tmp_path / "index"
    index.mkdir()
    fake_wheel(index, "torch", "2.13.0")
    report = tmp_path / "report.json"
    out = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--dry-run", "--report", report,
                          "--no-index", "--find-links", index, "--no-build-isolation", "--quiet",
                          "--disable-pip-version-check", REPO], capture_output=True, text=True, timeout=300,
                         env=offline_pip_env())
    assert out.returncode == 0, out.stderr[-2000:]
    return {row["metadata"]["name"]: row["metadata"]["version"] for row in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize("user_torch", ["2.5.1+cu124"])  # a CUDA build at the range's floor, as on Colab or conda
def test_pip_keeps_a_torch_in_range(tmp_path, user_torch):
    assert planned_installs(tmp_path, user_torch) == {"cnnlab": "0.1.0"}


def test_pip_replaces_a_torch_below_the_floor(tmp_path):
    """The negative: a torch the code does not support is replaced (so the check above can fail)."""
    assert planned_installs(tmp_path, "2.4.1") == {"cnnlab": "0.1.0", "torch": "2.13.0"}


def test_the_stated_range_is_the_one_pip_reads():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch>=2.5,<3" in project["dependencies"]
    core = {dep.split(">")[0].split("=")[0].split("<")[0] for dep in project["dependencies"]}
    assert core == {"torch", "numpy", "rich", "matplotlib", "safetensors", "pillow"}
    assert set(project["optional-dependencies"]) >= {"explorer", "export", "labs", "notebooks", "all", "dev"}


# Every optional package made unimportable, as in an environment with the core install alone; then the CLI's
# train, evaluate, predict and show run in this process.
_CORE_ONLY = """
import sys
from cnnlab.errors import OPTIONAL_PACKAGES
for name in OPTIONAL_PACKAGES:
    sys.modules[name] = None
from cnnlab.cli import main
runs, image, out = sys.argv[1:]
steps = [["train", "--train-limit", "256", "--test-limit", "128", "--epochs", "1", "--threads", "1", "--name", "core",
          "--runs-dir", runs, "--quiet"],
         ["evaluate", f"{runs}/core", "--limit", "128"],
         ["predict", f"{runs}/core", image],
         ["show", "filters", f"{runs}/core", "--out", out],
         ["serve", f"{runs}/core"],
         ["export", f"{runs}/core"],
         ["train", "--engine", "keras", "--train-limit", "64", "--test-limit", "64", "--runs-dir", runs]]
for step in steps:
    print("exit", step[0], main(step), flush=True)
"""


def test_the_core_install_trains_evaluates_predicts_and_draws(tmp_path):
    from PIL import Image

    from cnnlab.data import load_dataset

    image = tmp_path / "digit.png"
    Image.fromarray(load_dataset("mnist", "test", quiet=True).images[0]).save(image)
    out = subprocess.run([sys.executable, "-c", _CORE_ONLY, tmp_path / "runs", image, tmp_path / "filters.png"],
                         capture_output=True, text=True, timeout=300)
    codes = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("exit ")]
    assert codes == [["train", "0"], ["evaluate", "0"], ["predict", "0"], ["show", "0"], ["serve", "2"],
                     ["export", "2"], ["train", "2"]], out.stderr[-2000:]
    assert (tmp_path / "filters.png").read_bytes()[:4] == b"\x89PNG"
    errors = out.stderr.splitlines()
    assert "cnnlab serve: error: cnnlab serve needs the package fastapi: pip install 'cnnlab[explorer]' " \
           "(`make install` does)" in errors
    assert any(line.startswith("cnnlab export: error: ONNX export needs the package onnx: pip install "
                               "'cnnlab[export]'") for line in errors)
    assert any("--engine keras needs the package keras: pip install 'cnnlab[labs]'" in line for line in errors)
