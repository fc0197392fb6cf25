"""The hand-crafted filter catalogue, its convolution (checked against PyTorch) and `cnnlab filters`."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.viz.handcrafted import CATALOGUE, apply, load_image, parse_kernel


def test_catalogue_is_the_seed_table():
    kernels = {f.operation.split("\n")[0]: [] for f in CATALOGUE}
    for f in CATALOGUE:
        kernels[f.operation.split("\n")[0]].append(f.kernel.tolist())
    assert kernels["Edge detection"] == [[[1, 0, -1], [0, 0, 0], [-1, 0, 1]], [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
                                         [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]]
    assert kernels["Sharpen"] == [[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]]
    np.testing.assert_allclose(kernels["Box blur"][0], np.full((3, 3), 1 / 9))
    np.testing.assert_allclose(kernels["Gaussian blur 3x3"][0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)


def test_filters_per_channel_match_torch_conv2d():
    image = np.random.default_rng(0).random((9, 11, 3), dtype=np.float32)
    for f in CATALOGUE:
        expected = torch.nn.functional.conv2d(torch.from_numpy(image.transpose(2, 0, 1))[:, None],
                                              torch.from_numpy(f.kernel)[None, None], padding=1)
        np.testing.assert_allclose(apply(image, f.kernel), expected[:, 0].numpy().transpose(1, 2, 0), atol=1e-6)


def test_what_the_filters_do_to_a_flat_image():
    flat = np.full((6, 6, 3), 0.5, dtype=np.float32)
    by_name = {f.operation: f.kernel for f in CATALOGUE}
    inside = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(apply(flat, by_name["Identity"]), flat)
    np.testing.assert_allclose(apply(flat, by_name["Sharpen"])[inside], 0.5, atol=1e-6)  # no edges: unchanged
    np.testing.assert_allclose(apply(flat, by_name["Box blur\n(normalized)"])[inside], 0.5, atol=1e-6)
    for f in CATALOGUE[1:4]:
        np.testing.assert_allclose(apply(flat, f.kernel)[inside], 0, atol=1e-6)  # edge detectors: no edges


@pytest.mark.parametrize("text, message", [
    ("1,2;3", "rows have different lengths [1, 2]"),
    ("1,a,3", "values must be numbers"),
    ("1,2;3,4", "a 2x2 kernel has no centre"),
    ("", "values must be numbers"),
    ("1,nan,1", "values must be finite"),
])
def test_bad_kernels_are_refused_clearly(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_kernel(text)


def test_custom_kernel_parses():
    assert parse_kernel(" 0,-1,0; -1,5,-1 ;0,-1,0").kernel.tolist() == [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]


def test_default_image_is_a_real_photograph():
    image = load_image()
    assert image.shape == (256, 256, 3) and image.dtype == np.float32
    assert 0.1 < image.mean() < 0.9 and image.std() > 0.1


def test_cli_writes_the_table_for_a_user_image(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "table.png"
    assert main(["filters", str(photo), "--kernel", "1,0,-1;2,0,-2;1,0,-1", "--out", str(out)]) == 0
    assert "8 filters on a 60x40 image" in capsys.readouterr().out
    assert Image.open(out).size[1] > Image.open(out).size[0]  # a tall table: one row per filter


def test_large_photos_are_scaled_down(tmp_path):
    photo = tmp_path / "large.jpg"
    Image.new("RGB", (2000, 1000), (200, 100, 50)).save(photo)
    image = load_image(photo)
    assert image.shape == (256, 512, 3)
    np.testing.assert_allclose(image[128, 256], np.array([200, 100, 50]) / 255, atol=0.02)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["filters", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg: no such image file" in capsys.readouterr().err
    assert main(["filters", "--kernel", "1,2;3,4"]) == 2
    assert capsys.readouterr().err.strip() == \
        "cnnlab filters: error: --kernel '1,2;3,4': a 2x2 kernel has no centre; use odd sides (3x3, 5x5, ...)"


def test_cli_default_figure_is_not_show_filters_one(tmp_path, capsys, monkeypatch):
    """`cnnlab filters` and `cnnlab show filters RUN` draw different figures: their default files differ too."""
    monkeypatch.chdir(tmp_path)
    assert main(["filters"]) == 0
    assert capsys.readouterr().out.startswith("wrote handcrafted-filters.png")
    assert (tmp_path / "handcrafted-filters.png").is_file() and not (tmp_path / "filters.png").exists()
