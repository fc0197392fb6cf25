"""The explorer in Chromium on the runs that are not digit classifiers: a segmentation run (a scene in, the class of
every pixel, each class's score map, the up-sampling layer's formula) and a colour run on a folder of photos
(test photos in colour, a photo upload, the first convolution over three channels). The numbers the page shows are
checked against the runs' own models.

CNNLAB_EXPLORER_SCREENSHOTS=docs refreshes docs/explorer-segmentation.png, -scores.png, -upsampling.png,
-colour.png and -colour-conv.png. The segmentation run is tests/test_seg_train.py's short run (FCN-8s, trained once
per session for both files) and finds few digits;
CNNLAB_EXPLORER_SCENES=RUN uses a run of yours instead (the documentation's: `cnnlab segment train --train-limit 8000
--test-limit 200`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.data import load_dataset
from cnnlab.train.config import recipe_config
from cnnlab.train.engine import build_torch_model
from cnnlab.train.runs import Run, save_weights, write_json_atomic
from cnnlab.viz.activations import normalize_input, predict_probabilities
from test_matrix import colour_run  # noqa: F401  (ResNet-20, one epoch on 24 generated photos of three tints)
from test_seg_train import train_short_run
from test_web_browser import (CHROMIUM, browser, open_page, screenshot_between, screenshot_path,  # noqa: F401
                              serve, shown_result, shows_view, wait_for, wait_until, within)

# One xdist worker runs this file, so that its browser and server start, and its segmentation run trains, once.
pytestmark = [pytest.mark.xdist_group("browser-runs"),
              pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (`make test` installs it)"),
              pytest.mark.slow]  # a browser: started first (conftest.py)


def untrained_unet(folder: Path) -> Run:
    """A U-Net run folder with the weights it starts from: the explorer's speed does not depend on training."""
    config = recipe_config("segmentation", model="unet", model_options={}, device="cpu")
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", config.to_dict())
    torch.manual_seed(0)
    model = build_torch_model(config, (1, 64, 84))
    save_weights(folder / "model.safetensors", model.state_dict(), {"model": "unet", "input_shape": [1, 64, 84]})
    return Run.open(folder)


@pytest.fixture(scope="module")
def runs(shared, colour_run) -> tuple[Run, Run, object]:  # noqa: F811
    # The short run names digits, so that the screenshot shows a class map rather than background everywhere.
    scenes = os.environ.get("CNNLAB_EXPLORER_SCENES") or shared.get("seg-short-run", train_short_run)
    colour, photos = colour_run
    return Run.open(scenes), Run.open(colour), photos


@pytest.fixture(scope="module")
def unet(tmp_path_factory) -> Run:
    return untrained_unet(tmp_path_factory.mktemp("explorer-unet") / "unet")


@pytest.fixture(scope="module")
def server(runs, unet):
    scenes, colour, photos = runs
    yield from serve(scenes.path, colour.path, unet.path, "--allow-folder", photos)


def choose(page, run: Run, first_row: str):
    page.select_option("#source", f"run:{run.name}")
    wait_for(page, f".layer[data-layer='{first_row}']")
    wait_until(page, "document.body.dataset.pending === '0'")


def seen_image(page, channels: int) -> np.ndarray:
    """The input the page sends, read back from its 'what the model sees' canvas."""
    data = page.eval_on_selector("#seen", """canvas => Array.from(
        canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)""")
    height, width = page.eval_on_selector("#seen", "canvas => [canvas.height, canvas.width]")
    rgba = np.asarray(data, np.uint8).reshape(height, width, 4)
    return rgba[..., 0] if channels == 1 else rgba[..., :3].transpose(2, 0, 1)


