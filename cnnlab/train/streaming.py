"""Mini-batches read from disk by index: a dataset of any size trains in the memory of a few batches.

A split whose images are kept on disk (cnnlab.data.stored: a folder's decoded cache, or its files decoded when
read) is read a batch at a time, in the order and with the augmentation `TensorSplit` gives the same images held
in memory: the same seed gives the same batches, bit for bit, whichever way the images come. With workers, a
`DataLoader` reads (decodes) the next batches in other processes while this one trains; the order and the
augmentation are drawn here, so that the number of workers changes nothing but the speed. On CUDA the batches
come through pinned memory, copied without blocking.

Which way a split goes (`split_for`): a registered dataset (MNIST, CIFAR, ...) is held in memory, as is a folder
small enough to live on the GPU it trains on; every other folder is streamed, so that memory does not grow with
the dataset. Tar shards (`shards:PATTERN`, cnnlab.data.shards) are read in sequence only: `ShardSplit` streams
them, each process its own shards, shuffled through a buffer.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

from cnnlab.data import Split
from cnnlab.data.shards import Decoder, ShardImages, raw_samples, shuffled
from cnnlab.data.stored import DecodedFiles, StoredImages
from cnnlab.errors import DatasetError
from cnnlab.train.batches import TensorSplit, chosen_rows, share_of, share_start

ON_GPU_BYTES = 2 * 2 ** 30  # a folder up to this size is copied to the GPU whole: no reading during training
MAX_AUTO_WORKERS = 8


def split_for(split: Split, device: torch.device | str = "cpu", limit: int | None = None,
              labels_per_class: int | None = None, seed: int = 0, workers: int | None = None) -> TensorSplit:
    """The split as batches: held in memory (`TensorSplit`) or read from disk (`StreamSplit`)."""
    device = torch.device(device)
    if isinstance(split.images, ShardImages):
        return ShardSplit(split, device, limit, labels_per_class, workers)
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


class _ShardStream(torch.utils.data.IterableDataset):
    """One process's endless stream of batches of `share` images from its shards: each pass over them (a cycle)
    shuffles the shard list with (seed, cycle), takes every `size`-th shard from `rank` and, in a DataLoader
    worker, every workers-th of those; samples pass through a shuffle buffer seeded with (seed, cycle, rank,
    worker). The first `skip` batches of the epoch (a resumed run) are read but neither decoded nor yielded."""

    def __init__(self, paths, decoder: Decoder, seed: int, rank: int, size: int, share: int, buffer: int,
                 skip: int):
        self.paths, self.decoder, self.seed, self.rank, self.size = paths, decoder, seed, rank, size
        self.share, self.buffer, self.skip = share, buffer, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # A DataLoader takes batch j from worker j % workers; resumed at batch `skip`, its first worker plays the
        # part of the one whose turn batch `skip` was.
        worker = (worker + self.skip) % workers
        skipped = len(range(worker, self.skip, workers)) * self.share
        images, labels = [], []
        for n, (image, label) in enumerate(self._samples(worker, workers)):
            if n < skipped:
                continue
            images.append(self.decoder.image(image))
            labels.append(self.decoder.label(label))
            if len(images) == self.share:
                yield torch.from_numpy(np.stack(images)), torch.tensor(labels)
                images, labels = [], []

    def _samples(self, worker: int, workers: int):
        for cycle in itertools.count():
            order = np.random.default_rng([self.seed, cycle]).permutation(len(self.paths))
            mine = [self.paths[i] for i in order[self.rank::self.size][worker::workers]]
            rng = np.random.default_rng([self.seed, cycle, self.rank, worker])
            yield from shuffled(raw_samples(mine), self.buffer, rng)


class ShardSplit(TensorSplit):
    """A split kept in tar shards: read in order for evaluation, streamed shuffled for training (cnnlab.data.shards
    says how). An epoch is len // batch_size full batches in every process."""

    def __init__(self, split: Split, device: torch.device | str = "cpu", limit: int | None = None,
                 labels_per_class: int | None = None, workers: int | None = None):
        if labels_per_class is not None:
            raise DatasetError(f"{split.info.name}: --labels-per-class picks images by index; shards are read in "
                               "sequence (write the pick out as its own shards)")
        images, labels = chosen_rows(split, limit, None, 0)
        self.images, self.labels = images, torch.from_numpy(np.array(labels))
        self.device = torch.device(device)
        from cnnlab.data.folders import workers as cores

        self.workers = min(MAX_AUTO_WORKERS, cores()) if workers is None else workers
        self.info = split.info
        self.mean, self.std = split.info.mean, split.info.std

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return max(1, len(self) // batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                augment=None, drop_last: bool = False, rank: int = 0, size: int = 1, skip: int = 0,
                resume_state: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not shuffle:  # evaluation: every image once, in order
            for start in range(0, len(self), batch_size):
                pixels = torch.from_numpy(self.images[start:start + batch_size]).to(self.device)
                yield self.inputs(pixels), self.labels[start:start + batch_size].to(self.device)
            return
        seed = int(torch.randint(2 ** 62, (1,), generator=generator))  # this epoch's: drawn like a permutation
        if skip and resume_state is not None:
            generator.set_state(resume_state)
        shards = self.images.shards
        if len(shards.paths) < size:
            raise DatasetError(f"{self.info.name}: {len(shards.paths)} shard(s) for {size} processes: each process "
                               "reads whole shards, so it needs at least one")
        share = len(share_of(torch.arange(batch_size), rank, size))
        stream = _ShardStream(shards.paths, self.images.dataset.decoder, seed, rank, size, share,
                              self.images.dataset.settings["shuffle_buffer"], skip)
        workers = min(self.workers, len(shards.paths) // size)  # every worker needs a shard of its own
        pinned = self.device.type == "cuda"
        batches = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pinned,
                                              generator=torch.Generator(), prefetch_factor=4 if workers else None)
        rows = (share_start(batch_size, rank, size), batch_size)
        for _, (pixels, labels) in zip(range(skip, self.num_batches(batch_size)), batches):
            pixels = pixels.to(self.device, non_blocking=pinned)
            x = self.inputs(pixels, generator, augment, rows)
            yield x, labels.to(self.device, non_blocking=pinned)
