"""The Trainer: data in memory, an engine, a live progress bar, evaluation each epoch, and a run folder.

    trainer = Trainer(recipe_config("default", epochs=3))
    result = trainer.fit()          # -> TrainResult(run_dir, best_test_acc, final_test_acc, seconds, ...)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import __version__
from cnnlab.data import load_dataset
from cnnlab.train import runs
from cnnlab.train.batches import Augment, TensorSplit
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import TorchEngine, build_torch_model, resolve_device
from cnnlab.train.tasks import task_for


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    logits: torch.Tensor  # [N, classes], on the CPU
    labels: torch.Tensor

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    def confusion(self, num_classes: int) -> torch.Tensor:
        """confusion[true, predicted] counts."""
        index = self.labels * num_classes + self.predictions
        return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class TrainResult:
    run_dir: Path | None
    history: list[dict]
    final: Evaluation

    @property
    def final_test_acc(self) -> float:
        return self.history[-1]["test_acc"]

    @property
    def best_test_acc(self) -> float:
        return max(row["test_acc"] for row in self.history)

    @property
    def seconds(self) -> float:
        return sum(row["seconds"] for row in self.history)


def evaluate(logits_fn, data: TensorSplit, batch_size: int = 1000) -> Evaluation:
    outputs = [logits_fn(x).float().cpu() for x, _ in data.batches(batch_size)]
    logits = torch.cat(outputs) if outputs else torch.empty(0, data.info.num_classes)
    labels = data.labels.cpu()
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / max(1, len(labels))
    accuracy = (logits.argmax(1) == labels).float().mean().item() if len(labels) else 0.0
    return Evaluation(loss, accuracy, logits, labels)


def make_engine(config: TrainConfig, input_shape, steps_per_epoch: int, device: torch.device):
    if config.engine == "scratch":
        from cnnlab.train.scratch_engine import ScratchEngine

        return ScratchEngine(config, input_shape, steps_per_epoch)
    return TorchEngine(config, build_torch_model(config, input_shape), steps_per_epoch, device)


class Trainer:
    """Train `config` and write a run folder (`out_dir=None` and `save=False` for a dry, in-memory run)."""

    def __init__(self, config: TrainConfig, name: str | None = None, runs_dir: Path | None = None,
                 progress: bool = True, save: bool = True):
        self.config = config.validate()
        self.task = task_for(config)  # classification or segmentation: evaluation, best metric, report
        self.name, self.runs_dir, self.show_progress, self.save = name, runs_dir, progress, save
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device) if config.engine == "torch" else torch.device("cpu")
        self.train_data = TensorSplit(load_dataset(config.dataset, "train", config.data_dir, quiet=not progress),
                                      self.device, config.train_limit)
        self.test_data = TensorSplit(load_dataset(config.dataset, "test", config.data_dir, quiet=not progress),
                                     self.device, config.test_limit)
        self.augment = Augment(**config.augment) if config.augment else None
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_per_epoch = self.train_data.num_batches(config.batch_size)
        self.engine = make_engine(config, self.train_data.shape, self.steps_per_epoch, self.device)
        self.run_dir: Path | None = None

    # -- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config = self.config
        if self.save:
            self.run_dir = runs.new_run_dir(config, self.name, self.runs_dir)
            runs.write_json_atomic(self.run_dir / "config.json", {**config.to_dict(), "_meta": self._meta()})
        history, best_acc, evaluation = [], -1.0, None
        with self._progress() as progress:
            for epoch in range(1, config.epochs + 1):
                row, evaluation = self._epoch(epoch, progress)
                history.append(row)
                if self.run_dir:
                    with open(self.run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    self._save_weights("last", epoch, row)
                    if row[self.task.best_metric] > best_acc:
                        self._save_weights("best", epoch, row)
                best_acc = max(best_acc, row[self.task.best_metric])
        result = TrainResult(self.run_dir, history, evaluation)
        if self.run_dir:
            self._write_report(result)
        return result

    def _epoch(self, epoch: int, progress) -> tuple[dict, Evaluation]:
        config, engine = self.config, self.engine
        task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=self.steps_per_epoch, stats="") if progress else None
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.train_data.batches(config.batch_size, shuffle=True,
                                                              generator=self.generator, augment=self.augment), 1):
            batch_loss, batch_correct = engine.train_batch(x, y)
            loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(y)
            if progress and (step % 10 == 0 or step == self.steps_per_epoch):
                rate = seen / (time.perf_counter() - start)
                progress.update(task, completed=step, stats=f"loss {loss_sum / seen:.4f}  acc {correct / seen:6.2%}  "
                                                            f"{rate:,.0f} img/s")
        train_seconds = time.perf_counter() - start
        evaluation = self.task.evaluate(engine.logits, self.test_data, config.eval_batch_size)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": evaluation.loss, "test_acc": evaluation.accuracy, "lr": engine.lr,
               "seconds": seconds, "images_per_s": seen / train_seconds, **self.task.metrics(evaluation)}
        if progress:
            progress.update(task, stats=progress.tasks[task].fields["stats"] + f"  │ {self.task.headline(evaluation)}")
        return row, evaluation

    # -- outputs --------------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"cnnlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
                "input_shape": list(self.train_data.shape), "num_classes": self.train_data.info.num_classes}

    def _save_weights(self, which: str, epoch: int, row: dict) -> None:
        metadata = {"model": self.config.model, "model_options": self.config.model_options,
                    "dataset": self.config.dataset, "input_shape": list(self.train_data.shape),
                    "num_classes": self.train_data.info.num_classes, "engine": self.config.engine,
                    "epoch": epoch, "test_acc": row["test_acc"]}
        runs.save_weights(self.run_dir / runs.CHECKPOINTS[which], self.engine.weights(), metadata)

    def _write_report(self, result: TrainResult) -> None:
        self.task.write_report(self.run_dir, self.config, self.test_data, result)

    def _progress(self):
        from contextlib import nullcontext

        if not self.show_progress:
            return nullcontext(None)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
