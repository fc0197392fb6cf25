"""Precision chosen by the hardware: bf16 autocast only where it is computed natively, and recorded with the run."""

import json
import os
import subprocess
import sys

import pytest
import torch

from cnnlab import hardware
from cnnlab.cli import main
from cnnlab.train.config import RECIPES, recipe_config, recipe_task
from cnnlab.train.engine import build_torch_model
from cnnlab.train.torch_engine import TorchEngine
from cnnlab.train.trainer import Trainer

from conftest import SUITE_ONEDNN_CAP

# PyTorch and oneDNN then use their AVX2 kernels and no bf16 instructions, as on a CPU without AVX-512.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    autocast, why = hardware.choose_precision("auto", "cpu")
    assert autocast is native
    assert why == ("bf16 autocast: auto, native bf16 CPU" if native else "fp32: auto, no native bf16 on this CPU")
    assert hardware.choose_precision("fp32", "cpu") == (False, "fp32, as asked")
    autocast, why = hardware.choose_precision("bf16", "cpu")  # asked for: it runs, with a warning where it is slow
    assert autocast and ("emulated" in why) is not native


def test_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert hardware.choose_precision("auto", "cuda") == (True, "bf16 autocast: auto, CUDA")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert hardware.choose_precision("auto", "cuda") == (False, "fp32: auto, this GPU has no bf16")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_no_recipe_turns_bf16_on_without_native_bf16(monkeypatch, recipe):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    config = recipe_config(recipe, device="cpu")
    assert config.precision == "auto"
    segments = recipe_task(recipe) == "segmentation"
    engine = TorchEngine(config, build_torch_model(config, (1, 64, 84) if segments else (1, 28, 28)),
                         steps_per_epoch=1, device=torch.device("cpu"),
                         class_weights=torch.ones(11) if segments else None)
    assert not engine.autocast and engine.precision == "fp32: auto, no native bf16 on this CPU"


def test_the_avx2_only_setting_reports_no_native_bf16_and_trains_in_fp32():
    """A real subprocess with the environment of the portability checks: the detection reads what oneDNN may use,
    not only the CPU's flags, so a capped instruction set turns bf16 off."""
    out = subprocess.run([sys.executable, "-m", "cnnlab", "info", "--json"], capture_output=True, text=True,
                         env={**os.environ, **AVX2_ONLY}, timeout=120, check=True).stdout
    info = json.loads(out)
    assert info["native_bf16"] is False and info["cpu_capability"] in ("AVX2", "DEFAULT")
    assert info["auto_precision_cpu"] == "fp32: auto, no native bf16 on this CPU"


def test_native_bf16_needs_the_cpu_flag_and_onednn_allowed_to_use_it(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "fma"})
    assert not hardware.native_bf16()  # oneDNN may support bf16 by emulation (AVX-512 without BF16): not native
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert hardware.native_bf16() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    for cap in ("AVX2", "avx512_core_vnni"):  # oneDNN capped below its bf16 instructions (the suite's setting)
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert not hardware.native_bf16()


def test_auto_trains_in_bf16_exactly_where_the_cpu_has_it(tmp_path):
    """The real thing, without the suite's cap on oneDNN: a short run with --precision auto records bf16 autocast
    on a CPU with AVX512-BF16 or AMX, fp32 on any other."""
    env = dict(os.environ)
    if env.get("ONEDNN_MAX_CPU_ISA") == SUITE_ONEDNN_CAP:  # the suite's own cap, not one the user exported
        del env["ONEDNN_MAX_CPU_ISA"]
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--epochs", "1", "--train-limit", "64", "--test-limit",
                    "64", "--threads", "1", "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "auto",
                    "--quiet"], env=env, check=True, capture_output=True, timeout=300)
    meta = json.loads((tmp_path / "auto" / "config.json").read_text())["_meta"]
    native = (bool(hardware.cpu_flags() & set(hardware.BF16_FLAGS)) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
              and env.get("ONEDNN_MAX_CPU_ISA", "").upper() not in hardware.ONEDNN_ISAS_WITHOUT_BF16)
    assert meta["hardware"]["native_bf16"] is native
    assert meta["precision"] == ("bf16 autocast: auto, native bf16 CPU" if native
                                 else "fp32: auto, no native bf16 on this CPU")
    assert (tmp_path / "auto" / "model.safetensors").is_file()


def test_the_run_records_its_precision_and_hardware(tmp_path):
    result = Trainer(recipe_config(epochs=1, train_limit=64, test_limit=64, threads=1, device="cpu"), name="run",
                     runs_dir=tmp_path, progress=False).fit()
    meta = json.loads((result.run_dir / "config.json").read_text())["_meta"]
    autocast, why = hardware.choose_precision("auto", "cpu")
    assert meta["precision"] == why
    assert meta["hardware"]["cpu"] == hardware.cpu_model() and meta["hardware"]["native_bf16"] is autocast
    assert meta["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_info_names_the_cpu_and_fits_80_columns(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("CPU ") and hardware.cpu_model() in line for line in lines)
    assert any(line.startswith("native bf16") and line.split()[-1] == ("yes" if hardware.native_bf16() else "no")
               for line in lines)
    assert any(line.split()[0] == "mnist" for line in lines)  # where the bundled MNIST was found
    assert max(map(len, lines)) <= 80
