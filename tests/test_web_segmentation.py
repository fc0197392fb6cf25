"""A segmentation run in the explorer: the scene, its class map and each class's score map are the model's own
outputs; the up-sampling (transposed convolution) layer is a row with its formula; uploads are read as
`cnnlab predict` reads scenes. A tiny U-Net trained here for one epoch on 64 scenes (seconds)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from cnnlab.train.inference import predict
from cnnlab.data import load_dataset
from cnnlab.data.preprocess import load_scene
from cnnlab.train.config import recipe_config
from cnnlab.train.runs import Run
from cnnlab.train.trainer import Trainer
from cnnlab.viz.activations import normalize_input
from cnnlab.web import create_app

from test_matrix import SEGMENTATION  # the matrix's tiny U-Net: widths 4 and 8, one epoch on 64 scenes



@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    config = recipe_config("segmentation", **SEGMENTATION)
    root = tmp_path_factory.mktemp("seg-runs")
    return Run.open(Trainer(config, name="scenes", runs_dir=root, progress=False).fit().run_dir)


@pytest.fixture(scope="module")
def client(run) -> TestClient:
    return TestClient(create_app(runs=[run.path]), base_url="http://localhost")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return load_dataset("mnist-scenes", "test", limit=3, quiet=True).images[2]


def source(run: Run) -> str:
    return f"run:{run.name}"


def model_scores(run: Run, scene: np.ndarray) -> torch.Tensor:
    """The run's model on the scene, outside the explorer: scores [K, H, W]."""
    info = run.info
    with torch.inference_mode():
        return run.build_model()(normalize_input(scene, info.mean, info.std))[0]


def decoded_scores(answer: dict) -> np.ndarray:
    scores = answer["scores"]
    data = np.frombuffer(base64.b64decode(scores["data"]), dtype="<f4")
    return data.reshape(scores["shape"])


def check_segmentation(answer: dict, scores: torch.Tensor):
    """The class map is the argmax of the model's scores, the score maps are the scores, bit for bit."""
    assert answer["classes"][0] == "background" and len(answer["classes"]) == scores.shape[0] == 11
    assert np.array_equal(decoded_scores(answer), scores.numpy())
    class_map = np.asarray(answer["class_map"])
    assert class_map.shape == tuple(scores.shape[1:]) and np.array_equal(class_map, scores.argmax(0).numpy())
    assert answer["pixels"] == np.bincount(class_map.ravel(), minlength=11).tolist()
    assert answer["scores"]["min"] == float(scores.min()) and answer["scores"]["max"] == float(scores.max())


def test_a_segmentation_run_is_listed_with_its_scenes(client, run):
    listed = {s["id"]: s for s in client.get("/api/sources").json()}
    assert listed[source(run)]["task"] == "segmentation" and listed[source(run)]["dataset"] == "mnist-scenes"
    # listed with its task's measure: mean IoU (its pixel accuracy is high even for a model that finds no digit)
    miou = run.metrics()[-1]["test_miou"]
    assert listed[source(run)]["measure"] == {"name": "test mean IoU", "value": miou, "text": f"{miou:.4f} mIoU"}
    answer = client.get("/api/examples/mnist-scenes?start=1&count=3").json()
    split = load_dataset("mnist-scenes", "test", limit=4, quiet=True)
    assert answer["task"] == "segmentation" and [e["index"] for e in answer["examples"]] == [1, 2, 3]
    for example in answer["examples"]:
        assert np.array_equal(example["digit"], split.images[example["index"]])
        assert np.array_equal(example["label"], split.masks[example["index"]] if hasattr(split, "masks")
                              else split.labels[example["index"]])


def test_class_map_and_score_maps_are_the_models_own(client, run, scene):
    answer = client.post("/api/activations", json={"source": source(run), "digit": scene.tolist()})
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    scores = model_scores(run, scene)
    check_segmentation(answer, scores)
    assert answer["task"] == "segmentation" and "probabilities" not in answer


def test_the_up_sampling_layer_is_a_row_with_its_formula(client, run, scene):
    """Every transposed convolution of the model is a row of maps equal to its output, and its formula view's
    result (the input pixels that land on the output pixel, times their kernel weights, plus the bias) equals it."""
    model = run.build_model()
    ups = {name: m for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    assert ups
    outputs = {}
    handles = [m.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o[0].detach()))
               for name, m in ups.items()]
    model_scores_ = model(normalize_input(scene, run.info.mean, run.info.std))
    for handle in handles:
        handle.remove()
    assert model_scores_.shape[1:] == (11, 64, 84)
    layers = client.post("/api/activations", json={"source": source(run), "digit": scene.tolist()}).json()["layers"]
    rows = {layer["name"]: layer for layer in layers}
    for name, out in outputs.items():
        row = rows[name]
        assert row["kind"] == "deconv" and row["type"] == "ConvTranspose2d" and row["shape"] == list(out.shape)
        assert row["min"] == pytest.approx(float(out.min()), abs=1e-6)
        assert row["max"] == pytest.approx(float(out.max()), abs=1e-6)
        channel, y, x = np.unravel_index(int(out.abs().argmax()), out.shape)
        index = [int(channel), int(y), int(x)]
        terms = client.post("/api/formula", json={"source": source(run), "digit": scene.tolist(), "layer": name,
                                                   "index": index}).json()
        assert terms["kind"] == "deconv" and terms["actual"] == pytest.approx(float(out[tuple(index)]), abs=1e-6)
        assert terms["result"] == pytest.approx(terms["actual"], abs=1e-4) and terms["terms"]
        assert terms["field"]["box"][1] <= 64 and terms["field"]["box"][3] <= 84


