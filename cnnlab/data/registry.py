"""The dataset registry. An IDX dataset in the MNIST layout (KMNIST, EMNIST, ...) is one entry in `DATASETS`."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Callable

from cnnlab.data import cifar
from cnnlab.errors import ConfigError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Archive:
    """One file the mirrors serve holding a dataset's files (CIFAR's .tar.gz, EMNIST's .zip)."""
    name: str
    md5: str  # of the archive: the digest its authors publish
    members: dict[str, str]  # the dataset's file name -> its path inside the archive


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]; used to normalize inputs
    std: float
    files: dict[str, tuple[str, ...]]  # split -> (images file, labels file), decompressed names
    # decompressed file name -> sha256 of its decompressed bytes, or "<file>.gz" -> sha256 of the gzip file where
    # only that is published (KMNIST); a file from a verified archive is checked by its structure alone
    sha256: dict[str, str]
    mirrors: tuple[str, ...]  # base URLs serving "<file>.gz", or the archive
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
    archive: Archive | None = None  # where the mirrors keep the files, if not as "<file>.gz"
    # reads a split's files (paths in `files` order) into (uint8 images, labels); None: IDX images and labels
    read: Callable | None = None
    transposed: bool = False  # IDX images stored column by column (EMNIST)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _mnist_files(prefix: str = "") -> dict[str, tuple[str, str]]:
    return {"train": (f"{prefix}train-images-idx3-ubyte", f"{prefix}train-labels-idx1-ubyte"),
            "test": (f"{prefix}t10k-images-idx3-ubyte", f"{prefix}t10k-labels-idx1-ubyte")}


# CIFAR-100's fine labels, in label order (its binary archive's fine_label_names.txt)
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm""".split())

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
    DatasetInfo(
        name="kmnist",
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # お き す つ な は ま や れ を
        mean=0.1918, std=0.3483,  # as published with the set; not re-measured (the files are not on this machine)
        files=_mnist_files(),
        sha256={  # only the gzip files' digests are published
            "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        source="T. Clanuwat et al., Deep Learning for Classical Japanese Literature (KMNIST, ROIS-DS CODH)",
        licence="CC BY-SA 4.0",
    ),
    DatasetInfo(
        name="emnist-balanced",
        classes=(*"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"abdefghnqrt"),  # 47: look-alike letters merged
        mean=0.1751, std=0.3332,  # as commonly quoted; not re-measured (the files are not on this machine)
        files=_mnist_files("emnist-balanced-"),
        sha256={},  # none per file: the archive's md5 is the published check
        mirrors=("https://biometrics.nist.gov/cs_links/EMNIST/",),
        source="G. Cohen, S. Afshar, J. Tapson, A. van Schaik, EMNIST: an extension of MNIST to handwritten letters",
        licence="public domain (NIST Special Database 19)",
        archive=Archive("gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e",
                        {f: f"gzip/{f}.gz" for split in _mnist_files("emnist-balanced-").values() for f in split}),
        transposed=True,
    ),
    *(DatasetInfo(
        name=f"cifar-{k}",
        classes=classes,
        mean=mean, std=std,  # per channel, as commonly quoted; not re-measured (the set is not on this machine)
        files=files,
        sha256={},  # the archive's md5 is the published check
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        source="A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images (2009)",
        licence="free for research (see the CIFAR page)",
        prepare=cifar.prepare,
        archive=Archive(f"cifar-{k}-binary.tar.gz", md5, {f: f"{folder}/{f}" for split in files.values() for f in split}),
        read=functools.partial(cifar.read_records, label_bytes=label_bytes),
    ) for k, classes, mean, std, files, md5, folder, label_bytes in [
        (10, ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
         (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
         {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
         "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin", 1),
        (100, CIFAR100_CLASSES, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
         {"train": ("train.bin",), "test": ("test.bin",)}, "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary", 2),
    ]),
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
