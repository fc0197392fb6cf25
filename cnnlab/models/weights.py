"""Loading published or saved weights into a model, safely and strictly.

Weights are read without unpickling code: `.safetensors` files through safetensors, anything else through
`torch.load(weights_only=True)` (torchvision's `.pth` checkpoints are plain state dicts, and load this way).
Loading is strict: before PyTorch sees the tensors, names and shapes are compared with the model's and every
difference is reported in one CheckpointError line.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch import nn

from cnnlab import files
from cnnlab.errors import CheckpointError, first_line

_SHOWN = 4  # names listed per kind of difference before "and N more"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors in a weights file: a state dict, or a checkpoint dict holding one under "state_dict"/"model"."""
    path = Path(path)
    raw = files.read_bytes(path, "weights", CheckpointError, "weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load
            state = load(raw)
        else:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds Python objects, not just tensors; cnnlab only loads weights "
                              "(torch.load(weights_only=True)) and never unpickles arbitrary objects") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, wrong format, ...: all mean "cannot read"
        detail = first_line(err, 120)
        raise CheckpointError(f"{path}: not a readable weights file ({type(err).__name__}: {detail})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict), got {type(state).__name__}")
    return state


def _listed(kind: str, names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)} {kind} ({', '.join(names[:_SHOWN])}{more})"


def check_fits(model: nn.Module, state: dict, source) -> None:
    """Raise one CheckpointError naming every missing, unexpected and mis-shaped key of `state` for `model`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshaped:
        problems = [_listed(kind, names) for kind, names in
                    [("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)] if names]
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into `model` with strict=True; any mismatch raises CheckpointError naming the
    missing, unexpected and mis-shaped keys. Returns the model."""
    state = read_state_dict(path)
    check_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    return model
