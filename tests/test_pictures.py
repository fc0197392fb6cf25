"""The pictures of issue 16, checked by what they draw: curves on whole-epoch ticks, distinguishable segmentation
colours, feature maps on one colour scale per layer, Grad-CAM of frozen and segmentation models, signed edge
responses, every kernel of a deep layer, honest titles, and report.html's order for both tasks."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from torch import nn

from cnnlab.cli import main
from cnnlab.experiments.hand_vs_learned import plot as plot_hand_vs_learned
from cnnlab.models import get_model
from cnnlab.train.config import recipe_config
from cnnlab.tasks.segmentation import SegmentationEvaluation
from cnnlab.train.trainer import Trainer
from cnnlab.viz import handcrafted
from cnnlab.viz.features import SIGNED, plot_feature_maps
from cnnlab.viz.grid import labelled_grid
from cnnlab.viz.kernels import plot_kernels
from cnnlab.viz.saliency import default_cam_layer, grad_cam, gradient_saliency
from cnnlab.viz.segmentation_figures import CORRECT, ERROR, PALETTE, error_map, legend_handles, plot_iou, \
    scenes_figure
from cnnlab.viz.training import curves_figure

ROW = {"train_loss": 1.2, "train_acc": 0.6, "test_loss": 0.6, "test_acc": 0.8, "lr": 1e-3, "seconds": 1.0,
       "images_per_s": 100.0}


def _ticks_are_whole_epochs(ax):
    ticks = ax.get_xticks()
    assert len(ticks) >= 2 and np.all(ticks == np.round(ticks)), ticks


def test_curves_plot_the_step_losses_on_whole_epoch_ticks():
    history = [{**ROW, "epoch": 1, "steps": 32, "step_loss": [[10, 2.1], [20, 1.0], [30, 0.6], [32, 0.4]]}]
    fig = curves_figure(history)
    ax_loss, ax_acc = fig.axes
    train, test = ax_loss.get_lines()
    np.testing.assert_allclose(train.get_xdata(), [10 / 32, 20 / 32, 30 / 32, 1.0])
    np.testing.assert_allclose(train.get_ydata(), [2.1, 1.0, 0.6, 0.4])
    assert list(test.get_xdata()) == [1] and list(test.get_ydata()) == [0.6]
    for ax in (ax_loss, ax_acc):
        _ticks_are_whole_epochs(ax)
    plt.close(fig)


def test_curves_of_runs_written_before_step_losses_use_one_point_per_epoch():
    fig = curves_figure([{**ROW, "epoch": 1}])
    train, _ = fig.axes[0].get_lines()
    assert list(train.get_xdata()) == [1] and list(train.get_ydata()) == [1.2]
    _ticks_are_whole_epochs(fig.axes[0])
    plt.close(fig)


def test_iou_curve_of_one_epoch_has_whole_epoch_ticks(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figure that plot_iou saves
    evaluation = SegmentationEvaluation(0.5, torch.eye(11, dtype=torch.int64) * 10, torch.zeros(1, 4, 4))
    plot_iou([{**ROW, "epoch": 1, "test_miou": 0.3}], evaluation, tuple(map(str, range(11))), tmp_path / "iou.png")
    _ticks_are_whole_epochs(kept[0].axes[1])


def _cielab(rgb):
    """sRGB in [0, 1] -> CIELAB (D65)."""
    rgb = np.asarray(rgb, dtype=float)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    f = np.cbrt(np.maximum(xyz / [0.9505, 1.0, 1.089], (6 / 29) ** 3))
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_the_legend_colours_are_pairwise_distinguishable():
    handles = legend_handles(tuple(["background"] + [str(d) for d in range(10)]), with_errors=True)
    assert [h.get_label() for h in handles][-2:] == ["error", "correct (input dimmed)"]
    lab = _cielab([h.get_facecolor()[:3] for h in handles])
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    # ΔE76 above 20: clearly different side by side (the old palette gave class 3 and "error" ΔE 12)
    assert distance.min() > 20, np.unravel_index(distance.argmin(), distance.shape)


def test_error_map_marks_errors_red_and_dims_correct_ink_to_the_legend_grey():
    image = np.array([[255, 255], [0, 255]], dtype=np.uint8)
    truth, predicted = np.array([[1, 2], [0, 0]]), np.array([[1, 3], [0, 0]])
    rgb = error_map(image, truth, predicted)
    np.testing.assert_allclose(rgb[0, 1], ERROR)
    np.testing.assert_allclose(rgb[0, 0], CORRECT)
    np.testing.assert_allclose(rgb[1, 0], 0)


def test_a_labelled_grid_shows_each_tile_at_its_corner_under_its_label():
    """The one picture of many small images: read back at the corners it returns, each tile is the image given
    (grey 0-255 shown as grey; RGB as given), a smaller one centred in its cell; everything else is the page's
    white; each label is above its tile, in its colour."""
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (10, 14), dtype=np.uint8), rng.random((6, 8, 3)).astype(np.float32),
             rng.integers(0, 256, (10, 14), dtype=np.uint8)]
    labels, colours = ["a", "b\nsecond line", "c"], ["black", "firebrick", "black"]
    fig, ax, corners = labelled_grid(tiles, labels, cols=2, cell_inches=1.0, colours=colours, heading="heading")
    canvas = ax.images[0].get_array()
    expected = [np.repeat(tiles[0][..., None] / 255, 3, -1), tiles[1], np.repeat(tiles[2][..., None] / 255, 3, -1)]
    covered = np.zeros(canvas.shape[:2], bool)
    for (left, top), tile in zip(corners, expected):
        np.testing.assert_allclose(canvas[top:top + tile.shape[0], left:left + tile.shape[1]], tile, atol=1e-6)
        covered[top:top + tile.shape[0], left:left + tile.shape[1]] = True
    assert (canvas[~covered] == 1).all()  # white between the tiles
    (left0, top0), (left1, top1), (left2, top2) = corners
    assert top1 == top0 + 2 and left1 - left0 == canvas.shape[1] // 2 + 3  # the small tile centred in its cell
    assert left2 == left0 and top2 > top0 + 10  # the next row
    assert [t.get_text() for t in ax.texts] == labels and [t.get_color() for t in ax.texts] == colours
    for text, (left, top), tile in zip(ax.texts, corners, expected):
        x, y = text.get_position()
        assert x == left + tile.shape[1] / 2 and y < top and text.get_va() == "bottom"  # above it (y points down)
    assert fig._suptitle.get_text() == "heading"
    plt.close(fig)
    fig, ax, corners = labelled_grid([], [], cols=8, cell_inches=1.0, empty="no mistakes")
    assert corners == [] and [t.get_text() for t in ax.texts] == ["no mistakes"]
    plt.close(fig)


@pytest.fixture
def grids(monkeypatch):
    """The (axes, corners) of every labelled grid the scene and box figures draw."""
    import cnnlab.viz.boxes
    import cnnlab.viz.segmentation_figures

    drawn = []

    def recorded(*args, **kwargs):
        fig, ax, corners = labelled_grid(*args, **kwargs)
        drawn.append((ax, corners))
        return fig, ax, corners

    for module in (cnnlab.viz.boxes, cnnlab.viz.segmentation_figures):
        monkeypatch.setattr(module, "labelled_grid", recorded)
    return drawn


def test_the_scenes_figure_shows_input_truth_prediction_and_errors_of_each_scene(grids):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 12, 16), dtype=np.uint8)
    truth, predicted = rng.integers(0, 11, (2, 3, 12, 16))
    classes = tuple(["background"] + [str(d) for d in range(10)])
    plt.close(scenes_figure(images, truth, predicted, classes, count=2))
    ((ax, corners),) = grids
    canvas = ax.images[0].get_array()
    expected = [picture for n in range(2) for picture in (
        np.repeat(images[n][..., None] / 255, 3, -1), PALETTE[truth[n]], PALETTE[predicted[n]],
        error_map(images[n], truth[n], predicted[n]))]
    assert len(corners) == 8
    for (left, top), picture in zip(corners, expected):
        np.testing.assert_allclose(canvas[top:top + 12, left:left + 16], picture, atol=1e-6)
    errors = [int((truth[n] != predicted[n]).sum()) for n in range(2)]
    assert [t.get_text() for t in ax.texts] == [
        text for n in range(2) for text in ("input", "ground truth", "prediction", f"errors: {errors[n]} px")]


def test_the_boxes_figure_draws_both_boxes_on_each_image_and_reds_the_missed(grids):
    from types import SimpleNamespace

    from cnnlab.viz.boxes import PREDICTED, TRUE, _evaluated

    images = np.random.default_rng(2).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    labels = torch.tensor([[1, 0.1, 0.2, 0.5, 0.9], [2, 0.0, 0.0, 1.0, 1.0], [3, 0.4, 0.1, 0.6, 0.3]])
    boxes = torch.tensor([[0.2, 0.2, 0.6, 0.8], [0.1, 0.1, 0.9, 0.9], [0.0, 0.5, 0.5, 1.0]])
    evaluation = SimpleNamespace(boxes=boxes, labels=labels, classes=labels[:, 0].long(),
                                 predictions=torch.tensor([1, 2, 5]), iou=torch.tensor([0.6, 0.64, 0.0]),
                                 localized=torch.tensor([True, True, False]))
    plt.close(_evaluated(images, evaluation, tuple(map(str, range(10))), [2, 0], "heading"))
    ((ax, corners),) = grids
    canvas = ax.images[0].get_array()
    for (left, top), index in zip(corners, [2, 0]):
        np.testing.assert_allclose(canvas[top:top + 20, left:left + 30, 0], images[index] / 255, atol=1e-6)
    drawn = [(p.get_xy(), p.get_width(), p.get_height(), to_rgb(p.get_edgecolor()), p.get_linestyle())
             for p in ax.patches]
    expected = []
    for (left, top), index in zip(corners, [2, 0]):
        for box, colour, style in [(labels[index, 1:], TRUE, "--"), (boxes[index], PREDICTED, "-")]:
            x0, y0, x1, y1 = box.tolist()
            expected.append(((left + x0 * 30, top + y0 * 20), (x1 - x0) * 30, (y1 - y0) * 20, to_rgb(colour), style))
    assert len(drawn) == 4
    for got, want in zip(drawn, expected):
        np.testing.assert_allclose([*got[0], *got[1:3], *got[3]], [*want[0], *want[1:3], *want[3]], atol=1e-5)
        assert got[4] == want[4]
    assert [t.get_text() for t in ax.texts] == ["true 3, pred 5\nIoU 0.00", "true 1, pred 1\nIoU 0.60"]
    assert [t.get_color() for t in ax.texts] == ["firebrick", "black"]


def test_a_predicted_scene_has_a_one_row_legend_in_class_order():
    scene = np.zeros((64, 84), dtype=np.uint8)
    classes = tuple(["background"] + [str(d) for d in range(10)])
    fig = scenes_figure([scene], None, [np.zeros((64, 84), dtype=int)], classes)
    legend = fig.legends[0]
    assert legend._ncols == 11 and [t.get_text() for t in legend.get_texts()] == list(classes)
    np.testing.assert_allclose([to_rgb(p.get_facecolor()) for p in legend.get_patches()], PALETTE)
    plt.close(fig)


def test_feature_maps_of_a_layer_share_one_scale_centred_on_zero_where_signed():
    torch.manual_seed(0)
    signed = torch.randn(6, 5, 5) * torch.arange(1, 7)[:, None, None]  # maps with very different ranges
    rectified = signed.relu()
    fig = plot_feature_maps(np.zeros((28, 28)), [("conv", signed), ("pool", rectified)], max_maps=4)
    rows = [ax for ax in fig.axes if ax.images][1:]  # after the input's
    assert len(rows) == 2  # one image of the maps side by side per layer
    limit = signed[:4].abs().max().item()
    for ax, maps in zip(rows, (signed, rectified)):
        (image,) = ax.images
        tiles = mosaic_tiles(image.get_array(), 5, 5, gap=1)[0]
        np.testing.assert_array_equal(tiles, maps[:4].numpy())  # the first 4 maps of each layer, in order
        assert [t.get_text() for t in ax.texts] == ["0", "1", "2", "3"]  # every map numbered
    assert rows[0].images[0].cmap is SIGNED
    assert (rows[0].images[0].norm.vmin, rows[0].images[0].norm.vmax) == pytest.approx((-limit, limit))
    assert rows[1].images[0].cmap.name == "gray"
    assert (rows[1].images[0].norm.vmin, rows[1].images[0].norm.vmax) == pytest.approx((0, rectified[:4].max().item()))
    assert sum(hasattr(ax, "_colorbar") for ax in fig.axes) == 2  # one colour bar per layer
    # the columns of every row line up: each row's image spans the same width per map
    assert rows[0].get_position().x0 == rows[1].get_position().x0
    plt.close(fig)


def test_grad_cam_and_saliency_of_a_model_with_frozen_early_layers():
    torch.manual_seed(0)
    model = get_model("simple-cnn").eval()
    for layer in (model.conv1, model.conv2):
        layer.requires_grad_(False)  # a transfer run's feature extractor
    x = torch.randn(1, 1, 28, 28)
    cam, layer = grad_cam(model, x, target=3)
    assert layer == "relu2" and cam.shape == (28, 28) and cam.max() == pytest.approx(1.0)
    assert gradient_saliency(model, x, target=3).max() > 0
    assert all(p.grad is None for p in model.conv1.parameters())  # frozen stays frozen


class PixelModel(nn.Module):
    """Segmentation logits [1, 2, H, W]: class 1's logit is 3x, class 0's a constant 1.5; class 1 is predicted
    where x > 0.5."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(3.0)
            self.conv.bias.zero_()

    def forward(self, x):
        score = self.conv(x)
        return torch.cat([torch.full_like(score, 1.5), score], 1)


