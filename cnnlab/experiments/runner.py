"""Run one experiment by name and write `<out>/<name>/result.json` and `<out>/<name>/<name>.png`."""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path

import torch

from cnnlab import __version__
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.experiments import EXPERIMENTS
from cnnlab.text import to_json


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
    (out / "result.json").write_text(to_json(record, indent=2) + "\n")
    module.plot(record, out / f"{name}.png")
    return record, out


def replot(name: str, out_root: str | Path = "experiments") -> Path:
    """Redraw `<out>/<name>/<name>.png` from its result.json, without training anything."""
    path = Path(out_root) / name / "result.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no result yet (run `cnnlab experiment {name}` first)") from None
    except json.JSONDecodeError as err:
        raise CnnlabError(f"{path}: not valid JSON ({err})") from None
    figure = path.parent / f"{name}.png"
    experiment_module(name).plot(record, figure)
    return figure
