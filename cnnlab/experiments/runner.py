"""Run one experiment by name and write `<out>/<name>/result.json` and `<out>/<name>/<name>.png`."""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path

import torch

from cnnlab import __version__
from cnnlab.errors import ConfigError
from cnnlab.experiments import EXPERIMENTS


def experiment_module(name: str):
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"cnnlab.experiments.{name.replace('-', '_')}")


def run_experiment(name: str, setting: str = "full", out_root: str | Path = "experiments",
                   progress: bool = False) -> tuple[dict, Path]:
    """Run `name` at `setting` ("quick" or "full"); returns (the result.json contents, the output folder)."""
    module = experiment_module(name)
    if setting not in module.SETTINGS:
        raise ConfigError(f"unknown setting {setting!r} for {name}; expected one of {', '.join(module.SETTINGS)}")
    settings = module.SETTINGS[setting]
    out = Path(out_root) / name
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = module.run(settings, progress=progress)
    record = {"experiment": name, "claim": module.CLAIM, "setting": setting, "settings": settings,
              "result": result, "seconds": round(time.perf_counter() - start, 1),
              "versions": {"cnnlab": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": torch.get_num_threads()}
    (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    module.plot(record, out / f"{name}.png")
    return record, out
