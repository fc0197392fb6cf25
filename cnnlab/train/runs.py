"""Run folders: `runs/<name>/` holds everything a training run produced.

    config.json        the TrainConfig plus versions (enough to reproduce the run)
    metrics.jsonl      one JSON object per epoch
    model.safetensors  the final weights, with the model's name and shape in the metadata
    best.safetensors   the weights of the epoch with the best test accuracy
    curves.png, confusion.png, mistakes.png, summary.md

Weights are only ever read with safetensors: loading a run never unpickles anything.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.download import atomic_write
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.models.weights import check_fits
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import build_torch_model

RUNS_DIR = Path(os.environ.get("CNNLAB_RUNS", "runs"))
CHECKPOINTS = {"last": "model.safetensors", "best": "best.safetensors"}


def new_run_dir(config: TrainConfig, name: str | None = None, root: Path | None = None) -> Path:
    root = Path(root or RUNS_DIR)
    base = name or f"{config.model}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in base or base in (".", ".."):
        raise ConfigError(f"run name {base!r} must be a plain folder name")
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    path.mkdir(parents=True)
    return path


def write_json_atomic(path: Path, data) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def save_weights(path: Path, weights: dict, metadata: dict) -> None:
    """Atomically write a safetensors file; metadata values are stored as strings (safetensors' rule)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    atomic_write(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def read_weights(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, with clear errors for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    metadata = {}
    for key, value in (header.get("__metadata__") or {}).items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


@dataclass
class Run:
    """A finished (or running) run folder."""
    path: Path
    config: TrainConfig

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not path.is_dir():
            candidate = RUNS_DIR / path
            if candidate.is_dir() and not path.is_absolute():
                path = candidate
            else:
                raise CheckpointError(f"{path}: no such run folder (see `cnnlab runs`)")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a run folder (no config.json)")
        try:
            config = TrainConfig.load(path / "config.json")
        except ConfigError as err:
            raise CheckpointError(str(err)) from None
        return cls(path, config)

    @property
    def name(self) -> str:
        return self.path.name

    def metrics(self) -> list[dict]:
        file = self.path / "metrics.jsonl"
        if not file.is_file():
            return []
        rows = []
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise CheckpointError(f"{file}:{number}: not valid JSON") from None
        return rows

    def checkpoint(self, which: str = "last") -> Path:
        if which not in CHECKPOINTS:
            raise ConfigError(f"unknown checkpoint {which!r}; expected one of {', '.join(CHECKPOINTS)}")
        return self.path / CHECKPOINTS[which]

    def build_model(self, which: str = "last"):
        """The run's PyTorch model with its trained weights, in eval mode."""
        path = self.checkpoint(which)
        tensors, metadata = read_weights(path)
        model = build_torch_model(self.config, metadata.get("input_shape"))
        check_fits(model, tensors, path)
        model.load_state_dict(tensors)
        return model.eval()


def list_runs(root: Path | None = None) -> list[Run]:
    root = Path(root or RUNS_DIR)
    runs = []
    for path in sorted(root.glob("*/config.json")):
        try:
            runs.append(Run.open(path.parent))
        except CheckpointError:
            continue  # a foreign or damaged folder is not a run; `cnnlab runs` lists the rest
    return runs
