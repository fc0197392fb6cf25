"""Augmentations for photos: the padded random crop and flip of ResNet's CIFAR recipe, colour jitter and random
erasing, as batched tensor ops on normalized batches."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.preprocess import normalize
from cnnlab.errors import ConfigError
from cnnlab.train.batches import Augment
from cnnlab.train.config import recipe_config

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def batch(n=16, seed=0):
    pixels = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 12, 10), dtype=np.uint8))
    return normalize(pixels, MEAN, STD)


def test_each_random_crop_is_a_window_of_the_padded_image():
    x = batch()
    out = Augment(crop_padding=3)(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (3, 3, 3, 3))
    offsets = []
    for image, crop in zip(padded, out):
        found = [(t, l) for t in range(7) for l in range(7) if torch.equal(image[:, t:t + 12, l:l + 10], crop)]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 8  # one draw per image, not one per batch


@pytest.mark.parametrize("mean, std", [(MEAN, STD), (0.13, 0.31)], ids=["colour", "grey"])
@pytest.mark.parametrize("side", [12, 150], ids=["small", "large"])  # large: normalized window by window
@pytest.mark.parametrize("settings", [dict(crop_padding=3, flip=0.5), dict(flip=0.5), dict(crop_padding=2),
                                      dict(crop_padding=3, flip=0.5, brightness=0.4, erase=0.5),
                                      dict(contrast=0.3, max_rotate_deg=5)], ids=str)
def test_uint8_pixels_are_normalized_as_they_are_augmented_to_the_same_bits(mean, std, side, settings):
    """The loaders hand the batch's uint8 pixels to the augmentation, which normalizes them (large images window
    by window in the crop's copy, into the loader's batch): bit for bit what normalizing the batch first gives,
    with the same random draws after it."""
    rng = np.random.default_rng(3)
    channels = 3 if isinstance(mean, tuple) else 1
    pixels = torch.from_numpy(rng.integers(0, 256, (9, channels, side, side - 2), dtype=np.uint8))
    augment = Augment(**settings)
    first = augment(normalize(pixels, mean, std), torch.Generator().manual_seed(5), mean, std, rows=(3, 12))
    fused = augment(pixels, torch.Generator().manual_seed(5), mean, std, rows=(3, 12))
    into = augment(pixels, torch.Generator().manual_seed(5), mean, std, rows=(3, 12),
                   out=torch.full(pixels.shape, float("nan")))
    assert fused.dtype == torch.float32 and torch.equal(fused, first) and torch.equal(into, first)
    # and not by chance: other pixels give other numbers
    assert not torch.equal(augment(pixels ^ 1, torch.Generator().manual_seed(5), mean, std, rows=(3, 12)), first)


def test_flip_flips_the_drawn_images_left_to_right():
    x = batch(400)
    assert torch.equal(Augment(flip=1.0)(x), x.flip(3))
    out = Augment(flip=0.5)(x, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, x))
    assert 160 < sum(flipped) < 240  # half of 400, within 4 standard deviations


def test_colour_jitter_works_on_the_pixels_and_keeps_them_in_range():
    x = batch(64)
    pixels = lambda t: t * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]  # noqa: E731
    out = Augment(brightness=0.5, contrast=0.5, saturation=0.9)(x, torch.Generator().manual_seed(0), MEAN, STD)
    assert pixels(out).min() >= -1e-6 and pixels(out).max() <= 1 + 1e-6
    assert not torch.allclose(out, x)
    brighter = Augment(brightness=0.5)(x, torch.Generator().manual_seed(0), MEAN, STD)
    ratio = pixels(brighter) / pixels(x).clamp(min=1e-3)
    kept = pixels(brighter) < 0.999  # not clamped
    per_image = [r[k & (pixels(x)[n] > 0.05)] for n, (r, k) in enumerate(zip(ratio, kept))]
    assert all(torch.allclose(r, r[0].expand_as(r), atol=1e-3) for r in per_image)  # one factor per image
    grey = normalize(torch.full((4, 3, 5, 5), 100, dtype=torch.uint8), MEAN, STD)
    assert torch.allclose(Augment(saturation=1.0)(grey, None, MEAN, STD), grey, atol=1e-5)  # no colour to change


def test_random_erasing_zeroes_one_rectangle_of_2_to_40_percent_per_drawn_image():
    x = batch(400)
    out = Augment(erase=1.0)(x, torch.Generator().manual_seed(0))
    sizes = set()
    for image, erased in zip(x, out):
        changed = (image != erased).any(0)
        rows, cols = changed.any(1).nonzero()[:, 0], changed.any(0).nonzero()[:, 0]
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert torch.equal(erased[:, top:bottom, left:right], torch.zeros_like(erased[:, top:bottom, left:right]))
        outside = torch.ones_like(changed)
        outside[top:bottom, left:right] = False
        assert torch.equal(erased[:, outside], image[:, outside])  # one rectangle, all channels, nothing else
        area = int((bottom - top) * (right - left))
        assert 1 <= area <= 0.5 * 12 * 10  # 2-40% of the area, rounded to whole rows and columns
        sizes.add((int(bottom - top), int(right - left)))
    assert len(sizes) > 15  # one draw per image
    half = Augment(erase=0.5)(x, torch.Generator().manual_seed(1))
    assert 160 < sum(not torch.equal(o, i) for o, i in zip(half, x)) < 240


def test_without_affine_settings_photos_are_not_shifted():
    x = batch()
    assert torch.equal(Augment(flip=1.0)(x), x.flip(3))  # the 2-pixel shift default is for the affine jitter alone
    assert Augment().max_shift == 2.0 and Augment(flip=0.5, max_rotate_deg=5).max_shift == 2.0


def test_the_options_are_checked_and_train():
    with pytest.raises(ConfigError, match="augment option 'flip' must be a number from 0 to 1, got 2"):
        recipe_config(augment={"flip": 2})
    with pytest.raises(ConfigError, match="augment option 'crop': no such option"):
        recipe_config(augment={"crop": 4})
    from cnnlab.train.trainer import Trainer

    config = recipe_config(augment={"crop_padding": 4, "flip": 0.5, "brightness": 0.2, "erase": 0.5}, epochs=1, train_limit=128,
                           test_limit=128, threads=1)
    result = Trainer(config, save=False, progress=False).fit()
    assert result.history[0]["train_loss"] > 0
