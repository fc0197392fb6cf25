"""Datasets (NumPy only: the scratch engine uses this package too).

    test = cnnlab.data.load("mnist", "test")     # images uint8 [10000, 28, 28], labels, .info (classes, mean, std)
"""

import dataclasses

from cnnlab.data.datasets import Split, load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.data.registry import DATASETS, DatasetInfo, dataset_info
# register folder:PATH, shards:PATTERN, hf:PATH, mnist-boxes and mnist-scenes
from cnnlab.data import boxes, folders, huggingface, scenes, shards  # noqa: E402,F401

__all__ = ["DATASETS", "DatasetInfo", "Split", "dataset_info", "load", "load_dataset", "load_mnist", "read_idx"]


def load(name: str, split: str = "train", limit: int | None = None, data_dir=None, **options) -> Split:
    """A dataset's split in memory, as `cnnlab train --dataset NAME` reads it: images uint8 [N, H, W] (or
    [N, C, H, W]), labels [N], and `.info` (classes, normalization); its first `limit` items only, if given.
    `name` is a registered dataset (`cnnlab data` lists them) or folder:PATH; `options` a generated one's settings.

    >>> test = cnnlab.data.load("mnist", "test", limit=100)
    >>> test.images.shape, test.info.classes[:3]
    ((100, 28, 28), ('0', '1', '2'))
    """
    data = load_dataset(name, split, data_dir, quiet=True, options=options or None, limit=limit)
    if limit is not None and len(data) > limit:
        data = dataclasses.replace(data, images=data.images[:limit], labels=data.labels[:limit])
    return data


def load_mnist(split: str = "train", data_dir=None) -> Split:
    return load_dataset("mnist", split, data_dir)
