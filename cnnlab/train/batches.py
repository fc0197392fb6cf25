"""Mini-batches from a dataset held in memory as one uint8 tensor.

Normalization and augmentation are batched tensor ops on the whole mini-batch: no per-sample Python.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data import Split
from cnnlab.data.preprocess import normalize
from cnnlab.errors import ConfigError


class TensorSplit:
    """A dataset split as tensors on a device: images uint8 [N, C, H, W], labels int64 [N]."""

    def __init__(self, split: Split, device: torch.device | str = "cpu", limit: int | None = None,
                 labels_per_class: int | None = None, seed: int = 0):
        images = split.images if split.images.ndim == 4 else split.images[:, None]
        if limit is not None:
            images, labels = images[:limit], split.labels[:limit]
        else:
            labels = split.labels
        if labels_per_class is not None:
            chosen = balanced_subset(labels, split.info.num_classes, labels_per_class, seed)
            images, labels = images[chosen], labels[chosen]
        self.images = torch.from_numpy(np.array(images)).to(device)  # a writable copy: the cached split is read-only
        self.labels = torch.from_numpy(np.array(labels)).to(device)
        self.info = split.info
        self.mean, self.std = split.info.mean, split.info.std

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8, self.mean, self.std)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                augment: "Augment | None" = None, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=generator, device="cpu").to(self.labels.device) if shuffle else None
        stop = (n // batch_size) * batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
            x = self.normalize(self.images[idx])
            if augment is not None:
                x = augment(x, generator)
            yield x, self.labels[idx].long()  # pixel labels are stored as uint8; int64 is a no-op

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)


def balanced_subset(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` examples of every class, drawn without replacement.

    Each class draws from its own generator seeded with (seed, class): a class's pick does not depend on the other
    classes, and with the same seed a larger `per_class` contains the smaller pick (10 labels within the 100).
    """
    picks = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise ConfigError(f"labels-per-class {per_class}: class {c} has only {len(pool)} training images")
        picks.append(pool[np.random.default_rng([seed, c]).permutation(len(pool))[:per_class]])
    return np.sort(np.concatenate(picks))


class Augment:
    """Random affine jitter of a normalized batch: rotation, scale and translation, one draw per image.

    Pixels outside the image take the background value (the normalized zero), as if the digit moved on its
    canvas.
    """

    def __init__(self, max_shift: float = 2.0, max_rotate_deg: float = 0.0, max_scale: float = 0.0):
        self.max_shift, self.max_rotate, self.max_scale = max_shift, math.radians(max_rotate_deg), max_scale

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * limit

        angle, scale = uniform(self.max_rotate), 1 + uniform(self.max_scale)
        # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2s / size.
        tx, ty = uniform(self.max_shift) * 2 / w, uniform(self.max_shift) * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background

    def describe(self) -> dict:
        return {"max_shift": self.max_shift, "max_rotate_deg": math.degrees(self.max_rotate),
                "max_scale": self.max_scale}
