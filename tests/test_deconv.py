"""The deconvnet of Zeiler & Fergus, checked piece by piece: its convolution step is conv_transpose2d with the
same filters, its unpooling puts values back at the forward pass's max positions, its patches are the receptive
fields, and its top-9 search is a brute-force search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import LayerError
from cnnlab.models import get_model
from cnnlab.models.receptive import field_box, receptive_fields
from cnnlab.viz import deconv


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return get_model("simple-cnn").eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(40, 1, 28, 28)


def test_the_conv_step_is_the_transposed_convolution(model, images):
    path = deconv.layers_up_to(model, images[:1], "conv1")
    run = deconv.forward(path, images[:1])
    signal = torch.randn_like(run.output)
    expected = F.conv_transpose2d(signal, model.conv1.weight, stride=1, padding=0)
    torch.testing.assert_close(deconv.project(path, run, signal), expected)


def test_unpooling_puts_each_value_at_its_max(images):
    pool = nn.MaxPool2d(2)
    path = [("conv", nn.Identity()), ("pool", pool)]
    run = deconv.forward(path, images[:2])
    back = deconv.project(path, run, run.output)
    windows = images[:2].unfold(2, 2, 2).unfold(3, 2, 2)  # [N, C, 14, 14, 2, 2]
    for n, c, y, x in [(0, 0, 0, 0), (1, 0, 7, 3), (0, 0, 13, 13)]:
        window = windows[n, c, y, x]
        dy, dx = divmod(int(window.argmax()), 2)
        block = back[n, c, 2 * y:2 * y + 2, 2 * x:2 * x + 2]
        assert block[dy, dx] == window.max() and int((block != 0).sum()) == 1  # there, and nowhere else


def test_top_9_is_a_brute_force_search(model, images):
    hits = deconv.top_activations(model, "conv2", images, [0, 5], k=9, batch_size=7)  # batches of 7: merging
    out = deconv.forward(deconv.layers_up_to(model, images[:1], "conv2"), images).output
    for feature in (0, 5):
        strongest = out[:, feature].flatten(1).max(1).values
        assert [h.image for h in hits[feature]] == strongest.argsort(descending=True)[:9].tolist()
        top = hits[feature][0]
        assert out[top.image, feature, top.y, top.x] == strongest.max()


def test_patches_are_the_receptive_fields(model, images):
    hits = deconv.top_activations(model, "conv2", images, [3], k=3)[3]
    where = deconv.boxes(model, "conv2", (1, 28, 28), hits)
    field = receptive_fields(model, (1, 28, 28))["conv2"]
    pixels = (images[:, 0].numpy() * 50 + 128).clip(0, 255).astype("uint8")
    for hit, box, patch in zip(hits, where, deconv.crop([pixels[h.image] for h in hits], where)):
        top, bottom, left, right = field_box(field, hit.y, hit.x, 28, 28)
        assert box == (top, bottom, left, right) and (patch == pixels[hit.image][top:bottom, left:right]).all()
        # the projection of that one activation is zero outside its patch: the field is the whole story
        projection = deconv.projections(model, "conv2", images, 3, [hit])[0]
        outside = projection.copy()
        outside[top:bottom, left:right] = 0
        assert abs(outside).max() == 0 and abs(projection).max() > 0


def test_guided_backprop_also_gates_by_the_forward_sign(model, images):
    path = deconv.layers_up_to(model, images[:1], "conv2")
    run = deconv.forward(path, images[:1])
    signal = torch.zeros_like(run.output)
    signal[0, 0, 4, 4] = 1.0
    plain, guided = (deconv.project(path, run, signal, method) for method in deconv.METHODS)
    assert not torch.equal(plain, guided)


def test_a_model_it_cannot_undo_is_refused_in_one_line(images):
    resnet = get_model("resnet18", in_channels=1, input_size=28).eval()  # convolutions, BN, ReLU, max pooling...
    with pytest.raises(LayerError, match="more than chain its layers on the way to it"):  # ... and residual sums
        deconv.layers_up_to(resnet, images[:1], "layer1.1.conv1")
    vgg = get_model("vgg-a", in_channels=1, input_size=32).eval()  # a plain chain: accepted
    assert deconv.layers_up_to(vgg, torch.randn(1, 1, 32, 32), "features.8")[-1][0] == "features.8"
    with pytest.raises(LayerError, match="not a conv layer of this model; its conv layers: conv1, conv2"):
        deconv.layers_up_to(get_model("simple-cnn").eval(), images[:1], "fc1")
