import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.train.config import recipe_config
from cnnlab.train.trainer import Trainer
from cnnlab.train.weighting import class_weights


def test_inverse_sqrt_frequency_by_hand():
    labels = torch.tensor([0] * 90 + [1] * 10)
    w = class_weights("inverse-sqrt-frequency", labels, 3)
    # frequencies 0.9, 0.1 -> 1/sqrt: 1.0541, 3.1623; the mean weight per label 0.9*1.0541 + 0.1*3.1623 = 1.2649
    assert w.tolist() == pytest.approx([1.0541 / 1.2649, 3.1623 / 1.2649, 0.0], abs=1e-4)
    assert w[labels].mean().item() == pytest.approx(1.0)


def test_inverse_frequency_balances_the_classes():
    labels = torch.tensor([[0, 0, 0], [0, 2, 2]])  # pixel labels: any shape
    w = class_weights("inverse-frequency", labels, 3)
    assert w[1] == 0  # absent: no pixels to weigh, and not 1/0
    assert w[0] * 4 == pytest.approx(w[2] * 2)  # each present class carries the same total weight
    assert w[labels].mean().item() == pytest.approx(1.0)
    assert class_weights("none", labels, 3) is None


def test_the_engine_weighs_the_loss_by_class():
    config = recipe_config("segmentation", model="fcn-8s", dataset_options={}, train_limit=16, test_limit=8, batch_size=16, epochs=1,
                           class_weights="inverse-sqrt-frequency", threads=1, precision="fp32")
    trainer = Trainer(config, save=False, progress=False)
    w = trainer.engine.class_weights
    frequency = torch.bincount(trainer.train_data.labels.flatten().long(), minlength=11).double()
    frequency /= frequency.sum()
    assert w[0] < 1 < 5 < w[1:][frequency[1:] > 0].min()  # background (96% of pixels) weighs least
    x, y = next(trainer.train_data.batches(16))
    trainer.engine.model.train()
    torch.manual_seed(1)  # the same dropout masks in both forward passes
    with torch.no_grad():
        expected = F.cross_entropy(trainer.engine.model(x), y, w, reduction="sum").item() / y[0].numel() / 16
    torch.manual_seed(1)
    loss, _ = trainer.engine.train_batch(x, y)
    assert loss.item() / 16 == pytest.approx(expected, rel=1e-4)  # the step's loss is the weighted one


def test_class_weights_settings_are_checked(capsys):
    with pytest.raises(ConfigError, match="unknown class weights 'balanced'"):
        recipe_config(class_weights="balanced")
    with pytest.raises(ConfigError, match="class weights train with the torch engine"):
        recipe_config(class_weights="inverse-frequency", engine="scratch")
    with pytest.raises(SystemExit) as exit:
        main(["train", "--class-weights", "balanced"])
    assert exit.value.code == 2
    assert "argument --class-weights: invalid choice: 'balanced'" in capsys.readouterr().err


@pytest.mark.parametrize("model, options", [("unet", {"widths": [8, 16, 32]}), ("fcn-8s", {}),
                                            # f*f scores per class: the shift is folded into each of them
                                            ("unet", {"widths": [8, 16], "space_to_depth": 2})])
def test_logit_adjustment_is_folded_into_the_saved_model(model, options, tmp_path):
    config = recipe_config("segmentation", model=model, model_options=options, train_limit=32, test_limit=8,
                           batch_size=16, epochs=1, threads=1, logit_adjustment=True, precision="fp32")
    trainer = Trainer(config, name="adjusted", runs_dir=tmp_path, progress=False)
    trainer.fit()
    engine = trainer.engine
    w = engine.class_weights
    assert engine.logit_shift.tolist() == pytest.approx((-w.log()).tolist())  # every class occurs in 32 scenes
    x, _ = next(trainer.test_data.batches(8))
    engine.model.eval()
    with torch.no_grad():
        raw = engine.model(x)
    adjusted = engine.logits(x)
    assert torch.allclose(adjusted, raw - w.log().view(-1, 1, 1), atol=1e-5)
    assert (adjusted.argmax(1) == 0).sum() > (raw.argmax(1) == 0).sum()  # background wins back pixels
    # The saved model outputs the adjusted logits itself: evaluate, predict and the explorer need nothing else.
    from cnnlab.train.runs import Run

    saved = Run.open(tmp_path / "adjusted").build_model("last")
    with torch.no_grad():
        assert torch.allclose(saved(x), adjusted, atol=1e-5)
    bias = engine.model.get_parameter(engine.output_bias)
    assert torch.equal(bias, engine.state_dict()["model"][engine.output_bias])  # resume: raw


def test_logit_adjustment_settings_are_checked():
    with pytest.raises(ConfigError, match="logit adjustment undoes class weights: give --class-weights too"):
        recipe_config(logit_adjustment=True)
    config = recipe_config(class_weights="inverse-sqrt-frequency", logit_adjustment=True, train_limit=16,
                           test_limit=8, threads=1)
    with pytest.raises(ConfigError, match="logit adjustment needs a model whose last layer adds a bias per class "
                                          r"\(the segmentation models do\); SimpleCNN has none"):
        Trainer(config, save=False, progress=False)
