"""The Trainer: data in memory, an engine, a live progress bar, evaluation each epoch, and a run folder.

    trainer = Trainer(recipe_config("default", epochs=3))
    result = trainer.fit()          # -> TrainResult(run_dir, history, final evaluation)
    result = train(epochs=3, name="mine")   # the same, as `cnnlab train --epochs 3 --name mine`
    Trainer.resume("runs/NAME").fit()   # continue a run that was interrupted

After every epoch the run folder gets, each written atomically: `checkpoint.pt` (weights, optimizer, schedule,
random-number states, history), then `metrics.jsonl` and the weights files. A run killed at any moment resumes
from its last finished epoch and ends exactly as if it had never stopped (on the CPU, where kernels are
deterministic).
"""

from __future__ import annotations

import io
import math
import pickle
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab import __version__, files, hardware
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, first_line, import_optional
from cnnlab.files import atomic_write
from cnnlab.tasks import Task, task_for
from cnnlab.tasks.parts import write_run_folder
from cnnlab.text import to_json
from cnnlab.train import runs
from cnnlab.train.batches import Augment, eval_batch_size
from cnnlab.train.config import TrainConfig, recipe_config
from cnnlab.train.distributed import World, device_for, init_world
from cnnlab.train.engine import Engine, build_torch_model
from cnnlab.train.scratch_engine import ScratchEngine
from cnnlab.train.streaming import split_for
from cnnlab.train.torch_engine import TorchEngine, resolve_device
from cnnlab.train.weighting import class_weights

CHECKPOINT = "checkpoint.pt"
PROGRESS_EVERY = 10  # steps between progress updates (and between reads of the loss from the device)
WIDE = 110  # terminal columns from which the progress line shows every number


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path | None
    history: list[dict]
    final: object  # the task's evaluation of the last epoch
    task: Task
    classes: tuple[str, ...] = ()

    @property
    def final_test_acc(self) -> float:
        return self.history[-1]["test_acc"]

    @property
    def best_test_acc(self) -> float:
        return max(row["test_acc"] for row in self.history)

    @property
    def seconds(self) -> float:
        return sum(row["seconds"] for row in self.history)


@dataclass
class RunningSums:
    """One process's sums over the epoch so far: loss, correct and images seen, and the loss and images seen at
    the last progress update (where the window of the next step loss starts). The loss and correct may be tensors
    on the device, read only every few steps; a mid-epoch checkpoint keeps their exact values."""
    loss: float | torch.Tensor = 0.0
    correct: float | torch.Tensor = 0.0
    seen: int = 0
    loss_reported: float = 0.0
    seen_reported: int = 0

    def values(self) -> list[float]:
        return [float(self.loss), float(self.correct), self.seen, self.loss_reported, self.seen_reported]

    @classmethod
    def restored(cls, values: list[float]) -> "RunningSums":
        loss, correct, seen, loss_reported, seen_reported = values
        return cls(loss, correct, int(seen), loss_reported, int(seen_reported))


def train(recipe: str = "default", *, name: str | None = None, runs_dir: str | Path | None = None,
          progress: bool = True, **settings) -> TrainResult:
    """`cnnlab train` from Python: the recipe with `settings` (TrainConfig fields, as the flags), trained into
    `runs_dir/name` (the flags --name and --runs-dir)."""
    return Trainer(recipe_config(recipe, **settings), name=name, runs_dir=runs_dir, progress=progress).fit()


def make_engine(config: TrainConfig, input_shape, steps_per_epoch: int, device: torch.device, world: World,
                model: torch.nn.Module | None = None, class_weights: torch.Tensor | None = None,
                task: Task | None = None) -> Engine:
    model = model if model is not None else build_torch_model(config, input_shape)
    if config.engine == "scratch":
        if world.distributed:
            raise ConfigError("--engine scratch trains in one process; drop --nproc-per-node")
        return ScratchEngine(config, model, steps_per_epoch)
    if config.engine in ("keras", "pytensor"):
        if world.distributed:
            raise ConfigError(f"--engine {config.engine} trains in one process; drop --nproc-per-node")
        # Imported here: Keras and PyTensor are optional (cnnlab[labs]) and slow to import; no other engine needs them.
        module = import_optional(f"cnnlab.train.{config.engine}_engine", f"--engine {config.engine}")
        return module.ENGINE(config, model, steps_per_epoch, input_shape)
    return TorchEngine(config, model, steps_per_epoch, device, world, class_weights, task)


