"""The explorer's occlusion maps and top activations, against the model run here directly."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cnnlab.data import dataset_info
from cnnlab.viz.activations import normalize_input
from test_web_api import client, mnist_test, trained_run  # noqa: F401  (the test client of the session's small run)


def test_occlusion_is_the_probability_with_the_square_there(client, trained_run, mnist_test):  # noqa: F811
    digit = mnist_test.images[0]
    answer = client.post("/api/occlusion", json={"source": "run:tiny", "digit": digit.tolist(), "size": 6,
                                                 "stride": 4}).json()
    model = trained_run.build_model()
    info = dataset_info("mnist")
    x = normalize_input(digit, info.mean, info.std)
    with torch.no_grad():
        assert answer["target"] == int(model(x).argmax()) == 7
        assert answer["unoccluded"] == pytest.approx(float(model(x).softmax(1)[0, 7]), abs=1e-5)
    starts = answer["starts"]
    assert starts == [0, 4, 8, 12, 16, 20, 22]  # the last square touches the bottom-right edge
    for r, c in [(0, 0), (2, 3), (6, 6), (4, 1)]:
        hidden = x.clone()
        hidden[..., starts[r]:starts[r] + 6, starts[c]:starts[c] + 6] = 0  # the mean pixel, normalized
        with torch.no_grad():
            probabilities = model(hidden).softmax(1)[0]
        assert answer["probability"][r][c] == pytest.approx(float(probabilities[7]), abs=1e-5)
        assert answer["top_class"][r][c] == int(probabilities.argmax())
    # hiding part of the 7's stroke costs it probability somewhere: the map is not flat (measured: 0.996 -> 0.972)
    assert min(map(min, answer["probability"])) < answer["unoccluded"] - 0.01
    other = client.post("/api/occlusion", json={"source": "run:tiny", "digit": digit.tolist(), "target": 1}).json()
    assert other["target"] == 1 and len(other["starts"]) == 11


@pytest.mark.parametrize("body, status, words", [
    ({"size": 0}, 422, "greater than or equal to 1"),
    ({"stride": 1}, 422, "greater than or equal to 2"),
    ({"target": 10}, 422, "target 10: classes are 0..9"),
    ({"source": "model:mlp"}, 422, "no convolution layers"),
])
def test_occlusion_refuses_bad_requests_in_one_line(client, mnist_test, body, status, words):  # noqa: F811
    request = {"source": "run:tiny", "digit": mnist_test.images[0].tolist(), **body}
    response = client.post("/api/occlusion", json=request)
    assert response.status_code == status
    assert words in str(response.json()["detail"]) and "\n" not in str(response.json()["detail"])


def test_top_activations_are_the_test_images_that_excite_a_feature_most(client, trained_run, mnist_test):  # noqa: F811
    """conv1 feature 4 over the whole MNIST test set, brute force here: the same 9 images, values and positions;
    each deconvnet projection lies inside its receptive field; the second feature of the layer comes from the
    cache."""
    model = trained_run.build_model()
    info = dataset_info("mnist")
    started = time.perf_counter()
    answer = client.get("/api/top-activations", params={"source": "run:tiny", "layer": "conv1", "feature": 4}).json()
    first = time.perf_counter() - started
    x = normalize_input(mnist_test.images, info.mean, info.std)[0][:, None]
    with torch.no_grad():
        maps = torch.cat([model.conv1(chunk)[:, 4] for chunk in x.split(2000)])  # [N, 24, 24]
    strongest = maps.flatten(1).max(1).values
    order = sorted(range(len(strongest)), key=lambda i: (-float(strongest[i]), i))[:9]
    assert [h["index"] for h in answer["hits"]] == order
    assert answer["searched"] == 10_000 and answer["features"] == 16
    for hit in answer["hits"]:
        assert hit["value"] == pytest.approx(float(maps[hit["index"], hit["y"], hit["x"]]), abs=1e-5)
        assert hit["value"] == pytest.approx(float(strongest[hit["index"]]), abs=1e-5)
        assert np.array_equal(hit["image"], mnist_test.images[hit["index"]])
        top, bottom, left, right = hit["box"]
        assert (bottom - top, right - left) == (5, 5) and (top, left) == (hit["y"], hit["x"])  # conv1 is 5x5
        projection = np.asarray(hit["projection"])
        outside = projection.copy()
        outside[top:bottom, left:right] = 0
        assert np.abs(projection).max() > 0 and np.abs(outside).max() == 0
    progress = client.get("/api/top-activations/progress", params={"source": "run:tiny", "layer": "conv1"}).json()
    assert progress == {"layer": "conv1", "done": 10_000, "total": 10_000, "cached": True}
    started = time.perf_counter()
    again = client.get("/api/top-activations", params={"source": "run:tiny", "layer": "conv1", "feature": 5})
    assert again.status_code == 200 and time.perf_counter() - started < first


@pytest.mark.parametrize("params, words", [
    ({"layer": "fc1"}, "not a conv layer of this model"),
    ({"layer": "conv1", "feature": 16}, "feature 16 is outside its 16 feature maps"),
    ({"layer": "conv9"}, "not a conv layer of this model"),
])
def test_top_activations_refuse_bad_requests_in_one_line(client, params, words):  # noqa: F811
    response = client.get("/api/top-activations", params={"source": "run:tiny", **params})
    assert response.status_code == 422 and words in response.json()["detail"]


def test_a_search_does_not_hold_up_the_models_other_requests(trained_run, mnist_test, monkeypatch):  # noqa: F811
    """The search runs on a copy of the model: while it is under way (held here at its first chunk), a drawing's
    activations on the same model are answered."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from cnnlab.viz import deconv
    from cnnlab.web import app as web_app
    from cnnlab.web import create_app

    release, started = threading.Event(), threading.Event()
    real = deconv.top_activations

    def held(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(deconv, "top_activations", held)
    monkeypatch.setattr(web_app, "_heavy", threading.BoundedSemaphore(2))  # a turn for each, even on one core
    app = create_app([trained_run.path])
    with TestClient(app, base_url="http://localhost") as fresh, ThreadPoolExecutor(1) as pool:
        search = pool.submit(fresh.get, "/api/top-activations", params={"source": "run:tiny", "layer": "conv2"})
        assert started.wait(30)
        progress = fresh.get("/api/top-activations/progress", params={"source": "run:tiny", "layer": "conv2"}).json()
        assert progress["done"] == 0 and progress["total"] == 10_000 and not progress["cached"]
        drawn = fresh.post("/api/activations", json={"source": "run:tiny", "digit": mnist_test.images[0].tolist()})
        assert drawn.status_code == 200 and not search.done()
        release.set()
        assert search.result(60).status_code == 200