def test_segmentation_saliency_explains_the_region_of_the_target_class():
    x = torch.tensor([[0.9, 0.1], [0.7, 0.2]])[None, None]
    # score = sum of class 1's logits (3x) over its region (x > 0.5): d/dx is 3 there, 0 elsewhere
    np.testing.assert_allclose(gradient_saliency(PixelModel(), x, target=1), [[3, 0], [3, 0]])
    # class 0 holds no pixel's argmax here... its constant logit has no gradient anywhere
    np.testing.assert_allclose(gradient_saliency(PixelModel(), x, target=0), 0)
    cam, layer = grad_cam(PixelModel(), x, target=1)
    assert layer == "conv"
    # one channel with mean gradient 2 * 1/4 over the region: relu(0.5 * 3x), normalized to max 1
    np.testing.assert_allclose(cam, (x[0, 0] / 0.9).numpy(), rtol=1e-5)


def test_a_registered_segmentation_model_gets_saliency_of_its_last_decoder_features():
    torch.manual_seed(0)
    model = get_model("unet", widths=[4, 8]).eval()
    x = torch.randn(1, 1, 64, 84)
    assert default_cam_layer(model, x) == "decode.0.5"  # the last ReLU before the 1x1 classifier
    target = int(model(x)[0].argmax(0).flatten().mode().values)
    cam, _ = grad_cam(model, x, target)
    saliency = gradient_saliency(model, x, target)
    assert cam.shape == saliency.shape == (64, 84) and cam.max() == pytest.approx(1.0) and saliency.max() > 0