def load_checkpoint(path: Path) -> dict:
    """Read a resume checkpoint without unpickling arbitrary objects (weights_only=True)."""
    if not Path(path).exists():
        raise CheckpointError(f"{path}: no checkpoint to resume from (the run has not finished an epoch)")
    raw = files.read_bytes(path, "checkpoint", CheckpointError, "checkpoint")
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = first_line(err)
        raise CheckpointError(f"{path}: refused: not a plain tensor checkpoint ({reason})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({first_line(err)})") from None


class Trainer:
    """Train `config`, writing a run folder (or nothing, with `save=False`).

    `model` trains a given torch model instead of building `config.model` from the registry: a variant the
    registry does not name, or a model with frozen layers (parameters with requires_grad=False get no gradient
    and no optimizer state, and frozen batch-norm layers keep their running statistics).
    """

    def __init__(self, config: TrainConfig, name: str | None = None, runs_dir: Path | None = None,
                 progress: bool = True, save: bool = True, model: torch.nn.Module | None = None):
        self.config = config = config.validate()
        self.task = task_for(config)  # its loss, evaluation, best metric and run folder
        if save:
            runs.check_destination(name, runs_dir)  # before any data is loaded or model built
        self.name, self.runs_dir = name, runs_dir
        if config.threads:
            torch.set_num_threads(config.threads)
        elif config.engine in ("scratch", "pytensor"):
            # torch only batches the data here; its threads would compete with NumPy's BLAS for the cores.
            torch.set_num_threads(1)
        device = resolve_device(config.device) if config.engine == "torch" else torch.device("cpu")
        self.world = init_world(device)
        self.device = device_for(self.world, device)
        self.writes_run = save  # this process or the first of several writes the run folder
        self.save = save and self.world.is_main
        self.show_progress = progress and self.world.is_main
        train = config.load_split("train", quiet=not progress, limit=config.train_limit)
        # a folder dataset's classes, mean and std, as its training images gave them, for the test images too
        self.config = config = config.recording(train)
        self.train_data = split_for(train, self.device, config.train_limit, config.labels_per_class, config.seed,
                                    config.workers)
        test = config.load_split("test", quiet=not progress, limit=config.test_limit)
        self.test_data = split_for(test, self.device, config.test_limit, workers=config.workers)
        self.eval_batch_size = eval_batch_size(config.eval_batch_size, self.test_data.shape)
        self.augment = Augment(**config.augment) if config.augment else None
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_per_epoch = self.train_data.num_batches(config.batch_size)
        if model is not None and config.engine != "torch":
            raise ConfigError("a given model instance trains with the torch engine")
        # From all training labels, before any sharding: every rank weighs the classes alike.
        weights = class_weights(config.class_weights, self.train_data.labels, self.train_data.info.num_classes)
        self.engine = make_engine(config, self.train_data.shape, self.steps_per_epoch, self.device, self.world, model,
                                  weights, self.task)
        self.run_dir: Path | None = None
        self.history: list[dict] = []
        self.checkpointed = 0  # how many of those epochs checkpoint.pt holds
        self.position: dict | None = None  # where in its epoch a run resumed mid-epoch starts (`_epoch`)
        self._wide = True

    @property
    def is_main(self) -> bool:
        """Whether this process reports and writes the run (the first of several data-parallel processes)."""
        return self.world.is_main

    @property
    def train_size(self) -> int:
        return len(self.train_data)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train_data.shape

    def describe(self) -> str:
        """One line: what trains on what, with which engine, where and how."""
        config = self.config
        return (f"{config.model} on {config.dataset} ({len(self.train_data):,} train / {len(self.test_data):,} test "
                f"images), {config.engine} engine on {self.device} ({self.engine.precision}), recipe {config.recipe}")

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True) -> "Trainer":
        """A Trainer that continues `run_dir` from its last finished epoch."""
        run = runs.Run.open(run_dir)
        for stale in run.path.glob(".*.part"):  # an atomic write the kill interrupted
            stale.unlink()
        state = load_checkpoint(run.path / CHECKPOINT)
        trainer = cls(run.config, progress=progress)
        trainer.run_dir = run.path
        history = state.get("history") if isinstance(state, dict) else None
        if not (isinstance(history, list) and len(history) <= run.config.epochs and
                all(isinstance(row, dict) and row.get("epoch") == n for n, row in enumerate(history, 1))):
            raise CheckpointError(f"{run.path / CHECKPOINT}: its history is not this run's epochs 1.."
                                  f"{run.config.epochs}")
        try:
            trainer.engine.load_state_dict(state["engine"])
            trainer.history = list(history)
            trainer.checkpointed = len(history)
            torch.set_rng_state(state["torch_rng"])
            trainer.generator.set_state(state["generator"])
            trainer.position = state.get("position")
            if trainer.position is not None and len(trainer.position["accumulated"]) != trainer.world.size:
                raise ValueError(f"it was written by {len(trainer.position['accumulated'])} processes, not "
                                 f"{trainer.world.size}")
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{run.path / CHECKPOINT}: does not fit this run ({first_line(err)})") from None
        return trainer

    # -- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config = self.config
        created = self.save and self.run_dir is None
        if created:
            self.run_dir = runs.new_run_dir(config, self.name, self.runs_dir)
        evaluation = None
        try:
            if created:
                runs.write_json_atomic(self.run_dir / "config.json", {**config.to_dict(), "_meta": self._meta()})
            with self._progress() as progress:
                if self.position is not None and self.position["epoch"] != len(self.history) + 1:
                    raise CheckpointError(f"{self.run_dir / CHECKPOINT}: its position (epoch "
                                          f"{self.position['epoch']}) is not in the epoch after its history")
                for epoch in range(len(self.history) + 1, config.epochs + 1):
                    row, evaluation = self._epoch(epoch, progress)
                    self.history.append(row)
                    if self.save:
                        try:
                            self._checkpoint(row)
                        except BaseException:
                            # A full disk, or Ctrl-C, before checkpoint.pt held this epoch: it is not the run's
                            # (after, it is: --resume goes on from it, and the files derived from it are redone).
                            if self.checkpointed < len(self.history):
                                self.history.pop()
                            raise
                    if config.stop_at is not None and row["test_acc"] >= config.stop_at:
                        break
        except BaseException:
            if created and not self.history:  # nothing to resume from: no half-made run folder is left behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self.run_dir = None
            raise
        if evaluation is None:  # resumed a run that had already finished
            evaluation = self.task.evaluate(self.engine.logits, self.test_data, self.eval_batch_size)
        result = TrainResult(self.run_dir, self.history, evaluation, self.task, tuple(self.test_data.info.classes))
        if self.save:
            self._write_report(result)
        return result

    def _epoch(self, epoch: int, progress) -> tuple[dict, object]:
        config, engine, world = self.config, self.engine, self.world
        task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=self.steps_per_epoch, stats="") if progress else None
        # The training loss every PROGRESS_EVERY steps, [step, mean loss of those steps' images], so that the
        # curves of a short run have more than one point an epoch.
        sums, step_loss = RunningSums(), []
        position, self.position = self.position, None
        epoch_state = self.generator.get_state()  # what draws this epoch's order: a mid-epoch checkpoint keeps it
        if position is not None:  # resumed mid-epoch: the same order, then where the interrupted run was
            epoch_state, step_loss = position["epoch_generator"], position["step_loss"]
            self.generator.set_state(epoch_state)
            sums = RunningSums.restored(position["accumulated"][world.rank])
        skip, restored = (position["step"], sums.seen) if position is not None else (0, 0)
        start = time.perf_counter()
        augment = self.augment if epoch <= config.epochs - config.clean_epochs else None
        # Every process draws the same global batch and reads, augments and trains on its own share of it; each
        # share's loss is scaled so that DDP's average of the shares' gradients is the global batch's mean gradient.
        batches = self.train_data.batches(config.batch_size, shuffle=True, generator=self.generator, augment=augment,
                                          rank=world.rank, size=world.size, skip=skip,
                                          resume_state=position and position["generator"])
        for step, (x, y) in enumerate(batches, skip + 1):
            total = min(config.batch_size, len(self.train_data) - (step - 1) * config.batch_size)
            batch_loss, batch_correct = engine.train_batch(x, y, world.size / total)
            sums.loss, sums.correct = sums.loss + batch_loss, sums.correct + batch_correct
            sums.seen += len(y)
            if step % PROGRESS_EVERY == 0 or step == self.steps_per_epoch:
                self._check_finite(float(batch_loss), epoch, step)
                loss_sum = float(sums.loss)
                window_loss, window_seen = world.sum(loss_sum - sums.loss_reported,
                                                     sums.seen - sums.seen_reported)  # all processes' shares
                step_loss.append([step, window_loss / max(1, window_seen)])
                sums.loss_reported, sums.seen_reported = loss_sum, sums.seen
                if progress:
                    rate = (sums.seen - restored) * world.size / (time.perf_counter() - start)
                    progress.update(task, completed=step, stats=self._stats(loss_sum / sums.seen,
                                                                            float(sums.correct) / sums.seen, rate))
            if self.writes_run and config.checkpoint_every and step % config.checkpoint_every == 0 \
                    and step < self.steps_per_epoch:
                self._checkpoint_within(epoch, step, epoch_state, sums, step_loss)
        loss_sum, correct, seen, restored = world.sum(float(sums.loss), float(sums.correct), float(sums.seen),
                                                      float(restored))
        train_seconds = time.perf_counter() - start
        evaluation = self.task.evaluate(engine.logits, self.test_data, self.eval_batch_size)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": evaluation.loss, "test_acc": evaluation.accuracy, "lr": engine.lr,
               "seconds": seconds, "images_per_s": (seen - restored) / train_seconds,
               **self.task.metrics(evaluation), "steps": self.steps_per_epoch, "step_loss": step_loss}
        if progress:
            headline = self.task.headline(evaluation, short=not self._wide)
            progress.update(task, stats=f"{self._stats(loss_sum / seen, correct / seen)} │ {headline}")
        return row, evaluation

    def _stats(self, loss: float, accuracy: float, rate: float | None = None) -> str:
        if not self._wide:  # 80 columns: the essentials (images/s is in the results table)
            return f"loss {loss:.4f} acc {accuracy:.1%}"
        return f"loss {loss:.4f}  acc {accuracy:6.2%}" + (f"  {rate:,.0f} img/s" if rate is not None else "")

    def _check_finite(self, loss: float, epoch: int, step: int) -> None:
        if math.isfinite(loss):
            return
        kept = (f"the last good checkpoint (epoch {len(self.history)}) is kept in {self.run_dir}"
                if self.run_dir and self.history else "no epoch had finished, so no run folder is kept")
        raise TrainingDiverged(f"loss became {loss} at epoch {epoch}, step {step} (try a lower --lr); {kept}")

    # -- outputs --------------------------------------------------------------------------------------------
    def _checkpoint(self, row: dict) -> None:
        """Resume state first, then what is derived from it, each file atomically."""
        self._write_state()
        atomic_write(self.run_dir / "metrics.jsonl", "".join(to_json(r) + "\n" for r in self.history).encode())
        self._save_weights("last", row)
        best = self.task.metric.key
        if row[best] >= max(r[best] for r in self.history):
            self._save_weights("best", row)

    def _write_state(self, position: dict | None = None) -> None:
        state = {"engine": self.engine.state_dict(), "history": self.history, "torch_rng": torch.get_rng_state(),
                 "generator": self.generator.get_state()}
        if position is not None:
            state["position"] = position
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.run_dir / CHECKPOINT, buffer.getvalue())
        self.checkpointed = len(self.history)  # the finished epochs checkpoint.pt now holds

    def _checkpoint_within(self, epoch: int, step: int, epoch_state: torch.Tensor, sums: RunningSums,
                           step_loss: list) -> None:
        """checkpoint.pt at `step` of `epoch`: with the finished epochs' state, where the epoch is (the generator
        that drew its order, the step, every process's running sums), so that --resume continues from there as
        if never stopped. Every process takes part (the sums are gathered); the first writes."""
        accumulated = self.world.gather(sums.values())
        if self.save:
            self._write_state({"epoch": epoch, "step": step, "epoch_generator": epoch_state,
                               "generator": self.generator.get_state(), "accumulated": accumulated,
                               "step_loss": step_loss})

    def _meta(self) -> dict:
        return {"cnnlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
                "world_size": self.world.size, "input_shape": list(self.train_data.shape),
                "num_classes": self.train_data.info.num_classes, "precision": self.engine.precision,
                "hardware": hardware.describe()}

    def _save_weights(self, which: str, row: dict) -> None:
        metadata = {"model": self.config.model, "model_options": self.config.model_options,
                    "dataset": self.config.dataset, "input_shape": list(self.train_data.shape),
                    "num_classes": self.train_data.info.num_classes, "engine": self.config.engine,
                    "epoch": row["epoch"], "test_acc": row["test_acc"]}
        runs.save_weights(self.run_dir / runs.CHECKPOINTS[which], self.engine.weights(), metadata)

    def _write_report(self, result: TrainResult) -> None:
        sections = self.task.sections(result.history, lambda: (self.test_data, result.final), self.run_dir.name)
        write_run_folder(self.run_dir, self.task, self.config, result.history, sections)

    def _progress(self):
        from contextlib import nullcontext

        if not self.show_progress:
            return nullcontext(None)
        from cnnlab.train.progress import NotebookProgress, in_notebook

        if in_notebook():  # one bar per epoch, updated in place in the cell (rich's needs a widget library there)
            return NotebookProgress()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # Keras's layout: the bar, steps, time left while running and time taken once done, then the numbers.
        # An 80-column terminal gets a shorter bar and the essential numbers; a wide one, all of them.
        console = Console()
        self._wide = console.width >= WIDE
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24 if self._wide else 12),
                        MofNCompleteColumn(), TimeRemainingColumn(elapsed_when_finished=True),
                        TextColumn("{task.fields[stats]}"), console=console)
