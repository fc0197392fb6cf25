"""Mini-batches read from disk by index: a dataset of any size trains in the memory of a few batches.

A split whose images are kept on disk (cnnlab.data.stored: a folder's decoded cache, or its files decoded when
read) is read a batch at a time, in the order and with the augmentation `TensorSplit` gives the same images held
in memory: the same seed gives the same batches, bit for bit, whichever way the images come. With workers, a
`DataLoader` reads (decodes) the next batches in other processes while this one trains; the order and the
augmentation are drawn here, so that the number of workers changes nothing but the speed. On CUDA the batches
come through pinned memory, copied without blocking.

Which way a split goes (`split_for`): a registered dataset (MNIST, CIFAR, ...) is held in memory, as is a folder
small enough to live on the GPU it trains on; every other folder is streamed, so that memory does not grow with
the dataset.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from cnnlab.data import Split
from cnnlab.data.stored import DecodedFiles, StoredImages
from cnnlab.train.batches import TensorSplit, chosen_rows

ON_GPU_BYTES = 2 * 2 ** 30  # a folder up to this size is copied to the GPU whole: no reading during training
MAX_AUTO_WORKERS = 8


def split_for(split: Split, device: torch.device | str = "cpu", limit: int | None = None,
              labels_per_class: int | None = None, seed: int = 0, workers: int | None = None) -> TensorSplit:
    """The split as batches: held in memory (`TensorSplit`) or read from disk (`StreamSplit`)."""
    device = torch.device(device)
    images, _ = chosen_rows(split, limit, labels_per_class, seed)
    if isinstance(images, StoredImages) and not (device.type == "cuda" and images.nbytes <= ON_GPU_BYTES):
        return StreamSplit(split, device, limit, labels_per_class, seed, workers)
    return TensorSplit(split, device, limit, labels_per_class, seed)


def auto_workers(images: StoredImages, device: torch.device) -> int:
    """Processes to read batches ahead: files decoded on the fly want every core; a cache read from the page
    cache costs a copy, worth moving off the training process only when a GPU does the training."""
    from cnnlab.data.folders import workers as cores

    if isinstance(images.rows, DecodedFiles):
        return min(MAX_AUTO_WORKERS, cores())
    return 1 if device.type == "cuda" else 0


class _ByIndex(torch.utils.data.Dataset):
    """What a DataLoader worker reads: uint8 images by index, a batch at a time."""

    def __init__(self, images: StoredImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, positions: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.images.take(positions))


def _as_is(batch: torch.Tensor) -> torch.Tensor:
    return batch


class StreamSplit(TensorSplit):
    """A split read from disk a batch at a time: `images` are on disk (cnnlab.data.stored.StoredImages), the
    labels in memory on the CPU. Batches as `TensorSplit`'s, from `workers` processes (None: `auto_workers`)."""

    def __init__(self, split: Split, device: torch.device | str = "cpu", limit: int | None = None,
                 labels_per_class: int | None = None, seed: int = 0, workers: int | None = None):
        images, labels = chosen_rows(split, limit, labels_per_class, seed)
        self.images = images
        self.labels = torch.from_numpy(np.array(labels))
        self.device = torch.device(device)
        self.workers = auto_workers(images, self.device) if workers is None else workers
        self.info = split.info
        self.mean, self.std = split.info.mean, split.info.std

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def read(self, shares: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pinned = self.device.type == "cuda"
        if self.workers and len(shares) > 1:
            # its own generator: a DataLoader seeds its workers from the global one otherwise, which would change
            # the random numbers (dropout) the training draws next
            batches = torch.utils.data.DataLoader(
                _ByIndex(self.images), batch_sampler=[share.tolist() for share in shares],
                num_workers=min(self.workers, len(shares)), collate_fn=_as_is, pin_memory=pinned,
                generator=torch.Generator(), prefetch_factor=4)
        else:
            batches = (torch.from_numpy(self.images.take(share.numpy())) for share in shares)
        for share, pixels in zip(shares, batches):
            if pinned and not pixels.is_pinned():
                pixels = pixels.pin_memory()
            yield pixels.to(self.device, non_blocking=pinned), self.labels[share].to(self.device, non_blocking=pinned)
