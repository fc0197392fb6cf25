"""`cnnlab export`: ONNX Runtime computes what torch computes, for the small models and one of each zoo family, at any
batch size; an exported MNIST run classifies the test set in ONNX Runtime with the run's own accuracy."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.preprocess import normalize
from cnnlab.export import export_model
from cnnlab.models import get_model
from cnnlab.scratch.gradcheck import relative_error
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer

from conftest import run_in_process

# (model, options, input shape): the lab's small models, and a VGG, GoogLeNet, a ResNet, an FCN and the U-Net at small
# sizes, so that exporting and running each takes a second or two.
MODELS = [
    ("simple-cnn", {"batch_norm": True, "dropout": 0.25}, (1, 28, 28)),
    ("lenet5", {}, (1, 32, 32)),
    ("mlp", {}, (1, 28, 28)),
    ("vgg-a-bn", {}, (3, 32, 32)),
    ("googlenet", {}, (3, 32, 32)),
    ("resnet20", {}, (1, 28, 28)),
    ("fcn-8s", {}, (1, 64, 84)),
    ("unet", {"widths": [4, 8]}, (1, 64, 84)),
]


def session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name, options, shape", MODELS, ids=[m[0] for m in MODELS])
def test_onnx_runtime_computes_what_torch_computes(name, options, shape, tmp_path):
    torch.manual_seed(0)
    model = get_model(name, input_size=shape[-1], in_channels=shape[0], **options).eval()
    path = export_model(model, shape, tmp_path / f"{name}.onnx")
    runtime = session(path)
    for batch in (1, 3):  # the batch size is dynamic: neither is the size it was exported with
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = runtime.run(None, {"image": x.numpy()})
        assert got.shape == expected.shape
        assert relative_error(got, expected) <= 1e-4, (name, batch)


def test_an_exported_run_keeps_its_accuracy_and_says_how_to_feed_it(tmp_path, capsys):
    config = recipe_config(epochs=1, train_limit=2000, test_limit=2000, threads=1, device="cpu")
    result = Trainer(config, name="run", runs_dir=tmp_path, progress=False).fit()
    code, out, err = run_in_process(capsys, "export", result.run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'm.onnx'}"), err
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(metadata["class_names"]) == [str(d) for d in range(10)]
    normalization = json.loads(metadata["normalization"])
    # Only what the metadata says, as a program without cnnlab would: the run's test images through ONNX Runtime.
    test = load_dataset("mnist", "test")
    x = normalize(test.images[:2000], normalization["mean"], normalization["std"])[:, None].astype(np.float32)
    assert list(x.shape[1:]) == json.loads(metadata["input_shape"])
    (logits,) = session(tmp_path / "m.onnx").run(None, {"image": x})
    accuracy = float((logits.argmax(1) == test.labels[:2000]).mean())
    assert accuracy == pytest.approx(result.final_test_acc, abs=1 / 2000)  # at most one borderline image apart
    assert accuracy > 0.5  # a trained model (measured 79.45%: one epoch of 2,000 images); chance is 10%


def test_export_of_a_missing_run_is_one_line(tmp_path, capsys):
    code, _, err = run_in_process(capsys, "export", tmp_path / "nothing")
    assert code == 2 and err.count("\n") == 1 and "no such run folder" in err


@pytest.mark.parametrize("key, edited", [("dataset", "fashion-mnist"), ("model", "deep-cnn")])
def test_a_config_that_is_not_its_weights_is_refused(tmp_path, capsys, key, edited):
    """config.json edited to another dataset (or model) than the one its weights were trained on would give the
    ONNX file that dataset's class names and normalization: refused in one line, nothing written."""
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.engine import build_torch_model
    from cnnlab.train.runs import save_weights, write_json_atomic

    config = TrainConfig()
    run = tmp_path / "run"
    save_weights(run / "model.safetensors", build_torch_model(config).state_dict(),
                 {"model": config.model, "dataset": config.dataset})
    write_json_atomic(run / "config.json", {**config.to_dict(), key: edited})
    code, _, err = run_in_process(capsys, "export", run, "--format", "onnx")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{key} '{edited}', but its weights (model.safetensors) were trained as {key} '{getattr(config, key)}'" \
        in err
    assert not (run / "model.onnx").exists()
