"""Training configuration: one dataclass that, saved as `config.json`, reproduces a run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.registry import check_options
from cnnlab.errors import ConfigError
from cnnlab.models.adapt import TransferSpec
from cnnlab.schedules import SCHEDULES
from cnnlab.train.weighting import CLASS_WEIGHTINGS

OPTIMIZERS = ("sgd", "adam", "adamw")
ENGINES = ("torch", "scratch")


@dataclass
class TrainConfig:
    model: str = "simple-cnn"
    model_options: dict = field(default_factory=dict)
    dataset: str = "mnist"
    dataset_options: dict = field(default_factory=dict)  # a generated dataset's settings, e.g. {"train_scenes": N}
    engine: str = "torch"
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    warmup: float = 0.25  # fraction of all steps spent warming up (cosine, onecycle)
    step_size: int = 1  # epochs between decays (step)
    gamma: float = 0.7  # decay factor (step)
    label_smoothing: float = 0.0
    class_weights: str = "none"  # weigh the loss of each class by its training frequency (cnnlab.train.weighting)
    logit_adjustment: bool = False  # undo the class weights' bias in the trained model's outputs (same module)
    augment: dict | None = None  # cnnlab.train.batches.Augment arguments, or None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the hardware has it natively (cnnlab.hardware)
    channels_last: bool | None = None  # None: on (NHWC memory layout)
    compile: bool = False  # torch.compile the model
    threads: int | None = None
    train_limit: int | None = None  # first N training images only (quick runs and tests)
    labels_per_class: int | None = None  # a balanced subset: N training images per class, drawn with `seed`
    test_limit: int | None = None
    eval_batch_size: int = 1000
    stop_at: float | None = None  # stop after the first epoch whose test accuracy reaches this
    recipe: str = "default"
    data_dir: str | None = None
    transfer: dict | None = None  # how the model was adapted from pretrained weights (cnnlab.models.adapt.TransferSpec)

    def validate(self) -> "TrainConfig":
        def need(ok: bool, message: str):
            if not ok:
                raise ConfigError(message)

        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        need(self.lr > 0, f"learning rate must be positive, got {self.lr}")
        need(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        need(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        check_options(self.dataset, self.dataset_options)  # raises ConfigError naming the option
        need(self.engine in ENGINES, f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        need(0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.class_weights in CLASS_WEIGHTINGS,
             f"unknown class weights {self.class_weights!r}; expected one of {', '.join(CLASS_WEIGHTINGS)}")
        need(self.class_weights == "none" or self.engine == "torch", "class weights train with the torch engine")
        need(not self.logit_adjustment or self.class_weights != "none",
             "logit adjustment undoes class weights: give --class-weights too")
        need(0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1), got {self.warmup}")
        need(self.precision in ("auto", "fp32", "bf16"), f"unknown precision {self.precision!r}; expected auto, fp32 or bf16")
        need(self.stop_at is None or 0 < self.stop_at <= 1, f"stop-at must be an accuracy in (0, 1], got {self.stop_at}")
        need(self.weight_decay >= 0, f"weight decay must be non-negative, got {self.weight_decay}")
        for name in ("train_limit", "test_limit", "threads", "labels_per_class"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name.replace('_', '-')} must be at least 1, got {value}")
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
             f"unknown device {self.device!r}; expected auto, cpu or cuda[:N]")
        if self.transfer is not None:
            need(self.engine == "torch", "transfer learning trains with the torch engine")
            TransferSpec.from_dict(self.transfer)  # raises ConfigError naming what is wrong
        return self

    def load_split(self, split: str, data_dir: str | None = None, quiet: bool = False, limit: int | None = None):
        """The run's dataset split (cnnlab.data.Split), with its dataset options; `data_dir` overrides the run's;
        with `limit`, a generated dataset makes only the first `limit` items."""
        from cnnlab.data import load_dataset

        return load_dataset(self.dataset, split, data_dir or self.data_dir, quiet=quiet, options=self.dataset_options,
                            limit=limit)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        types = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict, "None": type(None)}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            allowed = tuple(t for name in f.type.split("|") for t in _flatten(types[name.strip()]))
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise ConfigError(f"{source}: {f.name} must be {f.type.replace(' | None', ' or null')}, "
                                  f"got {json.dumps(value)}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        # Keys starting with "_" (the run's versions and command line) describe the run, not the settings.
        return cls.from_dict({k: v for k, v in data.items() if not k.startswith("_")}, source=str(path))


def _flatten(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


# Named starting points; command-line flags override any field.
RECIPES: dict[str, dict] = {
    # Fast: 99.2% on MNIST in about 20 s on 2 CPU cores (see README).
    "default": {},
    # Stronger: batch norm, dropout, augmentation and a longer one-cycle schedule (≥ 99.6% on MNIST).
    "best": {
        "model_options": {"channels": [32, 64], "hidden": 256, "batch_norm": True, "dropout": 0.25},
        "epochs": 25, "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "warmup": 0.2,
        "label_smoothing": 0.1, "augment": {"max_shift": 2.5, "max_rotate_deg": 12.0, "max_scale": 0.1},
    },
    # Segmentation of mnist-scenes (`cnnlab segment train`); docs/segmentation.md has what each choice bought.
    # The loss is weighted by class frequency^-1/2: background is 96% of the pixels; logit adjustment then undoes
    # the weighting's bias in the saved model (cnnlab.train.weighting). Sized to reach 0.90 mean IoU in fp32 within
    # 15 minutes on a 2-core CPU without native bf16: a U-Net of four levels (16-128 channels: the fifth level cost
    # more than it gave), one pass over 62,000 freshly drawn scenes (never the same scene twice), each with up to 7
    # digits rather than the test's 3, so that every step shows more digits, and more digits over other digits,
    # which are the errors that remain.
    "segmentation": {"model": "unet", "model_options": {"widths": [16, 32, 64, 128]}, "dataset": "mnist-scenes",
                     "dataset_options": {"train_scenes": 62_000, "train_digits": 7},
                     "epochs": 1, "batch_size": 16, "lr": 3e-3, "class_weights": "inverse-sqrt-frequency",
                     "logit_adjustment": True, "eval_batch_size": 100},
}


def recipe_config(recipe: str = "default", **overrides) -> TrainConfig:
    """The recipe's settings with `overrides` (None: keep the recipe's). A recipe's model options belong to its
    model: with another model and no model options of its own, that model gets its defaults."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    settings = {**RECIPES[recipe], "recipe": recipe}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("model", settings.get("model", "simple-cnn")) != settings.get("model", "simple-cnn"):
        settings.pop("model_options", None)
    settings.update(overrides)
    return TrainConfig.from_dict(settings).validate()
