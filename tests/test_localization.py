"""Localization, the lecture's regression task: mnist-boxes (one digit anywhere on a 64x64 canvas, its class and
its box), localizers with a class head and a box head on any registered backbone, their loss and metrics, and
what the commands and the explorer do with a localization run. One small run is trained once for the module
(3,000 images x 2 epochs) and looked at many times; tests/test_matrix.py has every command on a tiny one."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.boxes import INK, SIDE, draw_layout, load_boxes, render
from cnnlab.errors import ConfigError
from cnnlab.models import get_model
from cnnlab.tasks import TASKS
from cnnlab.tasks.localization import corners, evaluate_localization, iou_and_giou, localization_loss
from cnnlab.train.batches import TensorSplit
from cnnlab.train.config import recipe_config
from cnnlab.train.runs import Run
from cnnlab.train.trainer import Trainer
from cnnlab.web import create_app

from conftest import run_in_process

# One xdist worker runs this file, so that its short run trains once, not once per worker.
pytestmark = pytest.mark.xdist_group("localization-short-run")

# The recipe's localizer at a quarter of its width, 2 epochs of 3,000 images (fp32; ~15 s on one idle core).
SMALL = dict(epochs=2, train_limit=3000, test_limit=500, batch_size=32, lr=3e-3, threads=1, device="cpu",
             precision="fp32", seed=0,
             model_options={"backbone_options": {"channels": [16, 32], "batch_norm": True, "strided_first": True},
                            "grid": 4, "hidden": 64})
LOCALIZATION = TASKS["localization"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    trainer = Trainer(recipe_config("localization", **SMALL), name="boxes", runs_dir=tmp_path_factory.mktemp("runs"),
                      progress=False)
    untrained = trainer.task.evaluate(trainer.engine.logits, trainer.test_data, 500)
    return trainer, untrained, trainer.fit()


# -- the dataset ----------------------------------------------------------------------------------------------
def test_images_are_drawn_from_the_seed_and_a_prefix_is_the_smaller_set():
    small, large = load_boxes("test", 40), load_boxes("test", 1040)  # the second crosses a chunk
    assert np.array_equal(small.images, large.images[:40]) and np.array_equal(small.labels, large.labels[:40])
    other = load_boxes("test", 40, seed=1)
    assert not np.array_equal(small.labels, other.labels)
    train = load_boxes("train", 40)
    assert not np.array_equal(small.labels, train.labels)
    assert small.images.shape == (40, SIDE, SIDE) and small.labels.shape == (40, 5)
    assert small.labels.dtype == np.float32 and not small.images.flags.writeable


def test_the_label_is_the_digits_class_and_the_tight_box_around_its_ink():
    mnist = load_dataset("mnist", "test")
    layout = draw_layout(200, len(mnist), 0, "test")
    split = load_boxes("test", 200)
    assert np.array_equal(split.labels[:, 0], mnist.labels[layout["index"]])  # MNIST's own test digits
    for image, label in zip(split.images, split.labels):
        left, top, right, bottom = np.rint(label[1:] * SIDE).astype(int)
        ink = image >= INK
        assert 0 <= left < right <= SIDE and 0 <= top < bottom <= SIDE
        assert ink.sum() == ink[top:bottom, left:right].sum() > 0  # all the ink is inside
        assert ink[top].any() and ink[bottom - 1].any() and ink[:, left].any() and ink[:, right - 1].any()  # tight
    sizes = (split.labels[:, 3:] - split.labels[:, 1:3]) * SIDE
    assert sizes.min() < 12 and sizes.max() > 28  # digits small and large


def test_clutter_adds_ink_outside_the_box_and_keeps_the_digit_and_its_box():
    plain, cluttered = load_boxes("test", 100), load_boxes("test", 100, clutter=4)
    assert np.array_equal(plain.labels, cluttered.labels)
    outside = np.ones_like(plain.images, dtype=bool)
    for mask, label in zip(outside, plain.labels):
        left, top, right, bottom = np.rint(label[1:] * SIDE).astype(int)
        mask[top:bottom, left:right] = False
    assert (plain.images[outside] < INK).all()  # outside its box, a digit has only its faint edge
    assert (cluttered.images[outside] >= INK).sum() > 100 * 20  # 4 fragments of 8x8 add ink
    assert (cluttered.images >= plain.images).all()  # fragments go under the digit: its ink is unchanged


def test_rendering_is_the_digit_scaled():
    """A digit drawn at scale 1 with its corner on whole pixels is the digit itself."""
    digit = load_dataset("mnist", "test").images[:1]
    layout = {"index": np.array([0]), "scale": np.array([1.0]), "top": np.array([5.0]), "left": np.array([9.0]),
              **{key: np.zeros((1, 0), int) for key in ("fragment", "from_y", "from_x", "to_y", "to_x")}}
    images, labels = render(layout, digit, np.array([7]))
    assert np.array_equal(images[0, 5:33, 9:37], digit[0]) and images[0].sum() == digit[0].sum()
    assert labels[0, 0] == 7


# -- boxes, loss, metrics -------------------------------------------------------------------------------------
def test_iou_and_generalized_iou():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 3)
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.75, 0.75, 1.0, 1.0]])
    iou, giou = iou_and_giou(a, b)
    assert torch.allclose(iou, torch.tensor([1.0, 1 / 3, 0.0]))
    # the third pair: the enclosing box is the whole image (1.0), the two boxes cover 0.3125 of it
    assert torch.allclose(giou, torch.tensor([1.0, 1 / 3, -(1 - 0.3125)]))
    assert torch.allclose(corners(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def _output(classes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """A model's output for the given classes and centre-size boxes: a confident score for the class."""
    return torch.cat([torch.nn.functional.one_hot(classes, 10).float() * 20, boxes], 1)