def test_filters_figure_numbers_the_edge_detectors_and_shows_their_signed_responses(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    image = np.zeros((16, 16, 3), dtype=np.float32)
    image[:, 8:] = 1.0  # one vertical edge: a zero-sum kernel answers with both signs along it
    handcrafted.figure(image, list(handcrafted.CATALOGUE), tmp_path / "filters.png", "test")
    texts = [t.get_text() for ax in kept[0].axes for t in ax.texts]
    assert sum(t.startswith(f"Edge detection {i}\n") for t in texts for i in (1, 2, 3)) == 3
    shown = [ax.images[0] for ax in kept[0].axes if ax.images]
    assert len(shown) == len(handcrafted.CATALOGUE)
    for f, image_shown in zip(handcrafted.CATALOGUE, shown):
        values = np.asarray(image_shown.get_array())
        if handcrafted.is_signed(f):
            assert image_shown.norm.vmin == -image_shown.norm.vmax and values.min() < 0 < values.max()
        else:
            assert values.ndim == 3  # colour, clipped to [0, 1]


def mosaic_tiles(mosaic, kh: int, kw: int, gap: int) -> np.ndarray:
    """A mosaic image read back as its tiles [row, column, kh, kw] (NaN where a place is empty), checking that the
    gaps between them are empty."""
    rows, cols = (mosaic.shape[0] + gap) // (kh + gap), (mosaic.shape[1] + gap) // (kw + gap)
    padded = np.pad(np.ma.filled(mosaic, np.nan), ((0, gap), (0, gap)), constant_values=np.nan)
    tiles = padded.reshape(rows, kh + gap, cols, kw + gap).transpose(0, 2, 1, 3)
    assert np.isnan(tiles[:, :, kh:, :]).all() and np.isnan(tiles[:, :, :, kw:]).all()  # gaps between tiles only
    return tiles[:, :, :kh, :kw]


def kernel_tiles(fig, kh: int, kw: int) -> np.ndarray:
    """The kernels a deep layer's figure draws, [input channel, filter, kh, kw], read back from its mosaic image."""
    (mosaic,) = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    return mosaic_tiles(mosaic, kh, kw, round(0.25 * max(kh, kw)))


def test_a_deep_layer_shows_every_filter_with_no_empty_band():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 5)
    fig = plot_kernels("conv2", conv)
    fig.canvas.draw()
    # every filter's every input slice, in its place: column j is filter j, row i its input channel i
    np.testing.assert_array_equal(kernel_tiles(fig, 5, 5), conv.weight.detach().numpy().transpose(1, 0, 2, 3))
    assert "filters 0–31" in fig._suptitle.get_text() and "first" not in fig._suptitle.get_text()
    height = fig.get_figheight()
    (grid,) = [ax for ax in fig.axes if ax.images]
    assert (1 - grid.get_position().y1) * height < 0.8 and grid.get_position().y0 * height < 0.3  # inches left
    plt.close(fig)


