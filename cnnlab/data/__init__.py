"""Datasets (NumPy only: the scratch engine uses this package too)."""

from cnnlab.data.datasets import Split, load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.data.registry import DATASETS, DatasetInfo, dataset_info
# register folder:PATH, shards:PATTERN, hf:PATH, mnist-boxes and mnist-scenes
from cnnlab.data import boxes, folders, huggingface, scenes, shards  # noqa: E402,F401

__all__ = ["DATASETS", "DatasetInfo", "Split", "dataset_info", "load_dataset", "load_mnist", "read_idx"]


def load_mnist(split: str = "train", data_dir=None) -> Split:
    return load_dataset("mnist", split, data_dir)
