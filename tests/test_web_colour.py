"""A colour run in the explorer: a run on a folder of photos (3x32x32) shows its test photos in colour, prepares an
uploaded photo as the dataset prepared its images, and explains its layers (the first convolution sums over the
three colour channels). The run is tests/test_matrix.py's colour run: ResNet-20 after one epoch on 24 generated
photos (seconds)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from cnnlab.train.runs import Run
from cnnlab.viz.activations import normalize_input, predict_probabilities
from cnnlab.web import create_app

from test_matrix import colour_run  # noqa: F401  (ResNet-20, one epoch on 24 generated photos of three tints)


@pytest.fixture(scope="module")
def run(colour_run) -> Run:  # noqa: F811
    return Run.open(colour_run[0])


@pytest.fixture(scope="module")
def client(colour_run) -> TestClient:  # noqa: F811
    run, photos = colour_run
    return TestClient(create_app(runs=[run], folders=[photos]), base_url="http://localhost")


@pytest.fixture(scope="module")
def photo(run) -> np.ndarray:
    return run.test_split().images[0]


def source(run: Run) -> str:
    return f"run:{run.name}"


def test_test_photos_are_shown_in_colour(client, run):
    listed = {s["id"]: s for s in client.get("/api/sources").json()}
    assert listed[source(run)]["task"] == "classification"
    answer = client.get(f"/api/examples/{run.config.dataset}?count=6")
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    split = run.test_split()
    assert answer["classes"] == ["blue", "green", "red"] and answer["total"] == len(split) == 6
    for example in answer["examples"]:
        image = np.asarray(example["digit"])
        assert image.shape == (3, 32, 32) and np.array_equal(image, split.images[example["index"]])
        assert example["label"] == split.labels[example["index"]]


def test_an_uploaded_photo_is_prepared_and_predicted_as_the_model_does(client, run, colour_run):  # noqa: F811
    """A photo of another size and format: prepared by the run's dataset (`info.prepare`), and its probabilities
    are `predict_probabilities` of the run's model on that image."""
    _, photos = colour_run
    for path in [photos / "red" / "001.png", photos / "green" / "002.jpg"]:
        data = path.read_bytes()
        answer = client.post("/api/predict", data={"source": source(run)},
                             files={"image": (path.name, data, "image/png")})
        assert answer.status_code == 200, answer.text
        answer = answer.json()
        info = run.info
        prepared = info.prepare(data, path.name)
        assert prepared.shape == (3, 32, 32) and np.array_equal(answer["digit"], prepared)
        expected = predict_probabilities(run.build_model(), info, [prepared])[0]
        assert np.allclose(answer["probabilities"], expected.numpy(), atol=1e-6)
        assert answer["prediction"] == info.classes[int(expected.argmax())]


def test_every_layer_and_the_first_convolution_over_three_channels(client, run, photo):
    model = run.build_model()
    x = normalize_input(photo, run.info.mean, run.info.std)
    with torch.inference_mode():
        logits = model(x)[0]
    answer = client.post("/api/activations", json={"source": source(run), "digit": photo.tolist()})
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert np.allclose(answer["probabilities"], logits.softmax(0).numpy(), atol=1e-6)
    first = next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    row = next(layer for layer in answer["layers"] if layer["name"] == first)
    assert row["kernel"][1] == 3
    terms = client.post("/api/formula", json={"source": source(run), "digit": photo.tolist(), "layer": first,
                                              "index": [0, 5, 7]}).json()
    assert terms["input_channels"] == [0, 1, 2] and len(terms["channel_sums"]) == 3
    assert terms["result"] == pytest.approx(terms["actual"], abs=1e-4)
    # the patch is the normalized photo's 3x3 window around (5, 7): each channel with its own mean and std
    assert np.allclose(terms["patch"], x[0, :, 4:7, 6:9].numpy(), atol=1e-6)
    assert terms["field"]["box"] == [4, 7, 6, 9]
    softmax = client.post("/api/formula", json={"source": source(run), "digit": photo.tolist(), "layer": "softmax",
                                                "index": [1]}).json()
    assert softmax["actual"] == pytest.approx(float(logits.softmax(0)[1]), abs=1e-6)


def test_occlusion_of_a_colour_photo(client, run, photo):
    answer = client.post("/api/occlusion", json={"source": source(run), "digit": photo.tolist(), "size": 8,
                                                 "stride": 8})
    assert answer.status_code == 200, answer.text
    assert np.asarray(answer.json()["probability"]).shape == (4, 4)


