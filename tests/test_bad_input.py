"""A corpus of malformed inputs: each gets a one-line error naming the input, exit code 2, no traceback,
and leaves no run folder or partial file behind."""

import gzip
import io
import os
import pickle
import shutil

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
    def setup(tmp, run):
        copy = tmp / "copy"
        shutil.copytree(run, copy)
        mutate(copy)
        return ["evaluate", copy]
    return setup


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


def resume_case(mutate):
    def setup(tmp, run):
        copy = tmp / "copy"
        shutil.copytree(run, copy)
        mutate(copy)
        return ["train", "--resume", copy]
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
}


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