def test_the_loss_is_least_at_the_truth_and_evaluation_counts_iou_from_one_half():
    truth = torch.tensor([[3.0, 0.2, 0.2, 0.4, 0.6], [8.0, 0.3, 0.1, 0.7, 0.3]])
    classes, centred = truth[:, 0].long(), torch.tensor([[0.3, 0.4, 0.2, 0.4], [0.5, 0.2, 0.4, 0.2]])
    right = localization_loss(_output(classes, centred), truth)
    shifted = localization_loss(_output(classes, centred + torch.tensor([0.05, 0, 0, 0])), truth)
    wrong = localization_loss(_output(classes.flip(0), centred), truth)
    assert right < 0.01 < shifted < wrong

    class Fixed:  # a "model" that answers: right classes, the first box exact, the second shifted to IoU 1/3
        def __call__(self, x):
            return _output(classes, centred + torch.tensor([[0.0, 0, 0, 0], [0.2, 0, 0, 0]]))

    data = TensorSplit(load_boxes("test", 2))
    data.labels = truth
    evaluation = evaluate_localization(Fixed(), data, 2)
    assert evaluation.accuracy == 1.0 and evaluation.localization_accuracy == 0.5
    assert evaluation.iou.tolist() == pytest.approx([1.0, 1 / 3])


# -- models ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["simple-cnn", "resnet20", "deep-cnn", "vgg-a", "alexnet"])
def test_a_localizer_on_any_registered_classifier(backbone):
    with torch.device("meta"):  # shapes only
        model = get_model("localizer", num_classes=10, in_channels=1, input_size=64, backbone=backbone)
        assert model(torch.empty(2, 1, 64, 64)).shape == (2, 14)



@pytest.mark.parametrize("backbone, words", [("mlp", "no convolutional layers"), ("unet", "a backbone is a classifier")])
def test_a_backbone_that_is_not_a_convolutional_classifier_is_one_line(backbone, words):
    with pytest.raises(ConfigError, match=words):
        get_model("localizer", backbone=backbone)


