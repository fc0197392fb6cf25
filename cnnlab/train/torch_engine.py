"""The PyTorch engine: CPU, GPU and multi-process (DDP), bf16 autocast where the hardware computes it natively,
channels-last memory, optional torch.compile, frozen layers, class-weighted losses and an average of the weights."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from cnnlab.errors import ConfigError
from cnnlab import hardware
from cnnlab.hardware import choose_precision
from cnnlab.tasks import Task, task_for
from cnnlab.train.averaging import WeightAverage
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import make_optimizer, schedule_fn


def resolve_device(name: str) -> torch.device:
    """The torch device for `--device NAME`, or one line saying it is not on this machine (rather than torch's
    traceback at the first tensor moved there)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    usable = hardware.usable_devices()
    found = str(device) in usable or (device.index is None and any(d.split(":")[0] == device.type for d in usable))
    if not found:
        raise ConfigError(f"--device {name}: not available on this machine (usable here: {', '.join(usable)}; "
                          "`cnnlab info` lists them)")
    return device


def logit_shift(class_weights: torch.Tensor) -> torch.Tensor:
    """-log(weight) per class: what turns a class-weighted model's logits back into logits for the classes'
    training frequencies (post-hoc logit adjustment; cnnlab.train.weighting explains why it pays)."""
    return torch.where(class_weights > 0, -class_weights.clamp(min=1e-12).log(), 0.0)


def output_bias(model: torch.nn.Module) -> str:
    """The state_dict name of the bias added to every output logit, which a logit shift is folded into."""
    name = getattr(model, "output_bias", None)
    if name is None or name not in model.state_dict():
        raise ConfigError(f"logit adjustment needs a model whose last layer adds a bias per class (the segmentation "
                          f"models do); {type(model).__name__} has none")
    return name


class TorchEngine:
    name = "torch"

    def __init__(self, config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int, device: torch.device,
                 world=None, class_weights: torch.Tensor | None = None, task: Task | None = None):
        self.device = device
        self.task = task or task_for(config)  # its loss, and what counts as right
        # --precision auto: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere
        # (cnnlab.hardware says why).
        self.autocast, self.precision = choose_precision(config.precision, device.type)
        # channels_last (NHWC) suits both cuDNN and oneDNN: the default CNN trains ~20% faster with it on 2 CPU
        # cores (benchmarks/mnist_time_to_accuracy.py).
        on_gpu = device.type == "cuda"
        self.channels_last = config.channels_last if config.channels_last is not None else True
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format)
        # Batch-norm layers whose parameters are frozen must not update their running statistics either.
        self.frozen_norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                             and m.affine and not any(p.requires_grad for p in m.parameters(recurse=False))]
        params = [p for p in model.parameters() if p.requires_grad]
        if config.transfer:
            params = config.transfer_spec.param_groups(model, config.lr)
        self.optimizer = make_optimizer(config, params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule_fn(config, steps_per_epoch))
        self.label_smoothing = config.label_smoothing
        self.class_weights = class_weights.to(device) if class_weights is not None else None
        self.logit_shift = None
        if config.logit_adjustment:
            self.logit_shift, self.output_bias = logit_shift(class_weights).to(device), output_bias(model)
        self.lr = self.optimizer.param_groups[0]["lr"]
        # With --ema, the average of the weights is what is evaluated and saved (cnnlab.train.averaging).
        self.average = WeightAverage(self.model, config.ema) if config.ema is not None else None
        self.forward = self.model
        if world is not None and world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(self.model, device_ids=[device.index] if on_gpu else None)
        if config.compile:
            self.forward = torch.compile(self.forward)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The model that is evaluated and saved: the weights' average with --ema, else the trained model."""
        return self.average.model if self.average else self.model

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()

    def train_mode(self) -> None:
        self.model.train()
        for norm in self.frozen_norms:
            norm.eval()

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, loss_scale: float | None = None):
        self.train_mode()
        with self._autocast():
            outputs = self.forward(self._inputs(x))
            # Models with auxiliary classifiers (GoogLeNet) return (logits, *aux) in training and say how much
            # the auxiliary losses weigh.
            logits, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
            loss_sum = sum((getattr(self.model, "aux_weight", 1.0) if i else 1.0) *
                           self.task.loss(o, y, self.class_weights, self.label_smoothing)
                           for i, o in enumerate([logits, *aux]))
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum * (loss_scale if loss_scale is not None else 1 / len(y))).backward()
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.average:
            self.average.update()
        # Accuracy of what the model predicts, as evaluated: with logit adjustment, of the adjusted logits (the
        # raw ones of a class-weighted model favour the rare classes by design).
        return loss_sum.detach(), self.task.correct(self._adjusted(logits.detach()), y)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluated.eval()
        with self._autocast():
            logits = self.evaluated(self._inputs(x)).float()
        return self._adjusted(logits)

    def _adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        if self.logit_shift is None:
            return logits
        return logits.float() + self.logit_shift.view(-1, *[1] * (logits.dim() - 2))

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to deploy: with logit adjustment, the shift is folded into the output bias, so every
        consumer of the saved model (evaluate, predict, the explorer) predicts what `logits` evaluated."""
        weights = self.evaluated.state_dict()
        if self.logit_shift is not None:
            bias = weights[self.output_bias]  # a model may score each class several times (U-Net's space_to_depth)
            shift = self.logit_shift.repeat_interleave(bias.numel() // self.logit_shift.numel())
            weights = {**weights, self.output_bias: bias + shift}
        return weights

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        return {**state, "average": self.average.state_dict()} if self.average else state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.average:
            self.average.load_state_dict(state["average"])
        self.lr = self.optimizer.param_groups[0]["lr"]