def test_a_layer_with_more_filters_than_the_cap_says_so():
    conv = nn.Conv2d(8, 80, 3)
    fig = plot_kernels("conv", conv)
    np.testing.assert_array_equal(kernel_tiles(fig, 3, 3), conv.weight.detach().numpy()[:64].transpose(1, 0, 2, 3))
    assert "the first 64 of 80 filters" in fig._suptitle.get_text()
    plt.close(fig)


def test_hand_vs_learned_titles_learned_kernels_as_learned(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    names = list(handcrafted.by_short_name())
    arms = {arm: {"test_acc": 0.9} for arm in ("hand-crafted (frozen)", "random (frozen)", "learned")}
    arms["learned"]["filters"] = np.random.default_rng(0).normal(size=(len(names), 3, 3)).tolist()
    record = {"settings": {"epochs": 1, "train_limit": 600}, "result": {"datasets": {"mnist": arms}, "filters": names}}
    plot_hand_vs_learned(record, tmp_path / "figure.png")
    kernel_axes = [ax for ax in kept[0].axes if ax.images]
    assert [ax.get_title() for ax in kernel_axes[:len(names)]] == names
    assert [ax.get_title() for ax in kernel_axes[len(names):]] == [f"learned filter {i}" for i in range(len(names))]


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    config = recipe_config("default", epochs=1, train_limit=500, test_limit=100, threads=1, device="cpu")
    return Trainer(config, name="cls", runs_dir=tmp_path_factory.mktemp("runs"), progress=False).fit().run_dir


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", page)


def test_report_leads_with_results_then_the_model_then_the_collapsed_configuration(classification_run):
    assert main(["report", str(classification_run), "--samples", "2"]) == 0
    page = (classification_run / "report.html").read_text()
    assert _sections(page) == ["Training curves", "Confusion matrix", "Most confident mistakes", "Model",
                               "Configuration", "Learned filters", "Feature maps and saliency of 2 test images"]
    # one sample per class, in class order, each caption leading with its label (MNIST's first 0 is test image 3,
    # its first 1 test image 2: captions by index alone would count down)
    samples = re.findall(r"label (\d), test image (\d+): predicted", page)  # each sample's figures carry it
    assert list(dict.fromkeys(samples)) == [("0", "3"), ("1", "2")]
    assert "<td>conv2</td><td>Conv2d</td><td>32×8×8</td><td>12,832</td>" in page  # a layer of the summary
    assert "<p>80,202 parameters;" in page
    configuration = page[page.index("<h2>Configuration</h2>"):page.index("<h2>Learned filters</h2>")]
    assert "<details><summary>" in configuration and "<td>train_limit</td><td>500</td>" in configuration


def test_report_of_a_transfer_run_with_frozen_layers(classification_run, tmp_path):
    argv = ["transfer", "--from", str(classification_run), "--dataset", "mnist", "--mode", "feature-extract",
            "--epochs", "1", "--train-limit", "200", "--test-limit", "100", "--threads", "1",
            "--runs-dir", str(tmp_path), "--name", "frozen"]
    assert main(argv) == 0
    assert main(["report", str(tmp_path / "frozen"), "--samples", "1"]) == 0
    page = (tmp_path / "frozen" / "report.html").read_text()
    assert re.search(r"80,202 parameters, of which [\d,]+ frozen and 1,290 trainable", page)
    assert len(re.findall(r'alt="saliency, ', page)) == 1


def test_report_of_a_segmentation_run(tmp_path):
    config = recipe_config("segmentation", model="unet", model_options={"widths": [4, 8]},
                           dataset_options={"train_scenes": 64}, epochs=1, test_limit=8, threads=1, device="cpu",
                           precision="fp32")
    run_dir = Trainer(config, name="seg", runs_dir=tmp_path, progress=False).fit().run_dir
    (run_dir / "iou.png").unlink()  # redrawn from a new evaluation
    assert main(["report", str(run_dir), "--samples", "1"]) == 0
    page = (run_dir / "report.html").read_text()
    assert _sections(page) == ["IoU per class", "Training curves", "Test scenes", "Model", "Configuration",
                               "Learned filters", "Feature maps and saliency of 1 test scenes"]
    assert "<tr><th>class</th><th>IoU</th></tr><tr><td>background</td><td>0." in page  # the IoU table
    assert re.search(r"mean IoU <b>0\.\d{4}</b> \(background included\), pixel accuracy <b>\d+\.\d\d%</b>", page)
    alts = re.findall(r'alt="([^"]+)"', page)
    assert alts[:3] == ["IoU per class", "training curves", "scenes"]
    assert sum(a.startswith("feature maps, test scene 0") for a in alts) == 1
    assert sum(a.startswith("saliency, test scene 0") for a in alts) == 1
