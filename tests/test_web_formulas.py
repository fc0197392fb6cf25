"""The explorer's formula views (POST /api/formula), receptive fields and the playground's arithmetic: every number
shown is checked against the model's own (recorded here by hooks of the test's own) or against PyTorch."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.data import dataset_info
from cnnlab.experiments.invariance import SumPool2d
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import build_torch_model
from cnnlab.viz.activations import normalize_input
from cnnlab.models.layer_kinds import layer_kind
from cnnlab.web.formulas import explain, residual_blocks
from cnnlab.web.playground import arithmetic
from cnnlab.web.sources import Loaded
from test_web_api import client, mnist_test, trained_run  # noqa: F401  (the test client of the session's small run)

TOLERANCE = 1e-4  # the bound: every value shown equals the model's within 1e-4


@pytest.fixture(scope="module")
def digit(mnist_test):  # noqa: F811
    return mnist_test.images[0]


def recorded(model: nn.Module, image: np.ndarray, info) -> tuple[dict, torch.Tensor]:
    """({module name: (input, output)} of every leaf module and residual block, logits): the test's own record of
    what the model computed, with inputs copied before in-place activations overwrite them."""
    record, before = {}, {}
    hooked = [(n, m) for n, m in model.named_modules() if n and (next(m.children(), None) is None
                                                              or n in residual_blocks(model)
                                                              or n.endswith(".downsample"))]
    handles = [m.register_forward_pre_hook(lambda m, i, n=n: before.__setitem__(n, i[0][0].clone()))
               for n, m in hooked]
    handles += [m.register_forward_hook(lambda m, i, o, n=n: record.__setitem__(n, (before[n], o[0].clone())))
                for n, m in hooked]
    x = normalize_input(image, info.mean, info.std)  # the one normalization, bit for bit the explorer's input
    with torch.no_grad():
        logits = model(x)[0]
    for handle in handles:
        handle.remove()
    return record, logits


def indices(shape) -> list[list[int]]:
    """A corner, the centre, the last position and an off-centre one: borders exercise the padding."""
    last = [s - 1 for s in shape]
    picks = [[0] * len(shape), [s // 2 for s in shape], last, [s // 3 for s in shape]]
    return [list(p) for p in dict.fromkeys(map(tuple, picks))]


def close(actual, expected, tolerance: float) -> None:
    """Arrays equal within `tolerance` (and 1e-6 relative), as pytest.approx says it, but compared by NumPy: the
    maps of every position of a layer are hundreds of thousands of numbers."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=1e-6,
                               atol=tolerance)


