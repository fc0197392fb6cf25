"""What `show`, `report` and `serve` look inside: a run folder (`cnnlab.train.runs.Run`) or a model from the
user's own file (`cnnlab.train.user_model.UserModel`, `--model FILE.py:NAME`). Both answer `Inspected`, so that
no command asks which of the two it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from torch import nn

from cnnlab.data import DatasetInfo, Split
from cnnlab.tasks import Task
from cnnlab.train.config import TrainConfig


@runtime_checkable
class Inspected(Protocol):
    @property
    def name(self) -> str:
        """What it is called: a run folder's name, FILE.py:NAME."""

    @property
    def kind(self) -> str:
        """"run", or "model" for one that was not trained by cnnlab."""

    @property
    def caption(self) -> str:
        """Its model in a few words, under a picture of it."""

    @property
    def path(self) -> Path | None:
        """Its run folder (None: it has none, and no metrics, figures or config.json)."""

    @property
    def config(self) -> TrainConfig:
        """Its training settings: dataset, evaluation batch size, test limit."""

    @property
    def info(self) -> DatasetInfo:
        """Its dataset: classes, normalization, task."""

    @property
    def task(self) -> Task:
        """What its outputs mean (cnnlab.tasks)."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The [C, H, W] input its model takes."""

    def introduction(self) -> str:
        """What it is and what it reached, in a sentence (`**emphasis**` and `code` marked)."""

    def settings(self) -> list[tuple[str, str]]:
        """Every setting that made it, as (name, value)."""

    def metrics(self) -> list[dict]:
        """Its training history, one row per epoch (none for a model it did not train)."""

    def test_split(self, limit: int | None = None) -> Split:
        """Its dataset's test images (the first `limit`)."""

    def build_model(self, checkpoint: str = "last") -> nn.Module:
        """Its model with its weights, in eval mode."""
