"""The elastic distortion of digits (Simard et al. 2003): its field's size in pixels, and that the field moves pixels
by what it says."""

import math

import pytest
import torch

from cnnlab.data import load_mnist
from cnnlab.errors import ConfigError
from cnnlab.train.batches import Augment, TensorSplit
from cnnlab.train.config import recipe_config


@pytest.mark.parametrize("alpha, sigma", [(34.0, 2.0), (10.0, 3.0)])
def test_the_field_has_the_rms_of_smoothed_uniform_noise_in_pixels(alpha, sigma):
    augment = Augment(elastic=alpha, elastic_sigma=sigma)
    field = augment.elastic_field(400, 28, 28, torch.Generator().manual_seed(0))
    pixels = field * torch.tensor([28 / 2, 28 / 2])  # back from affine_grid's units
    radius = math.ceil(3 * sigma)
    inside = pixels[:, radius:28 - radius, radius:28 - radius]  # where the Gaussian sees no border
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    # Each displacement is alpha * sum_ij k_i k_j u_ij with u uniform in [-1, 1] (variance 1/3).
    expected = alpha * math.sqrt(1 / 3) * float((kernel ** 2).sum())
    assert inside.pow(2).mean().sqrt().item() == pytest.approx(expected, rel=0.05)
    # Smoothed: neighbours move together (an unsmoothed field's neighbours are independent).
    right = torch.corrcoef(torch.stack([inside[:, :, :-1].flatten(), inside[:, :, 1:].flatten()]))[0, 1]
    assert right > 0.9


def test_a_field_of_one_pixel_moves_the_image_by_one_pixel(monkeypatch):
    test = TensorSplit(load_mnist("test"), limit=4)
    x = test.normalize(test.images)
    augment = Augment(max_shift=0, elastic=1.0)
    one_pixel_right = torch.zeros(4, 28, 28, 2)
    one_pixel_right[..., 0] = 2 / 28
    monkeypatch.setattr(augment, "elastic_field", lambda n, h, w, generator: one_pixel_right)
    out = augment(x)
    # Each output pixel reads the input one pixel to its right: the digit moves one pixel left.
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-5)
    assert torch.allclose(out[..., -1], x.amin((1, 2, 3))[:, None, None].expand(4, 1, 28), atol=1e-5)


def test_elastic_alone_distorts_and_keeps_the_background():
    test = TensorSplit(load_mnist("test"), limit=16)
    x = test.normalize(test.images)
    out = Augment(elastic=34.0)(x, torch.Generator().manual_seed(0))
    assert Augment(elastic=34.0).max_shift == 0.0  # no shift unless asked: the elastic field is not affine
    assert out.min() >= x.min() - 1e-5
    changed = (out - x).abs().mean((1, 2, 3))
    assert changed.min() > 0.05  # every digit moved


def test_elastic_settings_out_of_range_are_config_errors():
    with pytest.raises(ConfigError, match="augment option 'elastic_sigma' must be a number from 0.5 to 20"):
        recipe_config(augment={"elastic": 34, "elastic_sigma": 0})
    with pytest.raises(ConfigError, match="augment option 'elastic' must be a number from 0 to 100"):
        recipe_config(augment={"elastic": -1})