def check(answer: dict, module: nn.Module | None, record: dict, logits: torch.Tensor):
    """The formula's answer equals the model's value, and each term shown is the model's own number."""
    name, at = answer["layer"], tuple(answer["index"])
    assert answer["result"] == pytest.approx(answer["actual"], abs=TOLERANCE), answer
    kind = answer["kind"]
    if kind == "softmax":
        assert answer["logits"] == pytest.approx(logits.tolist(), abs=1e-5)
        assert answer["actual"] == pytest.approx(float(logits.softmax(0)[at]), abs=1e-5)
        assert np.exp(np.asarray(answer["logits"]) - answer["shift"]) == pytest.approx(answer["exps"], rel=1e-9)
        assert sum(answer["exps"]) == pytest.approx(answer["sum"], rel=1e-9)
        return
    if kind == "residual":
        block = name.removesuffix(".add")
        main = record[answer["main_from"]][1][at]
        shortcut = (record[block][0] if answer["shortcut_from"].startswith("identity")
                    else record[f"{block}.downsample"][1])[at]
        assert (answer["main"], answer["shortcut"]) == pytest.approx((float(main), float(shortcut)), abs=1e-5)
        assert answer["actual"] == pytest.approx(float(record[answer["then"]][0][at]), abs=1e-5)
        return
    inp, out = record[name]
    assert answer["actual"] == pytest.approx(float(out[at]), abs=1e-5)
    if out.ndim == 3:  # the maps a view draws are the layer's own output channel, and the one it reads
        maps = {key: np.frombuffer(base64.b64decode(v["data"]), "<f4").reshape(v["shape"])
                for key, v in answer["maps"].items()}
        close(maps["after"], out[at[0]].numpy(), 1e-6)
        if kind in ("activation", "pool", "batchnorm", "lrn"):
            close(maps["before"], inp[at[0]].numpy(), 1e-6)
        if kind == "conv" and "before" in maps:
            first = answer["input_channels"][0]
            close(maps["before"], inp[first:first + len(answer["input_channels"])].numpy(), 1e-6)
    if kind == "conv":
        products = np.asarray(answer["patch"]) * np.asarray(answer["kernel"])
        assert products.sum() + answer["bias"] == pytest.approx(answer["actual"], abs=TOLERANCE)
        for patch, channel in zip(answer["patch"], answer["input_channels"]):  # the patch is the layer's input
            for (r, row), (c, col) in itertools.product(enumerate(answer["rows"]), enumerate(answer["cols"])):
                inside = 0 <= row < inp.shape[1] and 0 <= col < inp.shape[2]
                assert patch[r][c] == pytest.approx(float(inp[channel, row, col]) if inside else 0.0, abs=1e-5)
    elif kind == "activation":
        assert answer["x"] == pytest.approx(float(inp[at]), abs=1e-5)
        curve = answer["curve"]  # the plotted function is the layer's: f at the chosen x lies on it
        assert np.interp(answer["x"], curve["x"], curve["y"]) == pytest.approx(answer["result"], abs=0.05)
        if isinstance(module, nn.PReLU):
            weights = module.weight.detach()
            assert answer["slope"] == pytest.approx(float(weights[at[0] if len(weights) > 1 else 0]))
    elif kind == "pool":
        channel = at[0]
        for row, values in zip(answer["rows"], answer["window"]):
            for col, value in zip(answer["cols"], values):
                if row is None or col is None:
                    assert value is None
                else:
                    assert value == pytest.approx(float(inp[channel, row, col]), abs=1e-5)
    elif kind == "batchnorm":
        expected = (float(inp[at]), float(module.running_mean[at[0]]), float(module.running_var[at[0]]),
                    float(module.weight.detach()[at[0]]), float(module.bias.detach()[at[0]]))
        shown = (answer["x"], answer["mean"], answer["var"], answer["gamma"], answer["beta"])
        assert shown == pytest.approx(expected, abs=1e-5)
    elif kind == "lrn":
        assert answer["values"] == pytest.approx([float(inp[(c, *at[1:])]) for c in answer["channels"]], abs=1e-5)
    elif kind == "flatten":
        assert answer["result"] == pytest.approx(float(inp[tuple(answer["from"])]), abs=1e-5)
    elif kind == "linear":
        x, w = inp.flatten().double(), module.weight.detach()[at[-1]].double()
        products = (x * w).abs()
        assert [t["index"] for t in answer["top"]] == products.argsort(descending=True)[:len(answer["top"])].tolist()
        for term in answer["top"]:
            assert (term["x"], term["w"]) == pytest.approx((float(x[term["index"]]), float(w[term["index"]])))
        # nothing hidden: the listed products and what the others add, per sign, make y; so do the two signs' sums
        rest = answer["rest"]
        total = sum(t["product"] for t in answer["top"]) + rest["positive"] + rest["negative"] + answer["bias"]
        assert total == pytest.approx(answer["actual"], abs=TOLERANCE)
        signed = x * w
        assert (answer["positive"], answer["negative"]) == pytest.approx(
            (float(signed[signed > 0].sum()), float(signed[signed < 0].sum())), abs=1e-6)
        assert answer["positive_count"] + answer["negative_count"] == int((signed != 0).sum())
        assert rest["positive_count"] + rest["negative_count"] + len(answer["top"]) <= len(x)
        if "by_map" in answer:  # grouped by the input map each product reads
            maps = signed.reshape(len(answer["by_map"]), -1).sum(1)
            assert [m["positive"] + m["negative"] for m in answer["by_map"]] == pytest.approx(maps.tolist(), abs=1e-6)
    elif kind == "deconv":
        for term in answer["terms"]:
            assert term["value"] == pytest.approx(float(inp[term["channel"], term["y"], term["x"]]), abs=1e-5)
        if not answer["terms"]:  # no input pixel lands here (a dilated or strided kernel has gaps): the bias alone
            assert "spread" not in answer and answer["result"] == answer["bias"]
            return
        spread = answer["spread"]
        kernel = np.asarray(spread["kernel"])
        assert np.asarray(spread["products"]) == pytest.approx(kernel * spread["value"], abs=1e-5)
    else:
        pytest.fail(f"no check for kind {kind}")