def test_a_pixels_class_probabilities_are_explained(client, run, scene):
    """Clicking a score map: the softmax over the classes of that one pixel."""
    scores = model_scores(run, scene)
    k, y, x = 3, 20, 40
    answer = client.post("/api/formula", json={"source": source(run), "digit": scene.tolist(), "layer": "softmax",
                                               "index": [k, y, x]}).json()
    assert answer["pixel"] == [y, x] and answer["index"] == [k, y, x]
    assert np.allclose(answer["logits"], scores[:, y, x].double().numpy(), atol=1e-6)
    assert answer["actual"] == pytest.approx(float(scores[:, y, x].softmax(0)[k]), abs=1e-6)
    assert answer["result"] == pytest.approx(answer["actual"], abs=1e-6)


def test_an_uploaded_scene_is_read_as_cnnlab_predict_reads_it(client, run, scene, tmp_path):
    """Black digits on white, as a person draws them: inverted, and segmented exactly as `cnnlab predict` does."""
    path = tmp_path / "scene.png"
    Image.fromarray(255 - scene).save(path)
    answer = client.post("/api/predict", data={"source": source(run)},
                         files={"image": ("scene.png", path.read_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert np.array_equal(answer["digit"], load_scene(path)) and np.array_equal(answer["digit"], scene)
    check_segmentation(answer, model_scores(run, scene))
    expected = predict(run, [str(path)], "last", None)[0]["pixels_per_class"]
    counted = {answer["classes"][c]: n for c, n in enumerate(answer["pixels"]) if c and n}
    assert counted == expected


def test_a_scene_of_another_size_is_fitted_into_the_canvas(client, run, scene):
    """Larger: scaled down to fit 64x84, then centred on black; smaller: centred at its own scale."""
    big = np.zeros((128, 84 * 3), np.uint8)
    big[:64, :84] = scene
    small = scene[:40, :50]
    # 128x252 -> 43x84 at rows 10-53: the scene (its top half) fills rows 10-32, columns 0-27
    for picture, check in [(big, lambda d: d[10:33, :28].max() > 0 and d[34:].max() == 0 and d[:10].max() == 0),
                           (small, lambda d: np.array_equal(d[12:52, 17:67], small) and d[:12].max() == 0)]:
        digit = uploaded(client, run, picture)
        assert digit.shape == (64, 84) and check(digit)


def uploaded(client, run: Run, picture: np.ndarray) -> np.ndarray:
    """The scene the explorer makes of `picture` uploaded as a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    answer = client.post("/api/predict", data={"source": source(run)},
                         files={"image": ("s.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json()["digit"])


def test_a_photo_larger_than_the_limit_is_scaled_like_any_other(client, run, scene):
    """A 1,500x1,125 photo of a scene (over MAX_SCENE_SIDE) is reduced as it is decoded and fitted, not refused."""
    photo = Image.fromarray(255 - scene).resize((1500, 1125), Image.Resampling.NEAREST)
    digit = uploaded(client, run, np.asarray(photo))
    assert digit.shape == (64, 84) and digit.max() > 200
    assert np.corrcoef(digit.ravel(), scene.ravel())[0, 1] > 0.8  # the same scene, scaled back to its canvas


def test_large_maps_travel_as_thumbnails_and_open_in_full(client, run, scene):
    """Maps larger than THUMB_SIDE are area-averaged thumbnails in the overview; a map's view sends it whole,
    exactly (float32)."""
    from cnnlab.web.inspect import THUMB_SIDE

    answer = client.post("/api/activations", json={"source": source(run), "digit": scene.tolist()}).json()
    first = answer["layers"][0]
    height, width = first["shape"][1:]
    assert max(first["thumbnail"]) == THUMB_SIDE < max(height, width)
    raw = np.frombuffer(base64.b64decode(first["maps"]), np.uint8).reshape(first["shown"], *first["thumbnail"])
    with torch.inference_mode():
        full = run.build_model().get_submodule(first["name"])(normalize_input(scene, run.info.mean, run.info.std))[0]
    expected = torch.nn.functional.adaptive_avg_pool2d(full[:first["shown"]][None], first["thumbnail"])[0].numpy()
    step = (first["max"] - first["min"]) / 255
    assert np.abs(first["min"] + raw * step - expected).max() <= step / 2 + 1e-5
    view = client.post("/api/formula", json={"source": source(run), "digit": scene.tolist(), "layer": first["name"],
                                            "index": [1]}).json()
    shown = np.frombuffer(base64.b64decode(view["maps"]["after"]["data"]), "<f4").reshape(height, width)
    assert shown == pytest.approx(full[1].numpy(), abs=1e-6)


@pytest.mark.parametrize("path, body, status, words", [
    ("/api/activations", {"digit": np.zeros((28, 28), int).tolist()}, 422, "takes 64x84"),
    ("/api/occlusion", {}, 422, "labels every pixel"),
    ("/api/formula", {"layer": "softmax", "index": [0, 64, 0]}, 422, "outside"),
    ("/api/formula", {"layer": "softmax", "index": [11, 0, 0]}, 422, "outside"),
])
def test_bad_requests_get_one_line(client, run, scene, path, body, status, words):
    answer = client.post(path, json={"source": source(run), "digit": scene.tolist(), **body})
    assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert "\n" not in answer.json()["detail"]


@pytest.mark.parametrize("layer", ["down.0.0", "up.0"])
def test_top_activations_of_a_segmentation_are_refused_in_one_line(client, run, layer):
    answer = client.get(f"/api/top-activations?source={source(run)}&layer={layer}&feature=0")
    assert answer.status_code == 422 and "labels every pixel" in answer.json()["detail"], answer.text
