import json

import pytest
import torch

from cnnlab.data import load_mnist
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.train.batches import Augment, TensorSplit
from cnnlab.train.config import TrainConfig, recipe_config
from cnnlab.train.runs import Run, read_weights
from cnnlab.train.trainer import Trainer, evaluate

SMALL = dict(train_limit=2000, test_limit=2000, epochs=3, batch_size=32, lr=3e-3, threads=1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    trainer = Trainer(recipe_config(**SMALL), name="small", runs_dir=runs_dir, progress=False)
    return trainer, trainer.fit()


def test_small_real_run_learns_mnist(small_run):
    _, result = small_run
    # 2,000 real MNIST images, 3 epochs, ~3 s: measured 93.7-94.7% over seeds 0-2.
    assert result.final_test_acc >= 0.92
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_run_folder_contents(small_run):
    _, result = small_run
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "model.safetensors", "best.safetensors", "curves.png",
            "confusion.png", "mistakes.png", "summary.md"} <= names
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds",
                            "images_per_s"}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["_meta"]["torch"] == torch.__version__ and config["train_limit"] == 2000


def test_checkpoint_round_trip(small_run):
    trainer, result = small_run
    model = Run.open(result.run_dir).build_model()
    test = TensorSplit(load_mnist("test"), limit=2000)
    reloaded = evaluate(model, test)
    # The trainer evaluated in channels_last, the reloaded model runs NCHW: equal up to float rounding.
    torch.testing.assert_close(reloaded.logits, result.final.logits, atol=1e-4, rtol=1e-5)
    assert torch.equal(reloaded.predictions, result.final.predictions)
    tensors, metadata = read_weights(result.run_dir / "model.safetensors")
    assert metadata["model"] == "simple-cnn" and metadata["input_shape"] == [1, 28, 28] and metadata["epoch"] == 3
    assert set(tensors) == set(trainer.engine.model.state_dict())


def test_config_reproduces_the_run(small_run):
    _, result = small_run
    config = TrainConfig.load(result.run_dir / "config.json")
    assert config == recipe_config(**SMALL)


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    outputs = []
    for name in ("a", "b"):
        config = recipe_config(**{**SMALL, "epochs": 2, "train_limit": 1000, "test_limit": 500})
        run_dir = Trainer(config, name=name, runs_dir=tmp_path, progress=False).fit().run_dir
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        for row in rows:
            del row["seconds"], row["images_per_s"]
        outputs.append((rows, read_weights(run_dir / "model.safetensors")[0]))
    (rows_a, weights_a), (rows_b, weights_b) = outputs
    assert rows_a == rows_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_augment_without_jitter_is_identity_and_shift_keeps_the_background():
    test = TensorSplit(load_mnist("test"), limit=8)
    x = test.normalize(test.images)
    assert torch.allclose(Augment(max_shift=0)(x), x, atol=1e-5)
    shifted = Augment(max_shift=3, max_rotate_deg=10)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(shifted, x)
    assert shifted.min() >= x.min() - 1e-5  # uncovered pixels are background, not a new value
    assert (shifted - x).abs().sum((1, 2, 3)).min() > 0  # every image moved


def test_invalid_settings_are_config_errors():
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        recipe_config(epochs=0)
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'"):
        recipe_config(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="unknown recipe 'fastest'"):
        recipe_config("fastest")
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"epoch": 3})


def test_broken_run_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder"):
        Run.open(tmp_path / "missing")
    (tmp_path / "r").mkdir()
    with pytest.raises(CheckpointError, match="not a run folder"):
        Run.open(tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Run.open(tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text(json.dumps(recipe_config().to_dict()))
    (tmp_path / "r" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        Run.open(tmp_path / "r").build_model()


def test_given_model_with_frozen_layers_stays_frozen():
    from cnnlab.models import get_model

    model = get_model("simple-cnn", batch_norm=True)
    for module in (model.conv1, model.bn1):
        for p in module.parameters():
            p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(recipe_config(epochs=1, train_limit=256, test_limit=64, threads=1), progress=False,
                      save=False, model=model)
    trainer.fit()
    after = model.state_dict()
    for key in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["conv2.weight"], after["conv2.weight"])
    assert not torch.equal(before["bn2.running_mean"], after["bn2.running_mean"])
    optimized = {id(p) for group in trainer.engine.optimizer.param_groups for p in group["params"]}
    assert id(model.conv1.weight) not in optimized and id(model.conv2.weight) in optimized


def test_googlenet_auxiliary_heads_train_through_the_trainer():
    config = recipe_config(model="googlenet", model_options={"aux_heads": True}, epochs=1, train_limit=64,
                           test_limit=32, batch_size=32, threads=1)
    trainer = Trainer(config, progress=False, save=False)
    before = trainer.engine.model.aux1.fc2.weight.clone()
    result = trainer.fit()
    assert result.history[0]["train_loss"] > 0
    assert not torch.equal(before, trainer.engine.model.aux1.fc2.weight)  # the auxiliary head learned too