def check_every_layer(loaded: Loaded, image: np.ndarray, names=None) -> set[str]:
    """Every shown layer of `loaded` (or `names`) at a few indices, and softmax; the kinds checked."""
    model = loaded.model
    record, logits = recorded(model, image, loaded.info)
    modules = dict(model.named_modules())
    kinds = set()
    names = names or [n for n, m in model.named_modules() if n and layer_kind(m)] + [
        f"{b}.add" for b in residual_blocks(model)]
    for name in names:
        shape = record[name][1].shape if name in record else record[name.removesuffix(".add")][1].shape
        for at in indices(shape):
            answer = explain(loaded, image, name, at)
            check(answer, modules.get(name), record, logits)
            kinds.add(answer["kind"])
    if logits.ndim == 1:
        for at in range(len(logits)):
            check(explain(loaded, image, "softmax", [at]), None, record, logits)
        kinds.add("softmax")
    return kinds


def loaded_model(model: nn.Module, dataset: str = "mnist") -> Loaded:
    return Loaded("test", model.eval(), dataset_info(dataset))


def build(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_torch_model(TrainConfig(model=name, model_options=options))


def with_random_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine parameters far from 0 and 1, so that each term matters."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) * 2 + 0.2)
                m.weight.copy_(torch.randn(m.num_features, generator=generator))
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.3)
    return model


def test_every_layer_of_the_trained_run_through_the_api(client, trained_run, digit):  # noqa: F811
    """conv, ReLU, max pooling, flatten, fully connected, softmax: through HTTP, as the page asks."""
    model = trained_run.build_model()
    record, logits = recorded(model, digit, dataset_info("mnist"))
    layers = client.post("/api/activations", json={"source": "run:tiny", "digit": digit.tolist()}).json()["layers"]
    modules = dict(model.named_modules())
    kinds = set()
    for layer in layers + [{"name": "softmax", "shape": [10]}]:
        for at in indices(layer["shape"]):
            response = client.post("/api/formula", json={"source": "run:tiny", "digit": digit.tolist(),
                                                         "layer": layer["name"], "index": at})
            assert response.status_code == 200, response.text
            check(response.json(), modules.get(layer["name"]), record, logits)
            kinds.add(response.json()["kind"])
    assert kinds == {"conv", "activation", "pool", "flatten", "linear", "softmax"}


def test_resnets_batch_norm_and_both_kinds_of_residual_addition(digit):
    """resnet20 adds option A shortcuts (identity, and subsampled + zero-padded), resnet18 option B (1x1 conv and
    batch norm), then global average pooling: every layer, with batch-norm statistics that are not 0 and 1."""
    for name in ("resnet20", "resnet18"):
        loaded = loaded_model(with_random_statistics(build(name)))
        kinds = check_every_layer(loaded, digit)
        assert {"batchnorm", "residual", "pool", "conv", "activation", "linear", "softmax"} <= kinds


def test_lenet5_alexnet_2012_and_prelu(digit):
    """LeNet-5's partial C3, trained subsampling and scaled tanh; AlexNet-2012's local response normalization;
    PReLU with one learned slope per channel (slopes made to differ)."""
    assert "pool" in check_every_layer(loaded_model(build("lenet5")), digit)
    assert "lrn" in check_every_layer(loaded_model(build("alexnet-2012")), digit)
    prelu = build("alexnet", activation="prelu")
    with torch.no_grad():
        for m in prelu.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.linspace(-0.5, 0.9, len(m.weight)))
    assert "activation" in check_every_layer(loaded_model(prelu), digit, ["features.1", "features.4"])


