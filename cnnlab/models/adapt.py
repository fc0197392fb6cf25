"""Adapting pretrained weights to a new task: which tensors a model keeps, which it makes anew, and how.

A `Source` is pretrained weights and the registered model they belong to; `plan` works out, without training
anything, how they map onto the same architecture built for other images and classes, and returns it as a
`TransferSpec` (the "transfer" section of a run's config.json). Three adaptations, each recorded:

- head: the layers whose shapes depend on the number of classes (found by building the model for two class
  counts) get a fresh initialization, even when the class counts agree: their weights mean the old classes;
- first layer: 3-channel filters meet 1-channel images summed over their colour channels ("sum"). A grey image is
  an RGB image with three equal channels, and w_r*g + w_g*g + w_b*g = (w_r + w_g + w_b)*g: the summed filter
  responds to it exactly as the original does. 1-channel filters meet colour images as the grey filter applied
  to the mean of the channels ("mean": the filter w/3 on each channel, since w/3*r + w/3*g + w/3*b = w*(r+g+b)/3):
  a colour image whose channels are equal gives exactly the grey source's response;
- input size: ImageNet nets switch to a small-input stem below 64 px (cnnlab.models.layers.SMALL_INPUT), whose
  first layers have other shapes than the checkpoint's. The model is built at the smallest side, from the
  images' own side up, at which every pretrained tensor fits, and resizes its inputs to it (bilinear).

Modes: `feature-extract` trains the new head only; `fine-tune` trains everything, except what `freeze_until`
freezes, with the backbone at `lr_backbone` if given. Reading sources and training are the workflow's
(`cnnlab.transfer`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CheckpointError, ConfigError, listed
from cnnlab.models.layers import SMALL_INPUT
from cnnlab.models.registry import get_model, model_info
from cnnlab.models.weights import check_fits

MODES = ("feature-extract", "fine-tune")


@dataclass(frozen=True)
class Source:
    """Pretrained weights and the registered model they belong to."""
    path: Path  # what the user named: a run folder or a weights file
    weights: Path  # the file the tensors were read from
    sha256: str
    model: str
    model_options: dict
    dataset: str | None  # what the source was trained on, where known
    state: dict[str, torch.Tensor]

    def record(self) -> dict:
        return {"path": str(self.path.resolve()), "weights": str(self.weights.resolve()), "sha256": self.sha256,
                "model": self.model, "dataset": self.dataset}


def keys_shaped_by(argument: str, model: str, options: dict, side: int) -> list[str]:
    """State-dict keys whose shape depends on the registry builder's `argument` ("num_classes" or "in_channels"):
    the classifier head, or the first layer. Built twice on the meta device, so nothing is allocated."""
    def shapes(value: int) -> dict:
        arguments = {"num_classes": 2, "in_channels": 1, argument: value}
        with torch.device("meta"):
            net = get_model(model, input_size=side, **arguments, **options)
        return {k: v.shape for k, v in net.state_dict().items()}

    two, three = shapes(2), shapes(3)
    return [k for k in two if two[k] != three[k]]


def _owner(key: str) -> str:
    return key.rsplit(".", 1)[0]


def _under(name: str, modules) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


@dataclass(frozen=True)
class TransferSpec:
    """How a model was adapted from its source: the "transfer" section of a run's config.json."""
    source: dict  # Source.record(): path, weights file, sha256, model, dataset
    mode: str
    head: list  # module names of the new classification head
    input_size: int  # the side the model is built for; smaller images are resized to it
    first_layer: dict | None = None  # {"layer", "from_channels", "to_channels", "rule"}: channels summed or meaned
    freeze_until: str | None = None
    lr_backbone: float | None = None

    @classmethod
    def from_dict(cls, data) -> "TransferSpec":
        where = "transfer settings"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {listed(unknown)}")
        missing = [n for n in ("source", "mode", "head", "input_size") if n not in data]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        spec = cls(**data)
        checks = [
            (spec.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {spec.mode!r}"),
            (isinstance(spec.source, dict), "source must be an object"),
            (isinstance(spec.head, list) and spec.head and all(isinstance(h, str) for h in spec.head),
             "head must be a non-empty list of layer names"),
            (isinstance(spec.input_size, int) and not isinstance(spec.input_size, bool) and spec.input_size >= 1,
             f"input_size must be a positive integer, got {spec.input_size!r}"),
            (spec.first_layer is None or isinstance(spec.first_layer, dict), "first_layer must be an object or null"),
            (spec.freeze_until is None or isinstance(spec.freeze_until, str), "freeze_until must be a layer name"),
            (spec.lr_backbone is None or (isinstance(spec.lr_backbone, (int, float))
                                          and not isinstance(spec.lr_backbone, bool) and spec.lr_backbone > 0),
             f"lr_backbone must be a positive number, got {spec.lr_backbone!r}"),
            (spec.mode == "fine-tune" or (spec.freeze_until is None and spec.lr_backbone is None),
             "mode feature-extract trains the new head only; freeze-until and lr-backbone apply to fine-tune"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{where}: {message}")
        return spec

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # -- the model ------------------------------------------------------------------------------------------
    def build(self, config, num_classes: int, in_channels: int, side: int) -> nn.Module:
        """The target model, untrained: the source's architecture at `input_size`, resizing its inputs if they
        are smaller, with the frozen parameters set to requires_grad=False."""
        model = get_model(config.model, num_classes=num_classes, in_channels=in_channels,
                          input_size=self.input_size, **config.model_options)
        if self.input_size != side:
            resize_inputs(model, self.input_size)
        self.freeze(model)
        return model

    def freeze(self, model: nn.Module) -> None:
        if self.mode == "feature-extract":
            for name, p in model.named_parameters():
                p.requires_grad_(_under(name, self.head))
            return
        if self.freeze_until is None:
            return
        modules = list(model.named_modules())
        names = [n for n, _ in modules]
        if self.freeze_until not in names:
            top = ", ".join(n for n, _ in model.named_children())
            raise ConfigError(f"freeze-until {self.freeze_until!r}: no such layer in {type(model).__name__} "
                              f"(its top-level layers: {top})")
        position = names.index(self.freeze_until)
        # Everything up to the named layer in definition order (which is the forward order of every zoo
        # model), and the layer's own sub-layers, which come after it in that order.
        for index, (name, module) in enumerate(modules):
            if index <= position or _under(name, [self.freeze_until]):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
        if any(not p.requires_grad for n, p in model.named_parameters() if _under(n, self.head)):
            raise ConfigError(f"freeze-until {self.freeze_until!r} would freeze the new head "
                              f"({', '.join(self.head)}): nothing would learn the new classes")

    def param_groups(self, model: nn.Module, lr: float) -> list:
        """The trainable parameters: one list, or the head at `lr` and the backbone at `lr_backbone`."""
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        backbone = [p for n, p in trainable if not _under(n, self.head)]
        if self.lr_backbone is None or not backbone:
            return [p for _, p in trainable]
        # The head first: the Trainer reports the first group's learning rate.
        return [{"params": [p for n, p in trainable if _under(n, self.head)], "lr": lr},
                {"params": backbone, "lr": self.lr_backbone}]

    def adapted_state(self, model: nn.Module, source_state: dict, where) -> dict:
        """`source_state` made to fit `model`: its head replaced by the model's own (new) one, the first
        layer's colour channels summed (or its grey channel spread over the colour ones). Anything else that does
        not fit raises one CheckpointError listing it."""
        own = model.state_dict()
        state = {k: v for k, v in source_state.items() if not _under(_owner(k), self.head)}
        state.update({k: v for k, v in own.items() if _under(_owner(k), self.head)})
        if self.first_layer:
            to = self.first_layer["to_channels"]
            for key in [k for k in state if _owner(k) == self.first_layer["layer"] and state[k].dim() == 4]:
                if state[key].shape[1] == self.first_layer["from_channels"]:
                    kernel = state[key]
                    state[key] = kernel.sum(1, keepdim=True) if self.first_layer["rule"] == "sum" else \
                        kernel.repeat(1, to, 1, 1) / to
        check_fits(model, state, where)
        return state


def resize_inputs(model: nn.Module, side: int) -> None:
    """Make `model` resize its input images to side x side (bilinear) before its first layer.

    A forward pre-hook rather than a wrapper module, so the state-dict names stay the source's (torchvision's)."""
    def resize(module, args):
        x, *rest = args
        return (F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False), *rest)

    model.register_forward_pre_hook(resize)


def plan(source: Source, mode: str, num_classes: int, in_channels: int, side: int, input_size: int | None = None,
         freeze_until: str | None = None, lr_backbone: float | None = None) -> TransferSpec:
    """The TransferSpec for `source` on images of `in_channels` x `side` x `side`: its head, first-layer
    adaptation and the input side at which the pretrained tensors fit."""
    native = model_info(source.model).input_size[-1]
    sizes = [input_size] if input_size else sorted({s for s in (side, SMALL_INPUT, native) if s >= side})
    first_keys = keys_shaped_by("in_channels", source.model, source.model_options, sizes[-1])
    first_layer = None
    source_channels = {source.state[k].shape[1] for k in first_keys if k in source.state and source.state[k].dim() == 4}
    if source_channels and source_channels != {in_channels}:
        (channels,) = source_channels
        if 1 not in (channels, in_channels):
            raise ConfigError(f"{source.path}: {channels}-channel first layer cannot take {in_channels}-channel "
                              "images (colour to grey and grey to colour are adapted, nothing else)")
        first_layer = {"layer": _owner(first_keys[0]), "from_channels": channels, "to_channels": in_channels,
                       "rule": "sum" if in_channels == 1 else "mean"}
    errors = {}
    for size in sizes:
        head = sorted({_owner(k) for k in keys_shaped_by("num_classes", source.model, source.model_options, size)})
        spec = TransferSpec.from_dict({"source": source.record(), "mode": mode, "head": head, "input_size": size,
                                       "first_layer": first_layer, "freeze_until": freeze_until,
                                       "lr_backbone": lr_backbone})
        with torch.device("meta"):
            candidate = get_model(source.model, num_classes=num_classes, in_channels=in_channels, input_size=size,
                                  **source.model_options)
        try:
            spec.adapted_state(candidate, source.state, source.weights)
            return spec
        except CheckpointError as err:
            errors[size] = err
    # No size fits: the mismatch at the model's native size (what a published checkpoint was made for) says most.
    raise errors.get(native, errors[sizes[-1]])
