"""`cnnlab evaluate --tta` and `cnnlab evaluate RUN1 RUN2 ...`: probabilities averaged over shifted (and, for runs
trained with flips, mirrored; for runs trained with scale jitter, zoomed) copies of each image and over several
runs, checked against the same average computed here by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.data import dataset_info, load_dataset
from cnnlab.data.preprocess import normalize
from cnnlab.train.evaluation import SHIFTS, View, averaged, shifted, tta_views, zoomed
from conftest import run_in_process

# One xdist worker runs this file, so that its five runs train once, not once per worker.
pytestmark = pytest.mark.xdist_group("tta-runs")

# Test images evaluated: the loss is compared too, so that a view off by one pixel on any image shows (the
# accuracy alone moves by one image's 1/LIMIT only when a prediction flips).
LIMIT = 500


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list:
    """Five simple-cnn runs of one epoch on 3,000 images (a few seconds each): seeds 0 and 1; seed 0 trained with
    horizontal flips; with scale jitter of 20%; with flips and scale jitter of 10%."""
    from cnnlab.train.runs import Run
    from cnnlab.train.trainer import train

    root = tmp_path_factory.mktemp("tta-runs")
    settings = [(0, None), (1, None), (0, {"flip": 0.5}), (0, {"max_scale": 0.2}), (0, {"flip": 0.5, "max_scale": 0.1})]
    return [Run.open(train("default", name=f"run{i}", runs_dir=root, seed=seed, augment=augment, train_limit=3000,
                           test_limit=500, epochs=1, threads=1, progress=False).run_dir)
            for i, (seed, augment) in enumerate(settings)]


def test_shifted_moves_every_pixel_and_repeats_the_edge():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert shifted(x, 1, 0)[0, 0].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert shifted(x, 0, -1)[0, 0].tolist() == [[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11], [13, 14, 15, 15]]
    assert shifted(x, 0, 0) is x and len(set(SHIFTS)) == 5
    assert shifted(x, 0, 1, True)[0, 0].tolist() == [[3, 3, 2, 1], [7, 7, 6, 5], [11, 11, 10, 9], [15, 15, 14, 13]]


def test_views_mirror_only_for_runs_trained_with_flips_and_zoom_only_for_scale_jitter():
    assert tta_views() == tuple(View(dy, dx) for dy, dx in SHIFTS)
    assert tta_views(True) == (*tta_views(), *(View(dy, dx, True) for dy, dx in SHIFTS))
    zooms = tta_views(max_scale=0.1)[5:]
    assert [view[:3] for view in zooms] == [(0, 0, False)] * 2
    assert [view.zoom for view in zooms] == pytest.approx([1.07, 0.93])
    both = tta_views(True, 0.2)
    assert len(both) == 14 and [(v.mirrored, v.zoom) for v in both[10:]] == [
        (False, pytest.approx(1.14)), (False, pytest.approx(0.86)), (True, pytest.approx(1.14)),
        (True, pytest.approx(0.86))]


def test_zoomed_scales_about_the_centre_and_fills_with_background():
    x = torch.arange(16.0).reshape(1, 1, 4, 4) + 1
    assert torch.allclose(zoomed(x, 1.0), x)
    # zoom 2: output pixel i samples the input at 1.5 + (i - 1.5) / 2, that is 0.75, 1.25, 1.75, 2.25.
    rows = torch.tensor([0.75, 1.25, 1.75, 2.25])
    expected = 1 + 4 * rows[:, None] + rows[None, :]  # bilinear of a linear image is the image itself
    assert torch.allclose(zoomed(x, 2.0)[0, 0], expected)
    # zoom 1/2: the corners sample outside the image and blend in its darkest value, 1.
    out = zoomed(x, 0.5)[0, 0]
    assert out[0, 0] == 1 and out[1, 1] == pytest.approx(1 + 4 * 0.5 + 0.5)


def zoomed_by_hand(x: np.ndarray, zoom: float, background: float) -> np.ndarray:
    """Bilinear samples of (..., h, w) images at c + (i - c) / zoom along each axis, c the centre between pixel
    centres, from the images padded with their background."""
    pad = 4
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2, constant_values=background)

    def taps(n):
        at = (n - 1) / 2 + (np.arange(n) - (n - 1) / 2) / zoom + pad
        low = np.floor(at).astype(int)
        return low, at - low

    (rows, fy), (cols, fx) = taps(x.shape[-2]), taps(x.shape[-1])
    fy, fx = fy[:, None], fx[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return padded[..., (rows + dy)[:, None], (cols + dx)[None, :]]

    return ((1 - fy) * (1 - fx) * corner(0, 0) + (1 - fy) * fx * corner(0, 1) + fy * (1 - fx) * corner(1, 0)
            + fy * fx * corner(1, 1))


def by_hand(models, views) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the first LIMIT test images of the mean softmax over (dy, dx, mirrored, zoom) views, computed
    with torch.roll on zero-padded copies rather than the code under test's replicate padding (MNIST's border
    pixels are background: the same), mirrored by reversing the columns, zoomed by `zoomed_by_hand`."""
    info, test = dataset_info("mnist"), load_dataset("mnist", "test", download=False)
    x = torch.from_numpy(normalize(test.images[:LIMIT], info.mean, info.std))[:, None]
    background = float(x.min())
    total = 0
    with torch.no_grad():
        for model in models:
            for dy, dx, mirrored, zoom in views:
                padded = torch.nn.functional.pad(x[..., range(27, -1, -1)] if mirrored else x, (1, 1, 1, 1),
                                                 value=background)
                moved = torch.roll(padded, (dy, dx), (2, 3))[..., 1:-1, 1:-1]
                if zoom != 1:
                    moved = torch.from_numpy(zoomed_by_hand(moved.numpy(), zoom, background).astype(np.float32))
                total = total + model(moved).softmax(1)
    labels = torch.from_numpy(test.labels[:LIMIT]).long()
    probabilities = total / (len(models) * len(views))
    loss = -probabilities[torch.arange(LIMIT), labels].clamp(min=1e-12).log().mean()
    return float((probabilities.argmax(1) == labels).double().mean()), float(loss)


