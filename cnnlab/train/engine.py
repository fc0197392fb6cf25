"""Engines: what the Trainer asks of a framework to train and evaluate one model.

The Trainer owns the data, the loop, the progress display and the run folder; an engine owns the model and its
optimizer. Every engine is built from the same PyTorch model (`build_torch_model`: the registry's model, or a
transferred one), the same optimizer settings (`make_optimizer`) and the same schedule (`schedule_fn`), and
saves its weights in PyTorch's names, so that every command reads every engine's runs. `Engine` is the whole
contract; `cnnlab.train.torch_engine` and `cnnlab.train.scratch_engine` implement it.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

import torch

from cnnlab.errors import ConfigError
from cnnlab.models import get_model
from cnnlab.schedules import lr_factor
from cnnlab.train.config import TrainConfig


@runtime_checkable
class Engine(Protocol):
    name: str  # the --engine value
    precision: str  # how it computes and why ("fp32: auto, no native bf16 on this CPU"): header and config.json
    lr: float  # the learning rate of the step just taken

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, loss_scale: float | None = None):
        """One optimizer step on a normalized batch -> (summed loss, number correct). The loss minimized is the
        summed loss times `loss_scale` (default 1 / len(y)); the run's task says what an image's loss and
        "correct" are (cnnlab.tasks.Task.loss). Either may be a tensor on the device: the Trainer reads them only every
        few steps, so that a GPU is not stalled."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode forward pass of a normalized batch, without gradients."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to deploy, as the PyTorch model's state_dict."""

    def state_dict(self) -> dict:
        """Everything needed to resume (weights, optimizer, schedule), as tensors and plain values, so that the
        checkpoint loads with `torch.load(weights_only=True)`."""

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`'s output."""


def build_torch_model(config: TrainConfig, input_shape: tuple[int, int, int] | None = None):
    info = config.dataset_info()
    channels, side = (input_shape[0], input_shape[-1]) if input_shape else (1, 28)
    if config.transfer:
        # A transferred model keeps its source's layer geometry and freezing, so resumed runs and
        # Run.build_model() rebuild exactly the model that was trained.
        return config.transfer_spec.build(config, info.num_classes, channels, side)
    return get_model(config.model, num_classes=info.num_classes, in_channels=channels, input_size=side,
                     **config.model_options)


def make_optimizer(config: TrainConfig, params, optimizers=torch.optim):
    """The optimizer `config` names, from `optimizers`: torch.optim, or a module with the same SGD, Adam and AdamW
    (cnnlab.scratch.optim). `params`: parameters, or param groups (dicts) whose own "lr" overrides `config.lr`."""
    if config.optimizer == "sgd":
        return optimizers.SGD(params, lr=config.lr, momentum=config.momentum,
                              nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    cls = optimizers.Adam if config.optimizer == "adam" else optimizers.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def schedule_fn(config: TrainConfig, steps_per_epoch: int):
    return functools.partial(lr_factor, config.schedule, total=config.epochs * steps_per_epoch,
                             steps_per_epoch=steps_per_epoch, step_size=config.step_size, gamma=config.gamma,
                             warmup=config.warmup)


def sequential_layers(model: torch.nn.Module, engine: str, supported,
                      model_name: str) -> list[tuple[str, torch.nn.Module, str]]:
    """The layers of a (nested) Sequential torch model in the order they run, for an engine that translates them one
    by one: (state_dict prefix, layer, the name in `supported` of its class or base class). A model with a layer
    the engine lacks is one line naming the model, the engine and the layer."""
    layers = []

    def visit(prefix: str, module: torch.nn.Module) -> None:
        classes = [c.__name__ for c in type(module).__mro__]
        kind = next((c for c in classes if c in supported), None)
        if kind is None and "Sequential" in classes:
            for name, child in module.named_children():
                visit(f"{prefix}{name}.", child)
            return
        if kind is None:
            raise ConfigError(f"the {engine} engine cannot build {model_name}: it has no {type(module).__name__} layer "
                              f"(it has: {', '.join(supported)})")
        layers.append((prefix, module, kind))

    visit("", model)
    return layers
