"""Engines: what the Trainer asks of a framework to train and evaluate one model.

The Trainer owns the data, the loop, the progress display and the run folder; an engine owns the model and its
optimizer. An engine provides:

    train_batch(x, y) -> (summed loss, number correct)    one optimizer step on a normalized float batch
                                                          (loss and correct summed over the batch's images)
    logits(x) -> torch.Tensor                             evaluation-mode forward pass, no gradients
    lr -> float                                           the learning rate of the step just taken
    weights() -> dict[str, torch.Tensor]                  the model's state_dict in PyTorch naming

`TorchEngine` is the PyTorch engine; the NumPy engine plugs in with the same four members.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.schedules import lr_factor
from cnnlab.train.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return device


def build_torch_model(config: TrainConfig, input_shape: tuple[int, int, int] | None = None):
    from cnnlab.data import dataset_info
    from cnnlab.models import get_model

    info = dataset_info(config.dataset)
    channels, side = (input_shape[0], input_shape[-1]) if input_shape else (1, 28)
    return get_model(config.model, num_classes=info.num_classes, in_channels=channels, input_size=side,
                     **config.model_options)


def make_optimizer(config: TrainConfig, params):
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def schedule_fn(config: TrainConfig, steps_per_epoch: int):
    return functools.partial(lr_factor, config.schedule, total=config.epochs * steps_per_epoch,
                             steps_per_epoch=steps_per_epoch, step_size=config.step_size, gamma=config.gamma,
                             warmup=config.warmup)


class TorchEngine:
    name = "torch"

    def __init__(self, config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int, device: torch.device):
        self.model = model.to(device)
        self.optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule_fn(config, steps_per_epoch))
        self.label_smoothing = config.label_smoothing
        self.lr = self.optimizer.param_groups[0]["lr"]

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        self.model.train()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        # per image: 1 if right; with pixel labels, the fraction of its pixels that are right
        return loss.item() * len(y), (logits.argmax(1) == y).sum().item() * len(y) / y.numel()

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(x)

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