def test_a_segmentation_run_in_the_browser(browser, server, runs, tmp_path):  # noqa: F811
    scenes, _, _ = runs
    page = open_page(browser, server, 1280, reduced_motion=True)
    choose(page, scenes, "scores")
    model, info = scenes.build_model(), scenes.info
    split = load_dataset("mnist-scenes", "test", limit=3, quiet=True)

    # A test scene: its class map beside it, the model's own argmax, with the legend's pixel counts.
    page.click(".examples button[data-index='2']")
    wait_until(page, "document.querySelector('#seen-note').textContent.includes('#2')")
    wait_until(page, "document.body.dataset.pending === '0'")
    scene = seen_image(page, 1)
    assert np.array_equal(scene, split.images[2])
    with torch.inference_mode():
        scores = model(normalize_input(scene, info.mean, info.std))[0]
    expected = scores.argmax(0).numpy()
    shown = np.asarray(page.get_attribute("#class-map", "data-classes").split(","), int).reshape(64, 84)
    assert np.array_equal(shown, expected)
    pixels = [int(p) for p in page.eval_on_selector_all("#probs li", "items => items.map(i => i.dataset.pixels)")]
    assert pixels == np.bincount(expected.ravel(), minlength=11).tolist()
    found = [c for c in range(1, 11) if pixels[c]]
    assert page.inner_text("#prediction") == (" ".join(info.classes[c] for c in sorted(found, key=lambda c: -pixels[c]))
                                              or "no digit")

    # Each class's score map is a map of the row "scores"; a pixel's formula is the softmax over the classes there.
    assert page.locator(".layer[data-layer='scores'] .unit").count() == 11
    digit = max(range(1, 11), key=lambda c: float(scores[c].max()))  # no floor on how well the tiny run learned
    page.click(f".layer[data-layer='scores'] .unit >> nth={digit}")
    shows_view(page, "softmax")
    k, y, x = [int(i) for i in page.get_attribute("#explain", "data-index").split(",")]
    result, actual = shown_result(page)
    assert k == digit and actual == pytest.approx(float(scores[:, y, x].softmax(0)[k]), abs=1e-5)
    assert result == pytest.approx(actual, abs=1e-4)
    assert int(scores[k].flatten().argmax()) == y * 84 + x  # the map opens at its highest score

    # The up-sampling layers are rows of their own; a pixel of one is explained by its transposed convolution.
    ups = [name for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups and all(page.locator(f".layer[data-layer='{name}']").count() == 1 for name in ups)
    page.click(f".layer[data-layer='{ups[-1]}'] .unit >> nth=3")
    shows_view(page, "deconv")
    result, actual = shown_result(page)
    assert result == pytest.approx(actual, abs=1e-4)
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-upsampling.png")))

    # Draw a scene with the mouse: a vertical stroke a third of the canvas tall becomes the input, at 84x64.
    page.locator("#draw").scroll_into_view_if_needed()
    box = page.locator("#draw").bounding_box()
    assert box["width"] / box["height"] == pytest.approx(84 / 64, abs=0.02)
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    for f in np.linspace(0.3, 0.65, 8):
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * f)
    page.mouse.up()
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    wait_until(page, "document.body.dataset.pending === '0'")
    drawn = seen_image(page, 1)
    assert drawn.shape == (64, 84) and drawn[:, 20:30].max() > 128 and drawn[:, 40:].max() == 0
    with torch.inference_mode():
        expected = model(normalize_input(drawn, info.mean, info.std))[0].argmax(0).numpy()
    shown = np.asarray(page.get_attribute("#class-map", "data-classes").split(","), int).reshape(64, 84)
    assert np.array_equal(shown, expected)
    assert page.locator("#occlusion-panel").is_hidden()  # occlusion is a classifier's view

    page.click(".examples button[data-index='2']")
    wait_until(page, "document.querySelector('#seen-note').textContent.includes('#2')")
    wait_until(page, "document.body.dataset.pending === '0'")
    page.click(f".layer[data-layer='scores'] .unit >> nth={digit}")
    shows_view(page, "softmax")
    page.locator("#input-panel").screenshot(path=str(screenshot_path(tmp_path, "explorer-segmentation.png")))
    # the score maps' row and the softmax of the clicked pixel below it (the page is long: FCN-8s has many rows)
    screenshot_between(page, ".layer[data-layer='scores']", "#detail", screenshot_path(tmp_path, "explorer-scores.png"))
    assert page.foreign == [] and page.errors == []
    page.close()


def test_a_colour_run_in_the_browser(browser, server, runs, tmp_path):  # noqa: F811
    _, colour, photos = runs
    page = open_page(browser, server, 1280, reduced_motion=True)
    choose(page, colour, "softmax")
    model, info = colour.build_model(), colour.info
    split = colour.test_split()

    # Test photos in colour; the pen is for digits and says so.
    assert page.locator(".examples button").count() == len(split) == 6
    page.click(".examples button[data-index='1']")
    wait_until(page, "document.querySelector('#seen-note').textContent.includes('#1')")
    wait_until(page, "document.body.dataset.pending === '0'")
    assert np.array_equal(seen_image(page, 3), split.images[1])
    assert page.locator("#draw").is_hidden() and "for digits" in page.inner_text("#draw-note")
    shown = [float(p) for p in page.eval_on_selector_all("#probs li", "items => items.map(i => i.dataset.p)")]
    expected = predict_probabilities(model, info, [split.images[1]])[0]
    assert np.allclose(shown, expected.numpy(), atol=1e-6)

    # The input row has the three colour channels; the first convolution sums over them.
    assert page.locator(".layer[data-layer='input'] .unit").count() == 3
    page.click(".layer[data-layer='conv1'] .unit >> nth=2")
    shows_view(page, "conv")
    result, actual = shown_result(page)
    assert result == pytest.approx(actual, abs=1e-4) and page.locator("#explain > .sum").count() == 3

    # A photo upload: prepared as the folder's images were, classified as predict_probabilities does.
    path = photos / "green" / "003.png"
    page.set_input_files("#upload", str(path))
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('003.png')")
    wait_until(page, "document.body.dataset.pending === '0'")
    prepared = info.prepare(path.read_bytes(), path.name)
    assert np.array_equal(seen_image(page, 3), prepared)
    shown = [float(p) for p in page.eval_on_selector_all("#probs li", "items => items.map(i => i.dataset.p)")]
    assert np.allclose(shown, predict_probabilities(model, info, [prepared])[0].numpy(), atol=1e-6)
    page.locator("#input-panel").screenshot(path=str(screenshot_path(tmp_path, "explorer-colour.png")))
    shows_view(page, "conv")  # the open formula view follows the new input
    assert page.locator("#top-button").is_hidden()  # top activations search single-channel test images only
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-colour-conv.png")))
    assert page.foreign == [] and page.errors == []
    page.close()


def test_a_unet_answers_a_drawn_scene_quickly(browser, server, unet):  # noqa: F811
    """Pointer-up to painted on a U-Net (60 rows of 84x64 maps, sent as thumbnails): p95 within 500 ms, printed
    with the CPU."""
    page = open_page(browser, server, 1280, height=800)
    within(page, f"run:{unet.name}", 6, median=None, worst=500)
    thumbnails = page.eval_on_selector_all(".layer .more", "m => m.map(e => e.textContent)")
    assert any(t.startswith("thumbnails (64×96 maps shown at 32×48)") for t in thumbnails)  # U-Net pads to 96
    assert page.errors == [] and page.foreign == []
    page.close()