def test_settings_a_localization_run_does_not_take_are_one_line():
    for settings, words in [({"engine": "scratch"}, "torch engine only"), ({"augment": {"max_shift": 2}}, "boxes"),
                            ({"class_weights": "inverse-frequency"}, "--class-weights"),
                            ({"dataset": "mnist"}, "does localization but dataset 'mnist' is for classification")]:
        with pytest.raises(ConfigError, match=words):
            Trainer(recipe_config("localization", **settings, train_limit=8, test_limit=8), save=False)


# -- a short run ----------------------------------------------------------------------------------------------
def test_a_short_run_learns_the_class_and_the_box(short_run):
    trainer, untrained, result = short_run
    final = result.final
    # 2 epochs of 3,000 images, over seeds 0-4 x 1 and 2 threads and with AVX2's kernels (1 thread): localization
    # accuracy 0.636-0.762, mean IoU 0.699-0.727, class accuracy 0.720-0.824; untrained: 0.006-0.012, 0.22, 0.07-0.12
    # (AMD EPYC Zen 4, shared).
    assert final.localization_accuracy > 0.55 and final.mean_iou > 0.65 and final.accuracy > 0.65
    assert untrained.localization_accuracy < 0.55 and untrained.mean_iou < 0.65  # the floors fail an untrained net
    row = result.history[-1]
    assert row["test_loc_acc"] == final.localization_accuracy and row["test_box_iou"] == final.mean_iou
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"curves.png", "boxes.png", "mistakes.png", "summary.md", "best.safetensors"} <= names
    assert "localization accuracy **" in (result.run_dir / "summary.md").read_text()


def test_evaluate_and_predict_a_digit_drawn_anywhere(short_run, tmp_path, capsys):
    _, _, result = short_run
    run = result.run_dir
    code, out, _ = run_in_process(capsys, "evaluate", run, "--json", "--limit", 500)  # the run's test images
    numbers = json.loads(out)
    assert code == 0 and numbers["localization_accuracy"] == pytest.approx(result.final.localization_accuracy)
    # a test digit on a white page twice the canvas's size, away from the centre: read as a scene (inverted),
    # fitted into the 64x64 canvas at half its size
    split = load_boxes("test", 1)
    page = np.full((128, 128), 255, np.uint8)
    page[64:, 64:] = 255 - split.images[0]
    Image.fromarray(page).save(tmp_path / "page.png")
    code, out, _ = run_in_process(capsys, "predict", run, tmp_path / "page.png", "--json", "--out-dir", tmp_path)
    row = json.loads(out)[0]
    assert code == 0 and (tmp_path / "page_box.png").is_file()
    left, top, right, bottom = row["box"]
    assert 24 <= left < right <= 64 and 24 <= top < bottom <= 64, row  # in the bottom-right quarter, with the digit


def test_saliency_of_a_box_coordinate_and_occlusion_of_the_class(short_run, tmp_path, capsys):
    run = short_run[2].run_dir
    code, out, err = run_in_process(capsys, "show", "saliency", run, "--index", 0, "--target", 12, "--out",
                                    tmp_path / "s.png")
    assert code == 0, err
    code, _, err = run_in_process(capsys, "show", "saliency", run, "--index", 0, "--target", 14, "--out",
                                  tmp_path / "x.png")
    assert code == 2 and "classes are 0..9, 10 box centre x, 11 box centre y, 12 box width, 13 box height" in err
    code, _, err = run_in_process(capsys, "show", "occlusion", run, "--index", 0, "--stride", 8, "--out",
                                  tmp_path / "o.png")
    assert code == 0, err


