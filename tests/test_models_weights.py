"""load_weights: torchvision-shaped checkpoints load strictly; anything else fails with one clear line."""

import json

import pytest
import torch
from safetensors.torch import save_file

from cnnlab.errors import CheckpointError
from cnnlab.models import get_model, load_weights

from conftest import MANIFEST



def checkpoint_like_torchvision(tv_name: str) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the names, shapes and dtypes of torchvision's published checkpoint."""
    entries = json.loads(MANIFEST.read_text())["models"][tv_name]["state_dict"]
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) if dtype == "float32"
             else torch.zeros(shape, dtype=torch.int64) for name, shape, dtype in entries}
    for name in state:
        if name.endswith("running_var"):
            state[name] = state[name].abs() + 0.5  # a variance, so that the loaded model computes finite values
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("tv_name,name,options", [("resnet18", "resnet18", {}),
                                                  ("googlenet", "googlenet", {"aux_heads": True})])
def test_torchvision_checkpoints_load_strictly(tmp_path, suffix, tv_name, name, options):
    state = checkpoint_like_torchvision(tv_name)
    path = tmp_path / f"{tv_name}{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = load_weights(get_model(name, num_classes=1000, in_channels=3, **options), path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    logits = model.eval()(torch.ones(1, 3, 64, 64))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_checkpoint_dicts_with_a_state_dict_inside_load(tmp_path):
    torch.manual_seed(0)
    saved = get_model("lenet5").state_dict()
    torch.save({"state_dict": saved, "epoch": torch.tensor(3)}, tmp_path / "run.pt")
    torch.manual_seed(1)
    fresh = get_model("lenet5")
    assert not torch.equal(fresh.f6.weight, saved["f6.weight"])  # otherwise loading would change nothing visible
    loaded = load_weights(fresh, tmp_path / "run.pt").state_dict()
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key


def test_mismatches_are_listed_in_one_line(tmp_path):
    torch.save(get_model("googlenet", 1000, 3, aux_heads=True).state_dict(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError) as err:
        load_weights(get_model("googlenet", 10, 3), tmp_path / "g.pth")
    message = str(err.value)
    assert "\n" not in message
    assert "20 unexpected (aux1.conv.conv.weight" in message  # the auxiliary heads the model was built without
    assert "2 mis-shaped (fc.weight (1000, 1024) vs model (10, 1024), fc.bias (1000,) vs model (10,))" in message
    state = get_model("lenet5").state_dict()
    del state["f6.bias"]
    torch.save(state, tmp_path / "l.pth")
    with pytest.raises(CheckpointError, match=r"1 missing \(f6.bias\)"):
        load_weights(get_model("lenet5"), tmp_path / "l.pth")


class NotATensor:
    pass


def test_unsafe_or_broken_files_are_refused(tmp_path):
    torch.save({"weight": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_weights(get_model("lenet5"), tmp_path / "pickled.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        load_weights(get_model("lenet5"), tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(get_model("lenet5"), tmp_path / "missing.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict of tensors"):
        load_weights(get_model("lenet5"), tmp_path / "list.pth")
