"""What the experiments share: training a given model instance through the Trainer, and counting parameters."""

from __future__ import annotations

import numpy as np
from torch import nn

from cnnlab.train.config import TrainConfig
from cnnlab.train.trainer import Trainer, TrainResult


def train(config: TrainConfig, model: nn.Module | None = None, progress: bool = False) -> TrainResult:
    """Train `model` (or the config's registered model) in memory with the Trainer and return its result.

    Experiments compare variants the registry does not name (other pooling, frozen layers, an MLP); parameters
    with `requires_grad=False` stay frozen because the torch engine only optimizes trainable ones.
    """
    return Trainer(config, progress=progress, save=False, model=model).fit()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def seed_results(record: dict) -> list[dict]:
    """Each seed's result of a result.json record (`cnnlab experiment --seeds N`), seed 0 first."""
    return [record["result"], *record.get("other_seeds", [])]


def mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation over seeds (axis 0); a std of 0 for a single seed."""
    values = np.asarray(values, dtype=float)
    return values.mean(0), (values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1:]))


def seeds_label(record: dict) -> str:
    seeds = record.get("seeds", 1)
    return f"mean ± std over {seeds} seeds" if seeds > 1 else "seed 0"


def curves(history: list[dict]) -> dict:
    """The per-epoch numbers worth keeping from a Trainer history."""
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "seconds")
    return {key: [round(row[key], 5) for row in history] for key in keys}
