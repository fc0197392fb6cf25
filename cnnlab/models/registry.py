"""The model registry: the one place the CLI, the web explorer and the tests find models.

A model file registers a builder with `@register_model("name", ...)`; the builder takes
`num_classes`, `in_channels`, `input_size` (the side of the square input, in pixels) and keyword options,
and returns an `nn.Module`. Models adapt themselves to small inputs (28x28, 32x32) from `input_size`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from cnnlab.errors import ConfigError, first_line


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    family: str
    input_size: tuple[int, int, int]  # (C, H, W) the model was designed for
    num_classes: int = 10  # the class count it was designed for (1000 for ImageNet nets): `cnnlab zoo` counts there
    task: str = "classification"
    description: str = ""
    aliases: tuple[str, ...] = field(default=())


_MODELS: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, family: str, input_size: tuple[int, int, int], num_classes: int = 10,
                   task: str = "classification", description: str = "", aliases: tuple[str, ...] = ()):
    def decorator(builder: Callable) -> Callable:
        for key in (name, *aliases):
            if key in _MODELS or key in _ALIASES:
                raise ValueError(f"model name {key!r} registered twice")
        summary = description or next(iter((builder.__doc__ or "").strip().splitlines()), "")
        _MODELS[name] = ModelEntry(name, builder, family, tuple(input_size), num_classes, task, summary, tuple(aliases))
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return decorator


def resolve_name(name: str) -> str:
    key = name.lower()
    if key in _MODELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, [*_MODELS, *_ALIASES], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see `cnnlab zoo` or list_models())"
    raise ConfigError(f"unknown model {name!r}{hint}")


def model_info(name: str) -> ModelEntry:
    return _MODELS[resolve_name(name)]


def list_models(family: str | None = None, task: str | None = None) -> list[str]:
    """The registered models' names (of a `family`, or for a `task`), in the order they were registered.

    >>> cnnlab.models.list(family="lenet")
    ['lenet5']
    >>> "resnet20" in cnnlab.models.list(task="classification")
    True
    """
    return [n for n, e in _MODELS.items()
            if (family is None or e.family == family) and (task is None or e.task == task)]


def get_model(name: str, num_classes: int = 10, in_channels: int = 1, input_size: int | None = None, **options):
    """Build a registered model, with random weights; `input_size` defaults to the model's native input side.

    >>> model = cnnlab.models.get("resnet20", num_classes=10, in_channels=1, input_size=28)
    >>> sum(p.numel() for p in model.parameters())
    269434
    """
    entry = model_info(name)
    side = entry.input_size[-1] if input_size is None else int(input_size)
    try:
        return entry.builder(num_classes=num_classes, in_channels=in_channels, input_size=side, **options)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError, MemoryError) as err:
        # With options given, a failure to build is the options' fault (a negative width, a huge one); without,
        # it is a bug in the model.
        if not options and "keyword argument" not in str(err):
            raise
        detail = first_line(err, 160) or type(err).__name__
        raise ConfigError(f"model {entry.name!r}: {detail}") from None