def test_awkward_layers_at_every_position(digit):
    """Leaky ReLU, sigmoid, tanh, max pooling with padding, dilation and ceil mode, average pooling with and without
    the padding counted, sum pooling, adaptive max pooling, and a grouped, dilated, strided transposed
    convolution: every output value, against PyTorch."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True),
        nn.Tanh(), nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, dilation=2, groups=2), nn.Sigmoid(),
        nn.AvgPool2d(2, 1, padding=1), SumPool2d(2), nn.AdaptiveMaxPool2d(3), nn.Flatten(), nn.Linear(54, 10))
    loaded = loaded_model(model)
    record, logits = recorded(model, digit, loaded.info)
    modules = dict(model.named_modules())
    for name in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
        shape = record[name][1].shape
        for at in itertools.product(*(range(s) for s in shape)):
            check(explain(loaded, digit, name, list(at)), modules[name], record, logits)


def test_fcn_upsampling_is_explained(digit):
    """FCN-8s's learned up-sampling (a transposed convolution after an edge pad), on a scene-sized input."""
    model = build_torch_model(TrainConfig(model="fcn-8s", dataset="mnist-scenes")).eval()
    scene = np.zeros((64, 84), np.uint8)
    scene[10:38, 20:48] = digit
    loaded = loaded_model(model, "mnist-scenes")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(names) == 3
    record, _ = recorded(model, scene, loaded.info)
    for name in names:
        for at in indices(record[name][1].shape):
            answer = explain(loaded, scene, name, at)
            check(answer, dict(model.named_modules())[name], record, torch.zeros(1, 1))
            assert answer["spread"]["products"]


def test_receptive_field_of_a_clicked_pixel(client, digit, trained_run):  # noqa: F811
    """simple-cnn: conv1 5x5 sees 5x5 pixels; pool1 2x2/2 makes 6x6 with jump 2; conv2 5x5 makes 14x14 at 2y..2y+14.
    Every input pixel that changes the output pixel (non-zero gradient) lies in the box."""
    def field(layer, at):
        body = {"source": "run:tiny", "digit": digit.tolist(), "layer": layer, "index": at}
        return client.post("/api/formula", json=body).json()["field"]

    assert field("conv1", [0, 3, 7])["box"] == [3, 8, 7, 12]
    assert field("pool1", [0, 2, 5])["box"] == [4, 10, 10, 16]
    assert field("conv2", [5, 4, 1])["box"] == [8, 22, 2, 16]
    assert field("relu2", [5, 4, 1])["box"] == [8, 22, 2, 16]
    model = trained_run.build_model()
    info = dataset_info("mnist")
    x = ((torch.tensor(digit).float() / 255 - info.mean) / info.std)[None, None].requires_grad_()
    out = model.conv2(model.pool1(model.relu1(model.conv1(x))))[0, 5, 4, 1]
    out.backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert rows.size and (8 <= rows.min()) and rows.max() < 22 and (2 <= cols.min()) and cols.max() < 16


@pytest.mark.parametrize("body, status, words", [
    ({"layer": "conv9", "index": [0, 0, 0]}, 422, "'conv9': no such layer"),
    ({"layer": "conv1", "index": [0, 24, 0]}, 422, "outside its output 16x24x24"),
    ({"layer": "fc1", "index": [0, 0, 0]}, 422, "outside its output 128"),
    ({"layer": "softmax", "index": [10]}, 422, "outside its output 10"),
    ({"layer": "conv1", "index": [0, -1, 0]}, 422, "greater than or equal to 0"),
    ({"layer": "conv1", "index": [0, 0, 0, 0]}, 422, "at most 3 items"),
    ({"layer": "conv1", "index": [0, 0, 0], "source": "run:nope"}, 404, "run:nope"),
])
def test_formula_refuses_bad_requests_in_one_line(client, digit, body, status, words):  # noqa: F811
    response = client.post("/api/formula", json={"source": "run:tiny", "digit": digit.tolist(), **body})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(d["msg"] for d in detail)
    assert words in text and "\n" not in text


def test_a_dropout_layer_has_no_formula_and_says_so(digit):
    loaded = loaded_model(build("alexnet"))
    dropout = next(n for n, m in loaded.model.named_modules() if isinstance(m, nn.Dropout))
    with pytest.raises(Exception, match="has no formula view"):
        explain(loaded, digit, dropout, [0])


# ---- the playground's arithmetic ---------------------------------------------------------------------------