# The flip-trained run 2 is evaluated on mirror images too, alone; an ensemble with a run that never saw a mirror
# image is not. Runs 3 and 4 (scale jitter 20% and 10%) are evaluated zoomed too, an ensemble of both within 10%.
@pytest.mark.parametrize("which, tta, mirrored, max_scale, count", [
    ([0], True, False, 0, 5), ([0, 1], False, False, 0, 1), ([0, 1], True, False, 0, 5), ([2], True, True, 0, 10),
    ([0, 2], True, False, 0, 5), ([3], True, False, 0.2, 7), ([4], True, True, 0.1, 14),
    ([3, 4], True, False, 0.1, 7), ([2, 4], True, True, 0, 10)])
def test_accuracy_is_the_averaged_probabilities(runs, which, tta, mirrored, max_scale, count, capsys):
    chosen = [runs[i] for i in which]
    code, out, err = run_in_process(capsys, "evaluate", *[r.path for r in chosen], "--limit", LIMIT, "--json",
                                    *(["--tta"] if tta else []))
    assert code == 0, err
    reported = json.loads(out)
    views = tta_views(mirrored, max_scale) if tta else (View(),)
    accuracy, loss = by_hand([r.build_model() for r in chosen], views)
    assert reported["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # one image is 2e-3
    assert reported["loss"] == pytest.approx(loss, rel=1e-4)  # float32 sums in another order
    assert reported["tta"] is tta and reported["views"] == len(views) == count


def test_one_run_without_tta_is_the_model_itself(runs):
    model = runs[0].build_model()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(averaged([model])(x), model(x).log_softmax(1), atol=1e-5)


def test_an_ensemble_of_one_run_twice_is_that_run(runs, capsys):
    single = json.loads(run_in_process(capsys, "evaluate", runs[0].path, "--limit", LIMIT, "--json")[1])
    twice = json.loads(run_in_process(capsys, "evaluate", runs[0].path, runs[0].path, "--limit", LIMIT,
                                      "--json")[1])
    assert twice["accuracy"] == single["accuracy"] and twice["loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_runs_of_different_classes_are_no_ensemble(runs, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(runs[1].path, other)
    config = json.loads((other / "config.json").read_text())
    config["dataset"] = "fashion-mnist"
    (other / "config.json").write_text(json.dumps(config))
    code, _, err = run_in_process(capsys, "evaluate", runs[0].path, other)
    assert code == 2 and "an ensemble's runs classify the same classes" in err and err.count("\n") == 1
