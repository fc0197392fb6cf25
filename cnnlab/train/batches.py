"""Mini-batches from a dataset held in memory as one uint8 tensor.

Normalization and augmentation are tensor ops on the whole mini-batch, but for the random crop and flip: one copy
of each image's window (normalized on its way when images are large), into a batch of floats the split reuses.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data import Split
from cnnlab.data.preprocess import normalize, per_channel
from cnnlab.errors import ConfigError


class TensorSplit:
    """A dataset split as tensors on a device: images uint8 [N, C, H, W], labels as its task lays them out
    (cnnlab.tasks): a class [N], a class map [N, H, W], a class and a box [N, 5]."""

    def __init__(self, split: Split, device: torch.device | str = "cpu", limit: int | None = None,
                 labels_per_class: int | None = None, seed: int = 0):
        images, labels = chosen_rows(split, limit, labels_per_class, seed)
        self.images = torch.from_numpy(np.array(images)).to(device)  # a writable copy: the cached split is read-only
        self.labels = torch.from_numpy(np.array(labels)).to(device)
        self.info = split.info
        self.mean, self.std = split.info.mean, split.info.std

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def normalize(self, images_uint8: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return normalize(images_uint8, self.mean, self.std, out)

    @functools.cached_property
    def _floats(self) -> "ReusedBatch":
        return ReusedBatch()

    def inputs(self, pixels: torch.Tensor, generator: torch.Generator | None = None,
               augment: "Augment | None" = None, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """One batch's uint8 `pixels` as the model's inputs: normalized and, with `augment`, augmented (`rows`:
        Augment's), written into this split's reused batch of floats where nothing holds the last one."""
        out = self._floats.empty(pixels.shape, pixels.device)
        if augment is None:
            return self.normalize(pixels, out)
        return augment(pixels, generator, self.mean, self.std, rows=rows, out=out)

    def read(self, shares: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) on the device of each list of indices in `shares`."""
        for idx in shares:
            idx = idx.to(self.labels.device)
            yield self.images[idx], self.labels[idx]

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                augment: "Augment | None" = None, drop_last: bool = False, rank: int = 0, size: int = 1,
                skip: int = 0, resume_state: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized (augmented) batches in a seeded order. With `size` processes, each global batch is drawn
        alike by all and this one (`rank`) reads, normalizes and augments only its contiguous share: one
        process's share of every batch is disjoint from the others', and together they cover the epoch. `skip`
        batches are left out (a run resumed mid-epoch), the generator then set to `resume_state`, where the
        interrupted run had it after them."""
        n = len(self)
        order = torch.randperm(n, generator=generator, device="cpu") if shuffle else torch.arange(n)
        if skip and resume_state is not None:
            generator.set_state(resume_state)
        stop = (n // batch_size) * batch_size if drop_last else n
        starts = range(skip * batch_size, stop, batch_size)
        shares = [share_of(order[start:start + batch_size], rank, size) for start in starts]
        for start, (pixels, labels) in zip(starts, self.read(shares)):
            total = min(batch_size, n - start)
            x = self.inputs(pixels, generator, augment, rows=(share_start(total, rank, size), total))
            # integer labels (classes, uint8 maps of pixel classes) as int64; others (a box's coordinates) as stored
            yield x, labels if labels.is_floating_point() else labels.long()

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)


EVAL_BATCH_BYTES = 2 ** 27  # float32 inputs of one evaluation batch, at most


def eval_batch_size(asked: int, shape: tuple[int, ...]) -> int:
    """`asked` images per evaluation batch, or fewer where images are large: 1,000 photos of 224 px are 600 MB of
    inputs before the first layer's outputs (MNIST's 1,000 digits are 3 MB)."""
    return max(1, min(asked, EVAL_BATCH_BYTES // (4 * math.prod(shape))))


def share_of(batch: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """Process `rank`'s contiguous share of a global batch of `size` processes (shares differ by at most one)."""
    return torch.tensor_split(batch, size)[rank] if size > 1 else batch


def share_start(total: int, rank: int, size: int) -> int:
    """Where process `rank`'s share starts in a global batch of `total`."""
    return sum(len(share) for share in torch.tensor_split(torch.empty(total), size)[:rank])


