"""Transfer learning: start a new run from weights learned on another task.

    result = transfer("runs/simple-cnn-mnist-...", "fashion-mnist", mode="feature-extract", labels_per_class=10)
    result = transfer("resnet18-f37072fd.pth", "mnist", mode="fine-tune", lr_backbone=1e-4)
    run = cnnlab.transfer(run, "fashion-mnist", "feature-extract")    # from Python: the new Run

A source is a cnnlab run folder (any engine: all save PyTorch names) or a weights file: `.safetensors`, or a
torchvision ImageNet `.pth`, read with `torch.load(weights_only=True)`, never unpickled. The model is the
source's registered model, rebuilt for the target dataset and adapted as `cnnlab.models.adapt` plans it (new
head, first layer summed over colour channels or spread over them, input size), recorded in the new run's config.json under
"transfer" with the source's path and sha256. Frozen parameters get no gradient and no optimizer state, and
frozen batch-norm layers keep their running statistics (cnnlab.train.torch_engine).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab import files
from cnnlab.calls import callable_module
from cnnlab.data import dataset_info, load_dataset
from cnnlab.data.download import sha256_of
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.models.adapt import MODES, Source, TransferSpec, plan
from cnnlab.models.registry import resolve_name
from cnnlab.models.weights import read_state_dict
from cnnlab.train.config import recipe_config
from cnnlab.train.engine import build_torch_model
from cnnlab.train.runs import Run, read_weights
from cnnlab.train.trainer import Trainer

__all__ = ["MODES", "Source", "TransferSpec", "load_source", "plan", "prepare", "transfer"]


def load_source(path: str | Path, model: str | None = None, model_options: dict | None = None) -> Source:
    """Read a run folder or weights file. `model` names the model of a file that does not say (torchvision's
    files do not: their name, e.g. resnet18-f37072fd.pth, is taken as the hint)."""
    path = Path(path)
    if path.is_dir():
        run = Run.open(path)
        if model is not None and resolve_name(model) != resolve_name(run.config.model):
            raise ConfigError(f"--model {model}: run {path} holds a {run.config.model}")
        weights = run.checkpoint("last")
        state, _ = read_weights(weights)
        name, options, dataset = run.config.model, run.config.model_options, run.config.dataset
    else:
        if not path.is_file():
            raise CheckpointError(f"--from {path}: no such run folder or weights file")
        weights = path
        metadata = {}
        if path.suffix == ".safetensors":
            state, metadata = read_weights(path)  # a cnnlab weights file names its model in the metadata
        else:
            state = read_state_dict(path)
        name = model or metadata.get("model")
        if name is None:
            try:
                name = resolve_name(path.name.split("-")[0].split(".")[0])
            except ConfigError:
                raise ConfigError(f"{path}: cannot tell which model these weights are for; give --model NAME "
                                  "(torchvision files are recognized by name, e.g. resnet18-f37072fd.pth)") from None
        options, dataset = metadata.get("model_options") or {}, metadata.get("dataset")
    if model_options is not None:
        options = model_options
    digest = sha256_of(files.read_bytes(weights, "weights", CheckpointError, "weights file"))
    return Source(path, weights, digest, resolve_name(name), dict(options), dataset, state)


def prepare(source: str | Path | Source, dataset: str, mode: str = "fine-tune", *, labels_per_class: int | None = None,
            freeze_until: str | None = None, lr_backbone: float | None = None, model: str | None = None,
            model_options: dict | None = None, input_size: int | None = None, recipe: str = "default",
            **settings):
    """(TrainConfig, model with the pretrained weights loaded) for a transfer run; `settings` are TrainConfig
    fields (epochs, lr, seed, ...)."""
    if input_size is not None and input_size < 1:
        raise ConfigError(f"input size must be at least 1, got {input_size}")
    src = source if isinstance(source, Source) else load_source(source, model, model_options)
    options = settings.get("dataset_options")
    images = load_dataset(dataset, "test", settings.get("data_dir"), quiet=True, options=options).images
    in_channels = images.shape[1] if images.ndim == 4 else 1
    side = images.shape[-1]
    spec = plan(src, mode, dataset_info(dataset, options).num_classes, in_channels, side, input_size, freeze_until,
                lr_backbone)
    config = recipe_config(recipe, model=src.model, model_options=src.model_options, dataset=dataset,
                           labels_per_class=labels_per_class, transfer=spec.to_dict(), **settings)
    torch.manual_seed(config.seed)  # the new head's initialization
    net = build_torch_model(config, (in_channels, side, side))
    net.load_state_dict(spec.adapted_state(net, src.state, src.weights))
    return config, net


def transfer(source, dataset: str, mode: str = "fine-tune", *, name: str | None = None, runs_dir=None,
             progress: bool = True, save: bool = True, **options):
    """Train a transferred model (see `prepare` for the options) and return the Trainer's TrainResult."""
    config, model = prepare(source, dataset, mode, **options)
    return Trainer(config, name=name, runs_dir=runs_dir, progress=progress, save=save, model=model).fit()


def transfer_run(source, dataset: str, mode: str = "fine-tune", *, name: str | None = None, runs_dir=None,
                 progress: bool = True, **options):
    """`cnnlab transfer` from Python, as `cnnlab.transfer(...)`: the model of `source` (a Run, a run folder or a
    weights file) trained on `dataset` with a new head, its backbone frozen ("feature-extract") or trained
    ("fine-tune"); `options` are the command's (freeze_until, lr_backbone, labels_per_class, epochs, lr, ...).
    Returns the new Run.

    >>> new = cnnlab.transfer(run, "mnist", "feature-extract", labels_per_class=10, epochs=1, test_limit=256,
    ...                       runs_dir=tmp, progress=False)
    >>> new.config.transfer["mode"], len(new.history)
    ('feature-extract', 1)
    """
    from cnnlab.train.api import Run as AnsweringRun

    where = source.path if isinstance(source, Run) else source
    result = transfer(where, dataset, mode, name=name, runs_dir=runs_dir, progress=progress, **options)
    return AnsweringRun.open(result.run_dir)


callable_module(__name__, transfer_run)
