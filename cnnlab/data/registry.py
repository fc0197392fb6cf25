"""The dataset registry. An IDX dataset in the MNIST layout (KMNIST, EMNIST, ...) is one entry in `DATASETS`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from cnnlab.errors import ConfigError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]; used to normalize inputs
    std: float
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file), decompressed names
    sha256: dict[str, str]  # decompressed file name -> sha256 of its decompressed bytes
    mirrors: tuple[str, ...]  # base URLs serving "<file>.gz"
    source: str
    licence: str
    # generated datasets (in GENERATED, no files): load(split, data_dir, quiet, limit, **options) -> Split replaces
    # the file lookup; `options` names the integer settings it takes (`--dataset-options`), e.g. how many to make
    load: Callable | None = None
    task: str = "classification"  # or "segmentation": labels are [N, H, W] class maps, one per pixel
    options: tuple[str, ...] = ()
    # how a user's image file (path or bytes) becomes one of this dataset's uint8 images ([H, W] or [C, H, W]);
    # None: the MNIST-style digit preparation (cnnlab.data.preprocess.load_digit)
    prepare: Callable | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _mnist_files(prefix: str = "") -> dict[str, tuple[str, str]]:
    return {"train": (f"{prefix}train-images-idx3-ubyte", f"{prefix}train-labels-idx1-ubyte"),
            "test": (f"{prefix}t10k-images-idx3-ubyte", f"{prefix}t10k-labels-idx1-ubyte")}


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo(
        name="mnist",
        classes=tuple("0123456789"),
        mean=0.1307, std=0.3081,
        files=_mnist_files(),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        source="Y. LeCun, C. Cortes, C. J. C. Burges, The MNIST database of handwritten digits",
        licence="CC BY-SA 3.0",
    ),
    DatasetInfo(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        mean=0.2860, std=0.3530,
        files=_mnist_files(),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        source="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST (Zalando SE)",
        licence="MIT",
    ),
]}


# Datasets generated in memory rather than read from IDX files (cnnlab.data.scenes adds mnist-scenes).
GENERATED: dict[str, DatasetInfo] = {}
# Datasets named by a prefix and a place, "folder:PATH" (cnnlab.data.folders): prefix -> (name, options) -> info
PREFIXED: dict[str, Callable] = {}


def dataset_info(name: str, options: dict | None = None) -> DatasetInfo:
    """The dataset `name`; `options` matter to a dataset named by a place (a folder's image side, colour, ...)."""
    if _prefix(name) in PREFIXED:
        return PREFIXED[_prefix(name)](name, options)
    key = name.lower()
    known = {**DATASETS, **GENERATED}
    if key not in known:
        close = difflib.get_close_matches(key, known, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise ConfigError(f"unknown dataset {name!r}{hint}")
    return known[key]


def file_label(name: str) -> str:
    """A dataset's name as part of a file name: a place's last folder ("folder:/data/photos" -> "photos")."""
    if _prefix(name) in PREFIXED:
        return name.split(":", 1)[1].rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or _prefix(name)
    return name


def _prefix(name: str) -> str | None:
    return name.split(":", 1)[0].lower() if ":" in name else None


def check_options(name: str, options: dict | None) -> dict:
    """`options` for dataset `name`, checked: each one it takes, as a positive integer (a folder's: its own)."""
    if _prefix(name) in PREFIXED:
        dataset_info(name, options)  # made only with options it takes
        return options or {}
    info = dataset_info(name)
    options = options or {}
    for key, value in options.items():
        if key not in info.options:
            takes = f"it takes {', '.join(info.options)}" if info.options else "it takes none"
            raise ConfigError(f"dataset option {key!r}: dataset {info.name} has no such option ({takes})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"dataset option {key!r} must be a positive integer, got {value!r}")
    return options