def test_the_exported_model_has_the_class_scores_and_the_box(short_run, tmp_path, capsys):
    import onnxruntime

    run = short_run[2].run_dir
    assert run_in_process(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")[0] == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "box"]
    x, _ = next(TensorSplit(load_boxes("test", 4)).batches(4))
    logits, box = session.run(None, {"image": x.numpy()})
    expected = Run.open(run).build_model()(x).detach()
    assert np.allclose(logits, expected[:, :10], atol=1e-4) and np.allclose(box, expected[:, 10:], atol=1e-5)


# -- the explorer -------------------------------------------------------------------------------------------
def test_the_explorer_draws_the_box_of_a_digit_drawn_anywhere(short_run):
    run = Run.open(short_run[2].run_dir)
    client = TestClient(create_app(runs=[run.path]), base_url="http://localhost")
    source = f"run:{run.name}"
    assert next(s for s in client.get("/api/sources").json() if s["id"] == source)["input_shape"] == [1, 64, 64]
    examples = client.get("/api/examples/mnist-boxes?count=2").json()
    assert examples["task"] == "localization" and set(examples["examples"][0]["label"]) == {"class", "box"}
    canvas = np.full((256, 256), 255, np.uint8)  # the page's drawing canvas, a digit drawn at its top left
    canvas[:112, :112] = np.asarray(Image.fromarray(255 - load_boxes("test", 1).images[0]).resize((112, 112)))
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    answer = client.post("/api/predict", data={"source": source}, files={"image": ("d.png", buffer.getvalue())})
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    digit = np.asarray(shown["digit"], np.uint8)
    assert digit.shape == (64, 64) and len(shown["probabilities"]) == 10 and len(shown["box"]) == 4
    output = run.build_model()(torch.from_numpy((digit / 255 - run.info.mean) / run.info.std).float()[None, None])
    assert shown["box"] == pytest.approx(corners(output[0, -4:]).tolist(), abs=1e-5)  # the model's own box
    activations = client.post("/api/activations", json={"source": source, "digit": digit.tolist()}).json()
    assert activations["box"] == pytest.approx(shown["box"], abs=1e-5) and activations["layers"]


def test_the_page_draws_the_box_on_what_the_model_sees(short_run, tmp_path):
    """In Chromium: a digit drawn in the top-left corner of the canvas; the page draws the model's box over the
    input it sent, and the box is the one the API gives for that input."""
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS, open_page, screenshot_path, serve, wait_until

    if not CHROMIUM:
        pytest.skip("needs Debian's chromium (`make test` installs it)")
    from playwright.sync_api import sync_playwright

    run = Run.open(short_run[2].run_dir)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for url in serve(run.path):
            page = open_page(browser, url, 1280)
            answers = []
            # a drawing's whole answer (its input as the model sees it, every layer, the box) is one predict request
            page.on("response", lambda r: answers.append(r) if "api/predict" in r.url else None)
            page.select_option("#source", f"run:{run.name}")
            wait_until(page, "document.body.dataset.mode === 'box' && document.body.dataset.pending === '0'")
            page.locator("#draw").scroll_into_view_if_needed()  # mouse coordinates are the viewport's
            box = page.locator("#draw").bounding_box()
            page.mouse.move(box["x"] + 40, box["y"] + 20)  # a "7" in the top-left quarter
            page.mouse.down()
            for x, y in [(90, 20), (60, 100), (50, 120)]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
            page.mouse.up()
            wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing') && "
                             "document.querySelector('#seen').dataset.box && document.body.dataset.pending === '0'")
            shown = [float(v) for v in page.get_attribute("#seen", "data-box").split(",")]
            answer = answers[-1].json()
            seen = np.asarray(answer["digit"])
            assert seen[:32, :32].sum() > 10 * seen[32:, 32:].sum()  # drawn top left
            assert shown == pytest.approx(answer["box"], abs=1e-4)  # the box the model gave
            assert (shown[0] + shown[2]) / 2 < 0.5 and (shown[1] + shown[3]) / 2 < 0.5  # around the drawn digit
            assert page.errors == [] and page.foreign == []
            page.locator("#seen").screenshot(path=screenshot_path(tmp_path, "explorer-localization.png"))
        browser.close()
