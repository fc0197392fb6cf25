"""Run one experiment by name and write `<out>/<name>/result.json` and `<out>/<name>/<name>.png`."""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path

import numpy as np
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
                   progress: bool = False, seeds: int | None = None) -> tuple[dict, Path]:
    """Run `name` at `setting` ("quick" or "full") with seeds 0..seeds-1 (default: the setting's own, seed 0 for
    most); returns (the result.json contents, the output folder). `result` is seed 0's (the figure draws it); `summary` holds each headline number of the
    experiment (its module's `summary`) as mean, standard deviation (n - 1) and the value of every seed."""
    module = experiment_module(name)
    if setting not in module.SETTINGS:
        raise ConfigError(f"unknown setting {setting!r} for {name}; expected one of {', '.join(module.SETTINGS)}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    settings = module.SETTINGS[setting]
    out = Path(out_root) / name
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if "seeds" in settings:  # the experiment repeats its trainings over seeds itself (transfer)
        settings = {**settings, "seeds": list(range(seeds)) if seeds else settings["seeds"]}
        results = [module.run(settings, progress=progress)]
        seeds = len(settings["seeds"])
    else:
        seeds = seeds or 1
        results = [module.run({**settings, "seed": seed}, progress=progress) for seed in range(seeds)]
        settings = {**settings, "seed": list(range(seeds)) if seeds > 1 else 0}
    record = {"experiment": name, "claim": module.CLAIM, "setting": setting, "settings": settings,
              "seeds": seeds, "result": results[0], "summary": summarize([module.summary(r, settings) for r in results]),
              "other_seeds": results[1:], "seconds": round(time.perf_counter() - start, 1),
              "versions": {"cnnlab": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": torch.get_num_threads()}
    (out / "result.json").write_text(to_json(record, indent=2) + "\n")
    module.plot(record, out / f"{name}.png")
    return record, out


def summarize(rows: list[dict[str, float | list[float]]]) -> dict[str, dict]:
    """{number: {mean, std, values}} over seeds; a number that is already a list of seeds' values (transfer's)
    is summarized as it is. std is the sample standard deviation (n - 1), None for a single value."""
    summary = {}
    for key in rows[0]:
        values = [v for row in rows for v in (row[key] if isinstance(row[key], list) else [row[key]])]
        summary[key] = {"mean": round(float(np.mean(values)), 5),
                        "std": round(float(np.std(values, ddof=1)), 5) if len(values) > 1 else None,
                        "values": values}
    return summary


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