@pytest.mark.parametrize("digit, words", [
    (np.zeros((28, 28), int).tolist(), "takes 3x32x32"),
    (np.zeros((3, 28, 28), int).tolist(), "is 3x28x28"),
    ([[[0] * 32] * 32] * 2 + [[[0] * 31] * 32], "same length"),
])
def test_a_wrong_input_gets_one_line(client, run, digit, words):
    answer = client.post("/api/activations", json={"source": source(run), "digit": digit})
    assert answer.status_code == 422 and words in answer.json()["detail"], answer.text


def test_top_activations_refuse_colour_photos_in_one_line(client, run):
    answer = client.get(f"/api/top-activations?source={source(run)}&layer=conv1&feature=0")
    assert answer.status_code == 422 and "single-channel" in answer.json()["detail"], answer.text


def test_a_grey_digit_upload_to_a_colour_run_becomes_a_colour_image(client, run):
    buffer = io.BytesIO()
    Image.fromarray(np.full((50, 40), 200, np.uint8)).save(buffer, "PNG")
    answer = client.post("/api/predict", data={"source": source(run)},
                         files={"image": ("grey.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200 and np.asarray(answer.json()["digit"]).shape == (3, 32, 32), answer.text


def test_only_the_folders_of_shown_runs_are_read(client, tmp_path):
    """The examples endpoint decodes a folder only when a run shown trained on it: not any path a client names."""
    for dataset in [f"folder:{tmp_path}", "folder:/", "folder:"]:
        answer = client.get(f"/api/examples/{dataset}")
        assert answer.status_code == 404 and "not the dataset of a run" in answer.json()["detail"], answer.text


def test_a_runs_folder_outside_the_allowed_ones_is_shown_not_read(colour_run, tmp_path):
    """A run folder from someone else names any folder:PATH in its config.json. Unless the server was started with
    that folder (--allow-folder), the run is listed with a note, its uploads work from the classes and statistics
    it recorded, and the folder is neither listed, decoded nor written to; a config that recorded none of them
    cannot even build its model."""
    import json
    import shutil

    run, photos = colour_run
    theirs = shutil.copytree(photos, tmp_path / "private", ignore=shutil.ignore_patterns(".cnnlab-cache"))
    before = sorted(theirs.rglob("*"))
    hostile = {}
    for name, keep in [("recorded", True), ("bare", False)]:
        copy = shutil.copytree(run, tmp_path / "runs" / name)
        config = json.loads((copy / "config.json").read_text())
        config["dataset"] = f"folder:{theirs}"
        if not keep:
            config["dataset_options"] = {}
        (copy / "config.json").write_text(json.dumps(config))
        hostile[name] = f"run:{name}"
    client = TestClient(create_app(runs_dir=tmp_path / "runs"), base_url="http://localhost")
    listed = {s["id"]: s for s in client.get("/api/sources").json()}
    assert "--allow-folder" in listed["run:recorded"]["dataset_note"], listed["run:recorded"]
    answer = client.get(f"/api/examples/folder:{theirs}")
    assert answer.status_code == 403 and "--allow-folder" in answer.json()["detail"]
    upload = (photos / "red" / "001.png").read_bytes()
    answer = client.post("/api/predict", data={"source": "run:recorded"}, files={"image": ("a.png", upload)})
    assert answer.status_code == 200 and answer.json()["classes"] == ["blue", "green", "red"], answer.text
    digit = answer.json()["digit"]
    answer = client.get("/api/top-activations", params={"source": "run:recorded", "layer": "conv1"})
    assert answer.status_code == 422 and "--allow-folder" in answer.json()["detail"]
    answer = client.post("/api/activations", json={"source": "run:bare", "digit": digit})
    assert answer.status_code == 404 and "records no classes, mean, std" in answer.json()["detail"], answer.text
    assert sorted(theirs.rglob("*")) == before  # no cache written, nothing else either
    # started with the folder, the same run shows its test photos
    allowed = TestClient(create_app(runs_dir=tmp_path / "runs", folders=[theirs]), base_url="http://localhost")
    assert allowed.get("/api/sources").json()[0]["dataset_note"] is None
    assert allowed.get(f"/api/examples/folder:{theirs}?count=2").status_code == 200