def chosen_rows(split: Split, limit: int | None, labels_per_class: int | None, seed: int):
    """(images [N, C, H, W], labels) of the split that train: its first `limit`, and of those a balanced pick of
    `labels_per_class` per class. Images on disk stay there."""
    images = split.images if split.images.ndim == 4 else split.images[:, None]
    labels = split.labels
    if limit is not None:
        images = images.head(limit) if hasattr(images, "head") else images[:limit]
        labels = labels[:limit]
    if labels_per_class is not None:
        chosen = balanced_subset(labels, split.info.num_classes, labels_per_class, seed)
        images = images.subset(chosen) if hasattr(images, "subset") else images[chosen]
        labels = labels[chosen]
    return images, labels


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


# Values per image from which crop_and_flip normalizes each image's window on its own rather than the batch first
# (per image, one core, Zen 4: 24 against 48 us at 28 px, where a call per image is the cost; about equal at 64 and
# 96 px; 183 against 419 us at 224 px, where the batch's three passes over memory are).
WINDOW_NORMALIZED = 3 * 80 * 80


class Augment:
    """Random changes to a normalized batch, one draw per image, all as batched tensor ops:

    - a random crop after zero padding (`crop_padding` pixels each side) and a horizontal flip with probability
      `flip`: the ResNet paper's CIFAR recipe (pad 4, flip 0.5). The padding is the normalized zero, the mean
      colour, as in the paper's mean-subtracted images;
    - colour jitter: brightness, contrast and saturation factors drawn from 1 ± each setting, on the pixels in
      [0, 1] (clamped there), as torchvision's ColorJitter;
    - affine jitter: rotation, scale and translation. Pixels moved in from outside take the image's darkest value
      (the background of a digit), as if the digit moved on its canvas. Given no other setting, it shifts by up to
      2 pixels;
    - elastic distortion (Simard et al. 2003): each pixel moves by a random field, uniform in [-1, 1] per pixel,
      smoothed by a Gaussian of width `elastic_sigma` pixels and scaled by `elastic` (alpha, pixels): the
      wobble of a hand's stroke that no affine map makes. Sampled in the same pass as the affine jitter;
    - random erasing (Zhong et al. 2017) with probability `erase`: a rectangle of 2-40% of the image, aspect ratio
      0.3-3.3, set to the normalized zero (the mean colour), so that no one part of an object is relied on.
    """

    AFFINE = ("max_shift", "max_rotate_deg", "max_scale")

    def __init__(self, max_shift: float | None = None, max_rotate_deg: float = 0.0, max_scale: float = 0.0,
                 crop_padding: int = 0, flip: float = 0.0, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, erase: float = 0.0, elastic: float = 0.0, elastic_sigma: float = 4.0):
        others = crop_padding or flip or brightness or contrast or saturation or erase or elastic
        if max_shift is None:
            max_shift = 0.0 if others and not (max_rotate_deg or max_scale) else 2.0
        self.max_shift, self.max_rotate, self.max_scale = max_shift, math.radians(max_rotate_deg), max_scale
        self.crop_padding, self.flip = int(crop_padding), flip
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.erase = erase
        self.elastic, self.elastic_sigma = elastic, elastic_sigma

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, mean=0.0,
                 std=1.0, rows: tuple[int, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """`x` augmented: a normalized batch, or a batch of uint8 pixels, normalized here with `mean` and `std`
        (into `out`, a float32 batch of their shape, where given), in the crop's one copy where there is one:
        normalizing a large batch, then copying it, made two batches of floats. With `rows` (start, total), `x`
        is rows start.. of a batch of `total` images (one process's share): the random numbers are drawn for
        the whole batch and this share's are used, so that shares augment as the whole batch would."""
        draws = Draws(generator, len(x), rows)
        if self.crop_padding or self.flip:
            x = self.crop_and_flip(x, draws, mean, std, out)
        elif x.dtype == torch.uint8:
            x = normalize(x, mean, std, out)
        if self.brightness or self.contrast or self.saturation:
            x = self.jitter_colour(x, draws, mean, std)
        if self.max_shift or self.max_rotate or self.max_scale or self.elastic:
            x = self.warp(x, draws)
        if self.erase:
            x = self.random_erase(x, draws)
        return x

    def crop_and_flip(self, x: torch.Tensor, draws: "Draws", mean=0.0, std=1.0,
                      out: torch.Tensor | None = None) -> torch.Tensor:
        """The random crop of the padded images, then the flip, made as one copy of each image's window (mirrored
        where it flips) into a batch whose padding is zeros: padding the whole batch, cropping it and flipping it
        took three passes over it (0.2 s a batch of 128 images at 224 px on one core, as much as decoding them).
        uint8 pixels are normalized (`mean`, `std`) into `out` (or a new batch): large images in main memory
        window by window, each while it is in the cache, the same numbers as normalizing the batch first without
        its three passes over memory; small ones as a batch first, as a call per image costs more than their
        pixels."""
        n, _, h, w = x.shape
        pad = self.crop_padding
        if pad:  # where the window starts in the padded image: 0 .. 2 * pad
            top, left = draws.mine(torch.randint(0, 2 * pad + 1, (2, draws.total), generator=draws.generator), 1)
            starts = zip(top.tolist(), left.tolist())
        else:
            starts = [(0, 0)] * n
        mirrored = (draws.rand() < self.flip).tolist() if self.flip else [False] * n
        if out is None:
            out = torch.empty(x.shape, dtype=torch.float32 if x.dtype == torch.uint8 else x.dtype, device=x.device)
        # (on a GPU each call is a kernel launch, which costs more than a pass over the batch)
        by_window = x.dtype == torch.uint8 and x.device.type == "cpu" and x[0].numel() >= WINDOW_NORMALIZED
        if x.dtype == torch.uint8 and not by_window:
            x = normalize(x, mean, std)
        if pad and not by_window:
            out.zero_()  # the padding: the normalized zero, the mean colour
        if by_window:  # once for all the windows
            mean, std = per_channel(mean, std, out)
        for i, ((t, l), flip) in enumerate(zip(starts, mirrored)):
            dy, dx = t - pad, l - pad  # the window's offset in the image itself
            rows, cols = slice(max(0, dy), min(h, h + dy)), slice(max(0, dx), min(w, w + dx))
            top_row, first, last = max(0, -dy), max(0, -dx), min(w, w - dx)  # where the image lands in the window
            if flip:  # column j of the flipped window is column w - 1 - j of the window
                first, last = w - last, w - first
            block = x[i, :, rows, cols].flip(-1) if flip else x[i, :, rows, cols]
            window = out[i, :, top_row:top_row + block.shape[1], first:last]
            if not by_window:
                window.copy_(block)
                continue
            if dy or dx:
                out[i].zero_()  # the padding, while the image is in the cache
            normalize(block, mean, std, out=window)
        return out

    def random_erase(self, x: torch.Tensor, draws: "Draws") -> torch.Tensor:
        n, _, h, w = x.shape
        area = (0.02 + draws.rand() * 0.38) * h * w
        aspect = torch.exp(draws.mine(torch.empty(draws.total).uniform_(math.log(0.3), math.log(1 / 0.3),
                                                                        generator=draws.generator)))
        height = (area * aspect).sqrt().round().clamp(1, h)
        width = (area / aspect).sqrt().round().clamp(1, w)
        top = (draws.rand() * (h - height + 1)).floor()
        left = (draws.rand() * (w - width + 1)).floor()
        erased = draws.rand() < self.erase
        rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
        inside = (((rows >= top[:, None]) & (rows < (top + height)[:, None]))[:, :, None]
                  & ((cols >= left[:, None]) & (cols < (left + width)[:, None]))[:, None, :] & erased[:, None, None])
        return x.masked_fill(inside[:, None].to(x.device), 0.0)

    def jitter_colour(self, x: torch.Tensor, draws: "Draws", mean, std) -> torch.Tensor:
        shape = (-1, 1, 1) if isinstance(mean, (tuple, list)) else ()
        mean, std = x.new_tensor(mean).reshape(shape), x.new_tensor(std).reshape(shape)
        pixels = x * std + mean  # in [0, 1]

        def factor(spread: float) -> torch.Tensor:
            return (1 + (draws.rand() * 2 - 1) * spread).to(x)[:, None, None, None]

        def grey(p: torch.Tensor) -> torch.Tensor:  # luminance, as Pillow's "L"; a grey image is its own
            if p.shape[1] != 3:
                return p
            return (p * p.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)

        if self.brightness:
            pixels = (pixels * factor(self.brightness)).clamp(0, 1)
        if self.contrast:
            level = grey(pixels).mean((1, 2, 3), keepdim=True)
            pixels = ((pixels - level) * factor(self.contrast) + level).clamp(0, 1)
        if self.saturation and x.shape[1] == 3:
            level = grey(pixels)
            pixels = ((pixels - level) * factor(self.saturation) + level).clamp(0, 1)
        return (pixels - mean) / std

    def warp(self, x: torch.Tensor, draws: "Draws") -> torch.Tensor:
        """The affine jitter and the elastic distortion, as one resampling of the image."""
        n, _, h, w = x.shape

        def uniform(limit: float) -> torch.Tensor:
            return (draws.rand() * 2 - 1) * limit

        angle, scale = uniform(self.max_rotate), 1 + uniform(self.max_scale)
        # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2s / size.
        tx, ty = uniform(self.max_shift) * 2 / w, uniform(self.max_shift) * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if self.elastic:
            grid = grid + draws.mine(self.elastic_field(draws.total, h, w, draws.generator)).to(x)
        return resampled(x, grid)

    def elastic_field(self, n: int, h: int, w: int, generator: torch.Generator | None) -> torch.Tensor:
        """Displacements (n, h, w, 2) in affine_grid's [-1, 1] units: uniform noise smoothed by a separable
        Gaussian (zero beyond the image, as Simard's), times alpha."""
        radius = min(math.ceil(3 * self.elastic_sigma), max(h, w) - 1)
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-taps ** 2 / (2 * self.elastic_sigma ** 2))
        kernel = kernel / kernel.sum()
        field = torch.rand(n * 2, 1, h, w, generator=generator) * 2 - 1
        field = F.conv2d(field, kernel.view(1, 1, 1, -1), padding=(0, radius))
        field = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        pixels_to_units = torch.tensor([2 / w, 2 / h])
        return field.view(n, 2, h, w).permute(0, 2, 3, 1) * self.elastic * pixels_to_units

    def describe(self) -> dict:
        return {"max_shift": self.max_shift, "max_rotate_deg": math.degrees(self.max_rotate),
                "max_scale": self.max_scale, "crop_padding": self.crop_padding, "flip": self.flip,
                "brightness": self.brightness, "contrast": self.contrast, "saturation": self.saturation,
                "erase": self.erase, "elastic": self.elastic, "elastic_sigma": self.elastic_sigma}


