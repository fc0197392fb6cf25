"""What the datasets named by a place share (`folder:PATH`, `shards:PATTERN`, `hf:PATH`): the fields of a
`DatasetInfo`, each found only when read (so that listing runs reads no data), from settings a run records. A run's
recorded classes, mean and std win over what the data holds now, so that its model keeps the inputs it was
trained on when the data changes or moves."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from cnnlab.data.stored import as_channels
from cnnlab.errors import ConfigError

# the settings every such dataset takes, checked by cnnlab.data.folders.check_options
SHARED = ("side", "fit", "color", "classes", "mean", "std")


def with_defaults(options: dict | None, known: dict, kind: str) -> dict:
    """`options` with `known`'s defaults (name -> (default, what it is)) filled in; a ConfigError names an option
    that `kind` does not take."""
    options = dict(options or {})
    for key in options:
        if key not in known:
            raise ConfigError(f"dataset option {key!r}: {kind} has no such option (it takes {', '.join(known)})")
    return {key: options.get(key, default) for key, (default, _) in known.items()}


class PlaceDataset:
    """A subclass says what it holds: `_classes()`, `_has_colour()` (with color "auto") and `_measure_stats()`
    (the per-channel mean and std of its training images); and how to `load` a split."""

    task = "classification"
    files: dict = {}
    sha256: dict = {}
    mirrors: tuple = ()
    settings: dict

    @functools.cached_property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.settings["classes"] or self._classes())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @functools.cached_property
    def channels(self) -> int:
        if self.settings["mean"] is not None:
            return len(self.settings["mean"])
        if self.settings["color"] != "auto":
            return 3 if self.settings["color"] == "rgb" else 1
        return 3 if self._has_colour() else 1

    @functools.cached_property
    def _stats(self) -> tuple[list[float], list[float]]:
        if self.settings["mean"] is not None and self.settings["std"] is not None:
            return self.settings["mean"], self.settings["std"]
        return self._measure_stats()

    @property
    def mean(self) -> float | tuple[float, ...]:
        mean = self._stats[0]
        return mean[0] if len(mean) == 1 else tuple(mean)

    @property
    def std(self) -> float | tuple[float, ...]:
        std = self._stats[1]
        return std[0] if len(std) == 1 else tuple(std)

    def prepare(self, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
        """A user's image made one of this dataset's: resized and cropped or padded alike, grey or colour alike."""
        from cnnlab.data.preprocess import load_photo

        return as_channels(load_photo(source, self.settings["side"], self.settings["fit"], name)[None],
                           self.channels)[0]

    def recorded(self) -> dict:
        """The classes, mean and std a run records in its dataset options."""
        return {"classes": list(self.classes), "mean": list(self._stats[0]), "std": list(self._stats[1])}
