"""Training configuration: one dataclass that, saved as `config.json`, reproduces a run.

Each setting is declared once, here: its default, its help, its choices. The command line builds its flags from
these fields (`--batch-size` for `batch_size`), config files are checked against them, and `validate` checks every
value, so that flags, files and `--help` cannot drift apart. This module imports nothing heavy (no torch): the
CLI reads it to build `--help`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab import files
from cnnlab.data import load_dataset
from cnnlab.data import huggingface, shards
from cnnlab.data.folders import canonical, is_folder
from cnnlab.data.registry import DATASETS, GENERATED, check_options, dataset_info
from cnnlab.errors import ConfigError, listed
from cnnlab.schedules import SCHEDULES

OPTIMIZERS = ("sgd", "adam", "adamw")
ENGINES = ("torch", "scratch", "keras", "pytensor")
PRECISIONS = ("auto", "fp32", "bf16")
# How each class weighting weighs a class: by 1 / frequency to this power (cnnlab.train.weighting).
CLASS_WEIGHTINGS = {"none": None, "inverse-sqrt-frequency": 0.5, "inverse-frequency": 1.0}
# The settings of `augment` (cnnlab.train.batches.Augment): what each is, and its range (a scale of 1 would let an
# image shrink to nothing).
AUGMENT_OPTIONS = {"max_shift": ("pixels", (0, 100)), "max_rotate_deg": ("degrees", (0, 180)),
                   "max_scale": ("fraction of the size", (0, 0.9)),
                   # photos: ResNet's CIFAR recipe is {"crop_padding": 4, "flip": 0.5}
                   "crop_padding": ("pixels of padding before a random crop", (0, 64)),
                   "flip": ("probability of a horizontal flip", (0, 1)),
                   "brightness": ("factor spread", (0, 0.9)), "contrast": ("factor spread", (0, 0.9)),
                   "saturation": ("factor spread", (0, 1)),
                   "erase": ("probability of erasing a random rectangle", (0, 1)),
                   # digits: Simard et al. 2003 used alpha 34, sigma 4 (a displacement of about 1.4 px, rms)
                   "elastic": ("strength alpha of an elastic distortion, pixels", (0, 100)),
                   "elastic_sigma": ("smoothness sigma of the elastic distortion, pixels", (0.5, 20))}

# The sensible range of each bounded number (both ends allowed): beyond them a run diverges, never ends or runs
# out of memory, long after it started. The rest have their own checks in `validate`.
RANGES = {"epochs": (1, 100_000), "batch_size": (1, 65_536), "eval_batch_size": (1, 65_536), "lr": (1e-12, 100),
          "momentum": (0, 1), "weight_decay": (0, 10), "step_size": (1, 100_000), "gamma": (1e-12, 1e12),
          "threads": (1, 1024), "clean_epochs": (0, 100_000), "train_limit": (1, 10 ** 9), "test_limit": (1, 10 ** 9),
          "labels_per_class": (1, 10 ** 9), "seed": (0, 2 ** 63 - 1), "workers": (0, 256),
          "checkpoint_every": (1, 10 ** 9)}

# Named starting points; command-line flags override any field. docs/records.md has how each was found, what
# each of its choices bought, and what did not help.
RECIPES: dict[str, dict] = {
    # Fast: 99.2% on MNIST in about 20 s on 2 CPU cores.
    "default": {},
    # Fastest to 99.0% MNIST test accuracy: one epoch.
    "fast": {"model_options": {"channels": [16, 32], "hidden": 256, "batch_norm": True, "pool_first": True,
                               "strided_first": True},
             "epochs": 1, "batch_size": 192, "lr": 5e-3, "label_smoothing": 0.1},
    # Fastest to 99.5%: the fast recipe's batch norm and label smoothing on a wider net, with small shifts and turns.
    "fast-99.5": {"model_options": {"channels": [32, 64], "hidden": 256, "batch_norm": True}, "epochs": 5,
                  "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "label_smoothing": 0.1,
                  "augment": {"max_shift": 2.0, "max_rotate_deg": 10.0}},
    # The most accurate: 99.66% on MNIST (mean of 5 seeds) in 12 epochs of the deeper CNN with the digits' jitter.
    "best": {
        "model": "deep-cnn", "model_options": {"widths": [24, 48, 96], "dropout": 0.25},
        "epochs": 12, "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "warmup": 0.2,
        "label_smoothing": 0.1, "augment": {"max_shift": 2.5, "max_rotate_deg": 12.0, "max_scale": 0.1},
    },
    # Fashion-MNIST: about 93.0% in 6 epochs of the deeper CNN, with the crop and flip of photos.
    "fashion": {
        "model": "deep-cnn", "model_options": {"widths": [32, 64, 128], "dropout": 0.0}, "dataset": "fashion-mnist",
        "epochs": 6, "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "warmup": 0.2,
        "label_smoothing": 0.1, "augment": {"crop_padding": 2, "flip": 0.5},
    },
    # Five conv layers with ReLU and max pooling on Fashion-MNIST, for `cnnlab show deconv` (docs/inside.md).
    "deconv": {"model": "alexnet", "dataset": "fashion-mnist", "epochs": 2, "batch_size": 128, "optimizer": "adamw",
               "lr": 1e-3, "weight_decay": 5e-4},
    # Segmentation of mnist-scenes (`cnnlab segment train`): 0.90 mean IoU within 15 minutes (docs/segmentation.md).
    "segmentation": {"model": "unet", "model_options": {"widths": [16, 32, 64, 128]}, "dataset": "mnist-scenes",
                     "dataset_options": {"train_scenes": 62_000, "train_digits": 7},
                     "epochs": 1, "batch_size": 16, "lr": 3e-3, "class_weights": "inverse-sqrt-frequency",
                     "logit_adjustment": True, "eval_batch_size": 100},
    # The same in about a minute and a half on 2 cores: 10,000 scenes, 500 test scenes (docs/segmentation.md).
    "segmentation-quick": {"model": "unet", "model_options": {"widths": [16, 32, 64, 128]},
                           "dataset": "mnist-scenes", "dataset_options": {"train_scenes": 10_000, "train_digits": 7},
                           "test_limit": 500, "epochs": 1, "batch_size": 16, "lr": 3e-3,
                           "class_weights": "inverse-sqrt-frequency", "logit_adjustment": True,
                           "eval_batch_size": 100},
    # Localization of one digit on mnist-boxes' 64x64 canvas: 95% localization accuracy (docs/localization.md).
    "localization": {"model": "localizer", "dataset": "mnist-boxes", "epochs": 3, "batch_size": 64, "lr": 2e-3,
                     "model_options": {"backbone_options": {"channels": [32, 64], "batch_norm": True,
                                                            "strided_first": True}, "grid": 8},
                     "eval_batch_size": 500},
}


def option(default=None, help: str = "", *, choices=(), metavar: str | None = None, flag: bool = True,
           factory=None, tasks: tuple[str, ...] | None = None):
    """A TrainConfig field with its command-line flag (`flag=False`: a setting no flag sets; `tasks`: the only
    tasks it applies to, so that `segment train --help` offers only what segmentation takes; None: every task)."""
    metadata = {"help": help, "choices": tuple(choices), "metavar": metavar, "flag": flag, "tasks": tasks}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    model: str = option("simple-cnn", "registered model name (see `cnnlab zoo`)")
    model_options: dict = option(help='the model\'s options as JSON, e.g. \'{"channels": [8, 16]}\' (simple-cnn), '
                                      '\'{"widths": [8, 16, 32, 64]}\' (unet); docs/zoo.md lists them', factory=dict,
                                 metavar="JSON")
    dataset: str = option("mnist", f"registered dataset ({', '.join([*DATASETS, *GENERATED])}), folder:PATH (a "
                                   "folder with one sub-folder of images per class), shards:PATTERN (WebDataset tar "
                                   "shards) or hf:PATH (a Hugging Face dataset on disk); docs/data.md")
    dataset_options: dict = option(help='a generated or folder dataset\'s settings as JSON, e.g. \'{"train_scenes": '
                                        '60000}\' (mnist-scenes), \'{"side": 64, "fit": "pad", "color": "rgb", '
                                        '"test_fraction": 0.2}\' (folder:PATH)', factory=dict, metavar="JSON")
    engine: str = option("torch", "torch; the NumPy engine written from scratch; Keras 3 or PyTensor "
                                 "(pip install 'cnnlab[labs]')", choices=ENGINES,
                         tasks=("classification",))
    epochs: int = option(3, "passes over the training images")
    batch_size: int = option(64, "images per optimizer step")
    optimizer: str = option("adam", "SGD, or Adam / AdamW (decoupled weight decay)", choices=OPTIMIZERS)
    lr: float = option(2e-3, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(True, "Nesterov momentum for SGD (--no-nesterov: plain momentum)")
    weight_decay: float = option(0.0, "weight decay (an L2 penalty; decoupled with adamw)")
    schedule: str = option("onecycle", "learning-rate schedule (cnnlab.schedules)", choices=SCHEDULES)
    warmup: float = option(0.25, "fraction of all steps spent warming up (cosine, onecycle)")
    step_size: int = option(1, "epochs between decays (step schedule)")
    gamma: float = option(0.7, "decay factor (step schedule)")
    label_smoothing: float = option(0.0, "share of each target spread evenly over all classes")
    ema: float | None = option(None, "evaluate and save an exponential moving average of the weights, updated "
                                     "every step with this decay (e.g. 0.999; torch engine)", metavar="DECAY")
    class_weights: str = option("none", "weigh each class's loss by its frequency in the training labels "
                                        "(segmentation: background); cnnlab.train.weighting", choices=tuple(CLASS_WEIGHTINGS))
    logit_adjustment: bool = option(False, "fold -log(class weight) into the trained model's output bias, so it "
                                           "predicts with the training frequencies rather than the weighted ones "
                                           "(segmentation models)")
    augment: dict | None = option(None, 'random affine jitter as JSON, e.g. \'{"max_shift": 2, "max_rotate_deg": '
                                        '10, "max_scale": 0.1}\', and an elastic distortion ("elastic": 34, '
                                        '"elastic_sigma": 4); for photos a padded random crop, flip and colour '
                                        'jitter, e.g. \'{"crop_padding": 4, "flip": 0.5, "brightness": 0.2, '
                                        '"contrast": 0.2, "saturation": 0.2}\'', metavar="JSON",
                                  tasks=("classification",))
    clean_epochs: int = option(0, "train the last N epochs on the images as they are, without --augment: the "
                                  "model ends fitted to undistorted images, as it is tested", metavar="N",
                               tasks=("classification",))
    seed: int = option(0, "random seed: initial weights, data order, augmentation, subsets")
    device: str = option("auto", "auto, cpu, mps or cuda[:N] (`cnnlab info` lists those here)")
    precision: str = option("auto", "auto: bf16 autocast on CUDA and on CPUs that compute bf16 natively "
                                    "(AVX512-BF16, AMX), fp32 elsewhere; `cnnlab info` says which this machine has",
                            choices=PRECISIONS)
    channels_last: bool | None = option(None, "NHWC memory layout (default: on)")
    compile: bool = option(False, "torch.compile the model")
    threads: int | None = option(None, "CPU threads for torch")
    train_limit: int | None = option(None, "use only the first N training images", metavar="N")
    labels_per_class: int | None = option(None, "train on a balanced subset: N images of each class, drawn with "
                                                "--seed", metavar="N", tasks=("classification",))
    test_limit: int | None = option(None, "evaluate on the first N test images", metavar="N")
    eval_batch_size: int = option(1000, "images per batch when evaluating", metavar="N")
    workers: int | None = option(None, "processes that read (decode) batches ahead, for images read from disk "
                                       "(default: every core when decoding on the fly, else none on a CPU, 1 on a "
                                       "GPU)", metavar="N")
    checkpoint_every: int | None = option(None, "also write checkpoint.pt every N steps within an epoch, for "
                                                "long epochs: --resume continues from that step (default: at "
                                                "the end of each epoch)", metavar="N")
    stop_at: float | None = option(None, "stop once the test accuracy reaches ACC (e.g. 0.99)", metavar="ACC",
                                   tasks=("classification",))
    recipe: str = option("default", "starting settings (flags override them)", choices=tuple(RECIPES))
    data_dir: str | None = option(None, "folder with the dataset files (else $CNNLAB_DATA, data/, cache, "
                                        "download)", metavar="DIR")
    # How the model was adapted from pretrained weights (cnnlab.models.adapt.TransferSpec); set by
    # `cnnlab transfer`, never by a flag: the pretrained weights are not in the config.
    transfer: dict | None = option(None, flag=False)

    def validate(self) -> "TrainConfig":
        """The settings checked (a ConfigError names the first that is wrong), returned as a new config in which
        a dataset named by a place (folder:, shards:, hf:) is absolute, so that the run finds it from anywhere;
        `self` is unchanged."""
        def need(ok: bool, message: str):
            if not ok:
                raise ConfigError(message)

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f"{f.name.replace('_', ' ')} must be a "
                                                                        f"finite number, got {value}")
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata["choices"]
            need(not choices or value in choices,
                 f"unknown {f.name.replace('_', ' ')} {value!r}; expected one of {', '.join(choices)}")
        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        need(self.eval_batch_size >= 1, f"eval batch size must be at least 1, got {self.eval_batch_size}")
        need(self.lr > 0, f"learning rate must be positive, got {self.lr}")
        dataset = self.dataset
        if is_folder(dataset):
            dataset = canonical(dataset)
        elif shards.is_shards(dataset):
            dataset = shards.canonical(dataset)
        elif huggingface.is_hub(dataset):
            dataset = huggingface.canonical(dataset)
        check_options(dataset, self.dataset_options)  # raises ConfigError naming the option
        need(0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.class_weights == "none" or self.engine == "torch", "class weights train with the torch engine")
        need(not self.logit_adjustment or self.class_weights != "none",
             "logit adjustment undoes class weights: give --class-weights too")
        need(self.ema is None or 0 < self.ema < 1, f"ema must be a decay in (0, 1), got {self.ema}")
        need(self.ema is None or self.engine == "torch", "--ema trains with the torch engine")
        need(0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1), got {self.warmup}")
        need(self.stop_at is None or 0 < self.stop_at <= 1, f"stop-at must be an accuracy in (0, 1], got {self.stop_at}")
        need(self.weight_decay >= 0, f"weight decay must be non-negative, got {self.weight_decay}")
        for name in ("train_limit", "test_limit", "threads", "labels_per_class"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name.replace('_', '-')} must be at least 1, got {value}")
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ConfigError(f"{name.replace('_', '-')} must be between {low:g} and {high:g}, got {value:g}")
        need(re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", self.device) is not None,
             f"unknown device {self.device!r}; expected auto, cpu, mps or cuda[:N]")
        for key, value in (self.augment or {}).items():
            need(key in AUGMENT_OPTIONS, f"augment option {key!r}: no such option (it takes "
                                         f"{', '.join(AUGMENT_OPTIONS)})")
            low, high = AUGMENT_OPTIONS[key][1]
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high,
                 f"augment option {key!r} must be a number from {low:g} to {high:g}, got {json.dumps(value)}")
        if self.transfer is not None:
            need(self.engine == "torch", "transfer learning trains with the torch engine")
            self.transfer_spec  # noqa: B018 (reading it checks it: a ConfigError names what is wrong)
        return dataclasses.replace(self, dataset=dataset)

    @property
    def transfer_spec(self):
        """`transfer` read as a `cnnlab.models.adapt.TransferSpec` (None for a model trained from scratch)."""
        if self.transfer is None:
            return None
        # Imported here rather than at the top: the plan's module imports torch, which `--help` must not wait for.
        from cnnlab.models.adapt import TransferSpec

        return TransferSpec.from_dict(self.transfer)

    def load_split(self, split: str, data_dir: str | None = None, quiet: bool = False, limit: int | None = None):
        """The run's dataset split (cnnlab.data.Split), with its dataset options; `data_dir` overrides the run's;
        with `limit`, a generated dataset makes only the first `limit` items."""
        return load_dataset(self.dataset, split, data_dir or self.data_dir, quiet=quiet,
                            options=self.dataset_options, limit=limit)

    def recording(self, split) -> "TrainConfig":
        """This config with what the first load of a dataset named by a place (a folder, shards, a Hugging Face
        dataset) found (its classes, mean and std) in its dataset options, so that a run keeps the inputs it was
        trained on when its files change or are gone."""
        if not hasattr(split.info, "recorded") or all(key in self.dataset_options
                                                      for key in ("classes", "mean", "std")):
            return self
        return dataclasses.replace(self, dataset_options={**self.dataset_options, **split.info.recorded()})

    def dataset_info(self):
        """The run's dataset (cnnlab.data.DatasetInfo) with its options: a folder's recorded classes and
        statistics, its side and colour."""
        return dataset_info(self.dataset, self.dataset_options)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {listed(unknown)}")
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
            data = json.loads(files.read_text(path, "config", ConfigError, "config file"),
                              parse_constant=_no_constant)
        except (json.JSONDecodeError, RecursionError, ValueError) as err:
            raise ConfigError(f"{path}: not valid JSON ({str(err)[:120]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        # Keys starting with "_" (the run's versions and command line) describe the run, not the settings.
        return cls.from_dict({k: v for k, v in data.items() if not k.startswith("_")}, source=str(path))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _flatten(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def recipe_task(recipe: str) -> str:
    """The task a recipe trains for, from its dataset's registry entry (no model needs building)."""
    return dataset_info(RECIPES[recipe].get("dataset", TrainConfig.dataset)).task


def recipe_config(recipe: str = "default", **overrides) -> TrainConfig:
    """The recipe's settings with `overrides` (None: keep the recipe's). A recipe's model options belong to its
    model: with another model and no model options of its own, that model gets its defaults."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    where = sorted({"name", "runs_dir"} & set(overrides))
    if where:  # the flags --name and --runs-dir say where the run goes, not how it trains
        raise ConfigError(f"{', '.join(where)}: where the run folder goes, not a training setting; use "
                          "cnnlab.train.trainer.train(..., name=..., runs_dir=...) or Trainer(config, name=..., "
                          "runs_dir=...)")
    settings = {**RECIPES[recipe], "recipe": recipe}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("model", settings.get("model", "simple-cnn")) != settings.get("model", "simple-cnn"):
        settings.pop("model_options", None)
    settings.update(overrides)
    return TrainConfig.from_dict(settings).validate()