class Draws:
    """The random numbers of one augmented batch of `total` images, of which the images at hand are rows
    start..start + count: each draw is made for the whole batch, and these rows' part of it is used."""

    def __init__(self, generator: torch.Generator | None, count: int, rows: tuple[int, int] | None = None):
        self.generator = generator
        start, self.total = rows if rows is not None else (0, count)
        self.rows = slice(start, start + count)

    def mine(self, drawn: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """These rows' part of a draw for the whole batch (its dimension `dim` runs over the batch)."""
        return drawn[(slice(None),) * dim + (self.rows,)]

    def rand(self) -> torch.Tensor:
        """One uniform number in [0, 1) per image."""
        return self.mine(torch.rand(self.total, generator=self.generator))


MAPPED_AFRESH_BYTES = 32 * 2 ** 20  # glibc's largest M_MMAP_THRESHOLD on 64 bits: larger blocks are mapped each time


class ReusedBatch:
    """Batches of floats in main memory, each handed out again once nothing holds it.

    glibc maps a block as large as a batch of photos (77 MB: 128 images of 224 px) afresh at each request and
    unmaps it when it is freed, so a fresh batch costs its pages again every time: 38 ms of page faults a batch,
    as long as normalizing it. Two are kept, as a loop over batches holds the last one while the next is made.
    Whatever still holds a batch (a list of batches, autograd's saved input, a view of it) keeps it: the
    references to the tensor and to its memory say so, and then another is made."""

    KEPT = 2

    def __init__(self):
        self.kept: list[torch.Tensor] = []

    def empty(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        # A GPU's caching allocator reuses memory already (once its stream is done with it); glibc keeps blocks
        # smaller than its largest mapping threshold in the heap once one of that size was freed.
        if device.type != "cpu" or math.prod(shape) * 4 < MAPPED_AFRESH_BYTES:
            return torch.empty(shape, dtype=torch.float32, device=device)
        for i in range(len(self.kept)):
            if self.kept[i].shape == shape and self._held_here_only(i):
                return self.kept[i]
        self.kept = [*self.kept[-(self.KEPT - 1):], torch.empty(shape, dtype=torch.float32)]
        return self.kept[-1]

    def _held_here_only(self, i: int) -> bool:
        """Whether nothing but this object holds batch `i`: the tensor's one other reference is getrefcount's
        argument, its memory's the storage object asked for."""
        count = getattr(torch._C, "_storage_Use_Count", None)  # torch's own; without it, never reused
        return (count is not None and sys.getrefcount(self.kept[i]) == 2
                and count(self.kept[i].untyped_storage()._cdata) == 2)


def resampled(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The batch sampled bilinearly at `grid` (affine_grid's [-1, 1] coordinates); pixels moved in from outside
    take each image's darkest value, its background: zeros would be grey in normalized units."""
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background
