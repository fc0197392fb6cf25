"""A corpus of malformed inputs: each gets a one-line error naming the input, exit code 2, no traceback,
and leaves no run folder or partial file behind."""

import gzip
import io
import os
import pickle
import shutil
import zlib

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cnnlab.cli import main
from cnnlab.data.datasets import BUNDLED, _load
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import CHECKPOINT, Trainer

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    Trainer(recipe_config(epochs=1, train_limit=64, test_limit=64, threads=1), name="run", runs_dir=root,
            progress=False).fit()
    return root / "run"


def mnist_bytes(file):
    return gzip.decompress((BUNDLED / "mnist" / f"{file}.gz").read_bytes())


def dataset_case(file, mutate):
    def setup(tmp):
        (tmp / "data" / "mnist").mkdir(parents=True)
        (tmp / "data" / "mnist" / file).write_bytes(mutate(mnist_bytes(file)))
        return ["train", "--data-dir", tmp / "data", "--epochs", "1", "--runs-dir", tmp / "runs"]
    return setup


def gzip_bomb(inflated: int) -> bytes:
    """A small gzip that inflates to `inflated` bytes of zeros (made in pieces: never held whole)."""
    packer, out, piece = zlib.compressobj(9, zlib.DEFLATED, 31), [], bytes(16 * 2**20)
    for _ in range(inflated // len(piece)):
        out.append(packer.compress(piece))
    return b"".join(out) + packer.flush()


def special_file(kind):
    """Turn `path` into what a careless or hostile user might name instead of a file."""
    def make(path):
        if path.exists() or path.is_symlink():
            path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        else:
            path.mkdir()
    return make


def dataset_special(kind):
    def setup(tmp):
        (tmp / "data" / "mnist").mkdir(parents=True)
        special_file(kind)(tmp / "data" / "mnist" / IMAGES)
        return ["train", "--data-dir", tmp / "data", "--epochs", "1", "--runs-dir", tmp / "runs"]
    return setup


def config_special(kind):
    def setup(tmp):
        special_file(kind)(tmp / "config.json")
        return ["train", "--config", tmp / "config.json", "--runs-dir", tmp / "runs"]
    return setup


def image_case(payload):
    def setup(tmp, run):
        path = tmp / "digit.png"
        if payload is not None:
            path.write_bytes(payload() if callable(payload) else payload)
        return ["predict", run, path]
    return setup


def config_case(text):
    def setup(tmp):
        path = tmp / "config.json"
        if text is not None:
            path.write_text(text)
        return ["train", "--config", path, "--runs-dir", tmp / "runs"]
    return setup


def args_case(*args):
    return lambda tmp: [*args, "--runs-dir", tmp / "runs"] if "train" in args[:2] else list(args)


def png(size, mode="L", color=255) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def checkpoint_case(mutate):
    return copied_run_case(mutate, lambda tmp, copy: ["evaluate", copy])


def weights(fn):
    def mutate(run):
        tensors = {k: v.clone() for k, v in __import__("safetensors.torch", fromlist=["load_file"])
                   .load_file(run / "model.safetensors").items()}
        save_file(fn(tensors), run / "model.safetensors")
    return mutate


class Exploit:
    """Unpickling it would create `marker`: a file in the test's own folder, so no stale file elsewhere counts."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def metadata(**changes):
    """Rewrite the run's weights with some metadata values changed (a crafted but harmless file)."""
    def mutate(run):
        from cnnlab.train.runs import read_weights, save_weights

        tensors, meta = read_weights(run / "model.safetensors")
        save_weights(run / "model.safetensors", tensors, {**meta, **changes})
    return mutate


def history(value):
    def mutate(run):
        state = torch.load(run / CHECKPOINT, weights_only=True)
        torch.save({**state, "history": value}, run / CHECKPOINT)
    return mutate


def report_case(mutate):
    return copied_run_case(mutate, lambda tmp, copy: ["report", copy, "--out", tmp / "report.html"])


def resume_case(mutate):
    return copied_run_case(mutate, lambda tmp, copy: ["train", "--resume", copy])


def copied_run_case(mutate, command):
    """A copy of the good run, damaged by `mutate`, then given to `command`."""
    def setup(tmp, run):
        copy = tmp / "copy"
        shutil.copytree(run, copy)
        mutate(copy)
        return command(tmp, copy)
    return setup


NEEDS_NO_RUN = {
    # dataset files
    "dataset bad magic": (dataset_case(IMAGES, lambda b: b"\x01\x02" + b[2:]), "bad IDX magic number"),
    "dataset truncated": (dataset_case(IMAGES, lambda b: b[:-100]), "truncated"),
    "dataset trailing bytes": (dataset_case(LABELS, lambda b: b + b"\x00\x01"), "2 unexpected trailing bytes"),
    "dataset unknown dtype": (dataset_case(LABELS, lambda b: b[:2] + b"\x07" + b[3:]), "unknown IDX dtype code 0x07"),
    "dataset empty": (dataset_case(IMAGES, lambda b: b""), "too short for an IDX header"),
    "dataset corrupt gzip": (dataset_case(IMAGES, lambda b: gzip.compress(b[:200_000], compresslevel=1)[:5000]), "corrupt gzip"),
    "dataset wrong count": (dataset_case(LABELS, lambda b: b[:4] + (59999).to_bytes(4, "big") + b[8:-1]),
                            "checksum mismatch"),
    "dataset wrong content": (dataset_case(LABELS, lambda b: b[:8] + bytes(len(b) - 8)), "checksum mismatch"),
    # configs
    "config invalid json": (config_case("{epochs: 3"), "not valid JSON"),
    "config not an object": (config_case("[1, 2]"), "expected a JSON object"),
    "config unknown key": (config_case('{"epoch": 3}'), "unknown setting(s) epoch"),
    "config wrong type": (config_case('{"epochs": "three"}'), 'epochs must be int, got "three"'),
    "config out of range": (config_case('{"epochs": -1}'), "epochs must be at least 1"),
    "config unknown model": (config_case('{"model": "lenet9"}'), "unknown model 'lenet9'"),
    "config missing": (config_case(None), "config.json: file not found"),
    # command-line arguments
    "args epochs 0": (args_case("train", "--epochs", "0"), "epochs must be at least 1"),
    "args lr text": (args_case("train", "--lr", "fast"), "argument --lr: invalid float value"),
    "args batch size 0": (args_case("train", "--batch-size", "0"), "batch size must be at least 1"),
    "args unknown model": (args_case("train", "--model", "resnet9000"), "unknown model 'resnet9000'"),
    "args unknown dataset": (args_case("train", "--dataset", "cifar10"), "unknown dataset 'cifar10'"),
    "args augment not object": (args_case("train", "--augment", "[1]"), "expected a JSON object"),
    "args bad model option": (args_case("train", "--model-options", '{"channels": [8]}'), "model 'simple-cnn'"),
    "args unknown model option": (args_case("train", "--model-options", '{"width": 8}'), "unexpected keyword"),
    "args dataset option": (args_case("train", "--dataset-options", '{"train_scenes": 100}'),
                            "dataset option 'train_scenes': dataset mnist has no such option"),
    "args dataset option value": (args_case("segment", "train", "--dataset-options", '{"train_scenes": -5}'),
                                  "dataset option 'train_scenes' must be a positive integer, got -5"),
    "args device": (args_case("train", "--device", "quantum"), "unknown device 'quantum'"),
    "args nproc 0": (args_case("train", "--nproc-per-node", "0"), "--nproc-per-node must be at least 1"),
    "args smoothing": (args_case("train", "--label-smoothing", "1.5"), "label smoothing must be in [0, 1)"),
    "args schedule": (args_case("train", "--schedule", "linear"), "invalid choice: 'linear'"),
    "args config and recipe": (lambda tmp: [*config_case("{}")(tmp), "--recipe", "best"],
                               "--config and --recipe both set the starting point; give one"),
    "args resume missing": (args_case("train", "--resume", "no/such/run"), "no such run folder"),
    # found by a careless or hostile user: special files, bombs, settings that used to crash much later
    "dataset gzip bomb": (dataset_case(IMAGES, lambda b: gzip_bomb(272 * 2**20)), "decompresses to more than 256 MiB"),
    "dataset header overflow": (dataset_case(LABELS, lambda b: b"\x00\x00\x08\x03" + b"\xff" * 12),
                                "truncated: 16 bytes, expected"),
    "dataset is a fifo": (dataset_special("fifo"), "not a regular file"),
    "dataset is /dev/zero": (dataset_special("zero"), "not a regular file"),
    "dataset is a folder": (dataset_special("folder"), "is a folder"),
    "config is a fifo": (config_special("fifo"), "not a regular file"),
    "config is /dev/zero": (config_special("zero"), "not a regular file"),
    "config is a folder": (config_special("folder"), "is a folder"),
    "config too large": (config_case(" " * (2 * 2**20) + "{}"), "over the 1 MiB limit"),
    "config NaN": (config_case('{"lr": NaN}'), "not valid JSON"),
    "config eval batch 0": (config_case('{"eval_batch_size": 0}'), "eval batch size must be at least 1"),
    "config deep nesting": (config_case("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    "args lr inf": (args_case("train", "--lr", "inf"), "lr must be a finite number"),
    "args lr huge": (args_case("train", "--lr", "1e308"), "lr must be between"),
    "args step size 0": (args_case("train", "--schedule", "step", "--step-size", "0"), "step-size must be between 1"),
    "args device index": (args_case("train", "--device", "cpu:abc"), "unknown device 'cpu:abc'"),
    "args augment key": (args_case("train", "--augment", '{"shift": 2}'), "augment option 'shift': no such option"),
    "args augment infinite": (args_case("train", "--augment", '{"max_shift": Infinity}'),
                              "augment option 'max_shift' must be a number from 0 to 100"),
    "args negative channels": (args_case("train", "--model-options", '{"channels": [-4, 8]}'), "model 'simple-cnn'"),
    "args seed huge": (args_case("train", "--seed", str(10 ** 30)), "seed must be between"),
    "args clean epochs negative": (args_case("train", "--clean-epochs", "-1"), "clean-epochs must be between 0"),
    "args ema 1": (args_case("train", "--ema", "1"), "ema must be a decay in (0, 1), got 1.0"),
    "args name too long": (args_case("train", "--name", "x" * 300), "not a folder name every system takes"),
    "args name with slash": (args_case("train", "--name", "a/b"), "'/' not allowed"),
    "args name reserved": (args_case("train", "--name", "CON"), "not a reserved name such as CON"),
    "args data dir missing": (args_case("train", "--data-dir", "/no/such/folder"), "--data-dir /no/such/folder: no such"),
    "args kernel huge": (args_case("filters", "--kernel", ";".join([",".join(["1"] * 33)] * 33)), "larger than 31x31"),
    "args random filters huge": (args_case("show", "random-filters", "--count", "100000"), "--count must be at most 64"),
    "args runs dir is a file": (lambda tmp: (tmp / "afile").write_text("x") and
                                ["train", "--runs-dir", tmp / "afile"], "is a file, not a folder"),
}

NEEDS_RUN = {
    # images
    "image random bytes": (image_case(os.urandom(64)), "not a readable image"),
    "image empty": (image_case(b""), "empty file"),
    "image missing": (image_case(None), "digit.png: file not found"),
    "image truncated": (image_case(lambda: png((64, 64), color=0)[:60]), "corrupt or truncated"),
    "image blank": (image_case(lambda: png((64, 64))), "no digit found"),
    "image huge": (image_case(lambda: png((7000, 7000), mode="1", color=1)), "pixels is more than"),
    "image text": (image_case(b"hello, I am a text file\n"), "not a readable image"),
    # checkpoints
    "weights wrong keys": (checkpoint_case(weights(lambda t: {("x." + k): v for k, v in t.items()})),
                           "does not fit SimpleCNN: 8 missing"),
    "weights wrong shapes": (checkpoint_case(weights(lambda t: {**t, "fc2.weight": torch.zeros(3, 3)})),
                             "1 mis-shaped (fc2.weight (3, 3) vs model (10, 128))"),
    "weights truncated": (checkpoint_case(lambda r: (r / "model.safetensors").write_bytes(
        (r / "model.safetensors").read_bytes()[:500])), "not a valid safetensors file"),
    "weights are a pickle": (checkpoint_case(lambda r: (r / "model.safetensors").write_bytes(
        pickle.dumps({"fc2.weight": [1, 2]}))), "not a valid safetensors file"),
    "weights missing": (checkpoint_case(lambda r: (r / "model.safetensors").unlink()), "checkpoint not found"),
    "run config broken": (checkpoint_case(lambda r: (r / "config.json").write_text("{")), "not valid JSON"),
    "resume malicious pickle": (resume_case(lambda r: torch.save({"engine": Exploit(r.parent / "pwned")},
                                                                 r / CHECKPOINT)),
                                "refused: not a plain tensor checkpoint"),
    "resume truncated": (resume_case(lambda r: (r / CHECKPOINT).write_bytes((r / CHECKPOINT).read_bytes()[:200])),
                         "unreadable checkpoint"),
    "resume without checkpoint": (resume_case(lambda r: (r / CHECKPOINT).unlink()), "no checkpoint to resume from"),
    "resume with other settings": (lambda tmp, run: ["train", "--resume", run, "--lr", "0.1"], "drop --lr"),
    "weights input shape text": (checkpoint_case(metadata(input_shape="abc")), 'input_shape "abc" in its metadata'),
    "weights input shape huge": (checkpoint_case(metadata(input_shape=[1, 100_000, 100_000])),
                                 "input_shape [1, 100000, 100000] in its metadata is not [C, H, W]"),
    "weights NaN": (checkpoint_case(weights(lambda t: {**t, "fc2.weight": t["fc2.weight"] * float("nan")})),
                    "1 tensor(s) hold NaN or infinite values (fc2.weight)"),
    "weights is a fifo": (checkpoint_case(lambda r: special_file("fifo")(r / "model.safetensors")),
                          "not a regular file"),
    "weights is /dev/zero": (checkpoint_case(lambda r: special_file("zero")(r / "model.safetensors")),
                             "not a regular file"),
    "weights is a folder": (checkpoint_case(lambda r: special_file("folder")(r / "model.safetensors")),
                            "is a folder"),
    "resume history not epochs": (resume_case(history([1, 2, 3])), "its history is not this run's epochs"),
    "resume checkpoint is a fifo": (resume_case(lambda r: special_file("fifo")(r / CHECKPOINT)), "not a regular file"),
    "metrics not UTF-8": (report_case(lambda r: (r / "metrics.jsonl").write_bytes(b"\xff\n")), "not UTF-8 text"),
    "metrics not rows": (report_case(lambda r: (r / "metrics.jsonl").write_text("[1, 2]\n")),
                         "metrics.jsonl:1: not a metrics row"),
    "image huge but small file": (image_case(lambda: png((4472, 4472))), "no digit found"),
}


def folder_case(layout, *extra):
    """`train` on a folder of class sub-folders: class -> number of images, or the bytes of each of its files."""
    def setup(tmp):
        root = tmp / "photos"
        root.mkdir()
        for name, content in layout.items():
            (root / name).mkdir()
            for i, data in enumerate(content if isinstance(content, list) else [png((8, 8), "RGB")] * content):
                (root / name / f"{i}.png").write_bytes(data)
        return ["train", "--dataset", f"folder:{root}", *extra, "--epochs", "1", "--runs-dir", tmp / "runs"]
    return setup


NEEDS_NO_RUN.update({
    "folder missing": (args_case("train", "--dataset", "folder:no/such/folder"), "no/such/folder: no such folder"),
    "folder single class": (folder_case({"cats": 3}), "1 class folder in"),
    "folder no classes": (folder_case({}), "no class folders in"),
    "folder empty class": (folder_case({"cats": 3, "dogs": 0}), "class folder dogs in"),
    "folder class unreadable": (folder_case({"cats": 3, "dogs": [b"GIF89a", b""]}),
                                "no readable image in class folder dogs"),
    "folder option": (folder_case({"cats": 3, "dogs": 3}, "--dataset-options", '{"side": 2}'),
                      "dataset option 'side' must be an integer from 8 to 512, got 2"),
    "folder is a file": (lambda tmp: (tmp / "f").write_text("x") and ["train", "--dataset", f"folder:{tmp / 'f'}",
                                                                     "--runs-dir", tmp / "runs"],
                         "is a file, not a folder of class sub-folders"),
})


def check(capsys, args, message, tmp_path):
    _load.cache_clear()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:
        code = exit.code
    _load.cache_clear()
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed command left a run folder behind"
    assert not list(tmp_path.rglob("*.part"))


def test_corpus_is_large_enough():
    assert len(NEEDS_NO_RUN) + len(NEEDS_RUN) >= 30


@pytest.mark.parametrize("case", NEEDS_NO_RUN)
def test_bad_input(case, capsys, tmp_path):
    setup, message = NEEDS_NO_RUN[case]
    check(capsys, setup(tmp_path), message, tmp_path)


@pytest.mark.parametrize("case", NEEDS_RUN)
def test_bad_input_with_a_run(case, capsys, tmp_path, good_run):
    setup, message = NEEDS_RUN[case]
    check(capsys, setup(tmp_path, good_run), message, tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_the_exploit_runs_when_unpickled(tmp_path):
    """The check above can fail: a plain torch.load of the crafted checkpoint does create the marker."""
    torch.save({"engine": Exploit(tmp_path / "pwned")}, tmp_path / CHECKPOINT)
    torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert (tmp_path / "pwned").exists()
