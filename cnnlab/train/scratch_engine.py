"""The NumPy engine for the Trainer (`cnnlab train --engine scratch`): the same model, initial weights, optimizer
and schedule as the torch engine, but forward, backward and updates all run in `cnnlab.scratch`.

The model is the scratch twin of the engines' common PyTorch model (read only for its layers and initial
weights), so checkpoints keep PyTorch's names and load into the torch model as they are. Tensors cross the
boundary as zero-copy NumPy views.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.scratch import Tensor, no_grad, optim, rng
from cnnlab.scratch import functional as F
from cnnlab.scratch.twin import twin
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import make_optimizer, schedule_fn


class ScratchEngine:
    name = "scratch"
    precision = "fp32, NumPy"

    def __init__(self, config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int):
        rng.manual_seed(config.seed)  # dropout masks
        self.model = twin(model)
        self.optimizer = make_optimizer(config, self.model.parameters(), optim)
        self.schedule = schedule_fn(config, steps_per_epoch)
        self.base_lr, self.step = config.lr, 0
        self.label_smoothing = config.label_smoothing
        self.lr = config.lr * self.schedule(0)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, loss_scale: float | None = None) -> tuple[float, int]:
        self.model.train()
        labels = y.numpy()
        logits = self.model(Tensor(x.numpy()))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if loss_scale is not None and loss_scale != 1 / len(labels):
            loss = loss * (loss_scale * len(labels))  # the Trainer's scaling of the summed loss
        self.optimizer.zero_grad()
        loss.backward()
        # as torch's LambdaLR: step i uses base_lr * factor(i)
        self.lr = self.optimizer.param_groups[0]["lr"] = self.base_lr * self.schedule(self.step)
        self.optimizer.step()
        self.step += 1
        return loss.item() * len(labels), int((logits.data.argmax(1) == labels).sum())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        with no_grad():
            return torch.from_numpy(np.ascontiguousarray(self.model(Tensor(x.numpy())).data))

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(value) for name, value in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        """Weights, optimizer buffers, schedule position and dropout RNG, as tensors and plain values (so the
        checkpoint loads with `torch.load(weights_only=True)`)."""
        def to_torch(state: dict) -> dict:
            return {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}

        return {"model": self.weights(), "optimizer": [to_torch(s) for s in self.optimizer.state],
                "step": self.step, "rng": rng.generator().bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.state = [{k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                                for s in state["optimizer"]]
        self.step = state["step"]
        self.lr = self.base_lr * self.schedule(max(0, self.step - 1))
        rng.generator().bit_generator.state = state["rng"]
