"""Datasets (NumPy only: the scratch engine uses this package too)."""

from cnnlab.data.datasets import Split, load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.data.registry import DATASETS, DatasetInfo, dataset_info
from cnnlab.data import boxes, folders, scenes  # noqa: E402,F401  (register folder:PATH, mnist-boxes, mnist-scenes)

__all__ = ["DATASETS", "DatasetInfo", "Split", "dataset_info", "load_dataset", "load_mnist", "read_idx"]


def load_mnist(split: str = "train", data_dir=None) -> Split:
    return load_dataset("mnist", split, data_dir)