def test_output_size_formula_equals_pytorch_on_a_grid_of_settings():
    """1,008 settings (input 5, 7 and 28; kernel 1-7; stride 1-4; padding 0-3; dilation 1-3): the formula's size is
    PyTorch's, a division that is not exact says how many pixels are never read, and a kernel larger than the padded
    input is refused with the reason."""
    image = torch.zeros(1, 1, 28, 28)
    inexact = impossible = 0
    for n, k, s, p, d in itertools.product((5, 7, 28), range(1, 8), range(1, 5), range(4), range(1, 4)):
        answer = arithmetic(n, k, s, p, d)
        try:
            size = nn.functional.conv2d(image[..., :n, :n], torch.zeros(1, 1, k, k), stride=s, padding=p,
                                        dilation=d).shape[-1]
        except RuntimeError:
            size = 0
        assert answer["output"] == size, (n, k, s, p, d)
        assert answer["valid"] == (size > 0)
        if not answer["valid"]:
            impossible += 1
            assert "no window fits" in answer["reason"]
        elif not answer["exact"]:
            inexact += 1
            # the pixels never read are exactly those past the last window
            last_read = (size - 1) * s + d * (k - 1)
            assert answer["dropped"] == n + 2 * p - 1 - last_read
            assert "not an integer" in answer["reason"]
    assert inexact > 100 and impossible > 10


def test_conv_arithmetic_endpoint_and_its_limits(client):  # noqa: F811
    answer = client.get("/api/conv-arithmetic", params={"size": 28, "kernel": 3, "stride": 2, "padding": 0}).json()
    assert (answer["output"], answer["exact"], answer["dropped"]) == (13, False, 1)
    assert answer["formula"] == "(28 + 2·0 − 1·(3−1) − 1) / 2 + 1"
    assert client.get("/api/conv-arithmetic", params={"size": 28, "kernel": 3, "stride": 0}).status_code == 422
    assert client.get("/api/conv-arithmetic", params={"size": 28, "kernel": 16}).status_code == 422


@pytest.mark.parametrize("k, s, p, d", [(3, 1, 1, 1), (5, 2, 0, 1), (3, 2, 2, 2), (7, 3, 3, 1), (2, 1, 0, 3)])
def test_convolve_with_stride_padding_and_dilation_equals_numpy(client, digit, k, s, p, d):  # noqa: F811
    rng = np.random.default_rng(k * 100 + s)
    kernel = rng.normal(size=(k, k))
    image = digit / 255
    answer = client.post("/api/convolve", json={"image": image.tolist(), "kernel": kernel.tolist(), "padding": p,
                                                "stride": s, "dilation": d}).json()
    padded = np.pad(image, p)
    size = arithmetic(28, k, s, p, d)["output"]
    expected = np.array([[sum(padded[r * s + i * d, c * s + j * d] * kernel[i, j] for i in range(k) for j in range(k))
                          for c in range(size)] for r in range(size)])
    assert answer["shape"] == [size, size]
    assert np.asarray(answer["output"]) == pytest.approx(expected, abs=1e-4)
    assert answer["arithmetic"][0]["output"] == size


@pytest.mark.parametrize("body, words", [
    ({"padding": "same", "stride": 2}, "padding 'same' needs stride 1"),
    ({"padding": 0, "dilation": 8, "kernel": [[1] * 7] * 7}, "no window fits"),
    ({"padding": 9}, "less than or equal to 8"),
    ({"stride": 0}, "greater than or equal to 1"),
])
def test_convolve_refuses_impossible_settings(client, body, words):  # noqa: F811
    request = {"image": [[0.0] * 28] * 28, "kernel": [[1.0] * 3] * 3, **body}
    response = client.post("/api/convolve", json=request)
    assert response.status_code == 422
    assert words in str(response.json()["detail"])


def test_a_view_opens_where_the_lectures_point_shows(client, trained_run, digit):  # noqa: F811
    """A map's view asked by map alone opens an activation on its most negative input (ReLU: f(x) = 0), any other
    map at its strongest value."""
    model = trained_run.build_model()
    record, _ = recorded(model, digit, dataset_info("mnist"))
    for layer, channel in (("relu1", 3), ("relu2", 7), ("conv2", 5), ("pool1", 2)):
        answer = client.post("/api/formula", json={"source": "run:tiny", "digit": digit.tolist(), "layer": layer,
                                                   "index": [channel]}).json()
        inp, out = record[layer]
        negative = layer.startswith("relu") and float(inp[channel].min()) < 0
        flat = int(inp[channel].argmin() if negative else out[channel].argmax())
        assert answer["index"] == [channel, *divmod(flat, out.shape[2])], layer
        if negative:
            assert answer["x"] < 0 and answer["result"] == answer["actual"] == 0
