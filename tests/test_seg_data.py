import numpy as np
import pytest

from cnnlab.data import load_dataset, load_mnist, scenes
from cnnlab.errors import ConfigError, DatasetError


def reference_render(layout, digits, classes):
    """Scene by scene, digit by digit, pixel rules spelled out: the oracle for the vectorized `render`."""
    count = len(layout["index"])
    images = np.zeros((count, scenes.HEIGHT, scenes.WIDTH), np.uint8)
    masks = np.zeros_like(images)
    for s in range(count):
        for slot in range(layout["index"].shape[1]):
            if not layout["present"][s, slot]:
                continue
            digit = digits[layout["index"][s, slot]]
            top, left = layout["top"][s, slot], layout["left"][s, slot]
            for r in range(28):
                for c in range(28):
                    y, x, value = top + r, left + c, digit[r, c]
                    if value >= scenes.INK:  # the later digit's ink covers what is below
                        images[s, y, x], masks[s, y, x] = value, classes[layout["index"][s, slot]] + 1
                    else:
                        images[s, y, x] = max(images[s, y, x], value)
    return images, masks


@pytest.mark.parametrize("split", ["train", "test"])
def test_scenes_are_made_of_their_own_split_digits_only(split):
    # Rendering the layout with the split's own MNIST digits reproduces the dataset exactly, and the layout only
    # indexes that split: no test digit can be in a train scene, nor the reverse.
    mnist = load_mnist(split)
    data = scenes.load_scenes(split, count=40)
    layout = scenes.draw_layout(40, len(mnist), scenes.DEFAULT_SEED, split)
    assert layout["index"].max() < len(mnist)
    images, masks = reference_render(layout, mnist.images, mnist.labels)
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, masks)


def test_denser_scenes_on_request(monkeypatch, tmp_path):
    # Up to 5 digits a scene (the train_digits / test_digits dataset options): rendered as the oracle renders them,
    # cached apart from the 3-digit sets.
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    scenes.load_scenes.cache_clear()
    mnist = load_mnist("test")
    data = load_dataset("mnist-scenes", "test", options={"test_scenes": 40, "test_digits": 5})
    layout = scenes.draw_layout(40, len(mnist), scenes.DEFAULT_SEED, "test", max_digits=5)
    assert layout["present"].sum(1).max() == 5
    images, masks = reference_render(layout, mnist.images, mnist.labels)
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, masks)
    assert scenes.cache_path("test", 40, 0, max_digits=5).is_file() and not scenes.cache_path("test", 40, 0).exists()


def test_labels_match_digit_masks_and_overlaps_put_the_later_digit_on_top():
    mnist = load_mnist("test")
    # digit 0 at (0, 0), digit 1 overlapping it at (10, 12): slot order decides who is on top
    layout = {"index": np.array([[0, 1, 0]]), "top": np.array([[0, 10, 0]]), "left": np.array([[0, 12, 0]]),
              "present": np.array([[True, True, False]])}
    images, masks = scenes.render(layout, mnist.images, mnist.labels)
    first, second = mnist.images[0], mnist.images[1]
    ink_first, ink_second = first >= scenes.INK, second >= scenes.INK
    label_first, label_second = mnist.labels[0] + 1, mnist.labels[1] + 1
    assert np.array_equal(masks[0, 38:, :], np.zeros((26, 84)))  # nothing painted below both digits
    assert np.array_equal(masks[0, 10:38, 12:40] == label_second, ink_second)
    assert np.array_equal(images[0, 10:38, 12:40][ink_second], second[ink_second])
    uncovered = ink_first.copy()
    uncovered[10:, 12:] &= ~ink_second[:18, :16]
    assert np.array_equal(masks[0, :28, :28] == label_first, uncovered)
    assert set(np.unique(masks)) == {0, label_first, label_second}


def test_generation_is_deterministic_and_prefixes_are_smaller_sets():
    big = scenes.draw_layout(2500, 60000, seed=7, split="train")
    small = scenes.draw_layout(1200, 60000, seed=7, split="train")
    assert all(np.array_equal(big[k][:1200], small[k]) for k in big)
    other_seed = scenes.draw_layout(1200, 60000, seed=8, split="train")
    assert not np.array_equal(other_seed["index"], small["index"])
    counts = big["present"].sum(1)
    assert counts.min() == 1 and counts.max() == scenes.MAX_DIGITS
    assert big["top"].max() == scenes.HEIGHT - 28 and big["left"].max() == scenes.WIDTH - 28


def test_scenes_are_cached_atomically_keyed_by_seed_and_count(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    scenes.load_scenes.cache_clear()
    first = scenes.load_scenes("test", count=30, seed=3)
    path = scenes.cache_path("test", 30, 3)
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    scenes.load_scenes.cache_clear()
    monkeypatch.setattr(scenes, "render", lambda *a: pytest.fail("regenerated instead of reading the cache"))
    again = scenes.load_scenes("test", count=30, seed=3)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    assert not again.images.flags.writeable


def test_registered_dataset_and_clear_errors(monkeypatch, tmp_path):
    data = load_dataset("mnist-scenes", "test")
    assert data.images.shape == (2000, 64, 84) and data.labels.dtype == np.uint8
    assert data.info.num_classes == 11 and data.info.task == "segmentation"
    assert abs(data.images.mean() / 255 - data.info.mean) < 0.003  # the stored mean is of the train scenes
    with pytest.raises(ConfigError, match="scene count must be at least 1"):
        scenes.load_scenes("train", count=0)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    scenes.load_scenes.cache_clear()
    scenes.cache_path("test", 5, 0).parent.mkdir(parents=True)
    scenes.cache_path("test", 5, 0).write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="unreadable scene cache.*delete it"):
        scenes.load_scenes("test", count=5)


def test_dataset_options_draw_more_scenes_and_are_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    scenes.load_scenes.cache_clear()
    more = load_dataset("mnist-scenes", "test", options={"test_scenes": 2300})
    default = load_dataset("mnist-scenes", "test")
    assert len(more) == 2300 and len(default) == 2000
    assert np.array_equal(more.images[:2000], default.images)  # the default set is a prefix of any larger one
    assert np.array_equal(more.labels[:2000], default.labels)
    with pytest.raises(ConfigError, match="dataset option 'scenes': dataset mnist-scenes has no such option "
                                          r"\(it takes train_scenes, test_scenes, train_digits, test_digits\)"):
        load_dataset("mnist-scenes", "test", options={"scenes": 10})
    with pytest.raises(ConfigError, match="dataset option 'train_scenes': dataset mnist has no such option "
                                          r"\(it takes none\)"):
        load_dataset("mnist", "test", options={"train_scenes": 10})
    for bad in (0, 2.5, "100", True):
        with pytest.raises(ConfigError, match="dataset option 'test_scenes' must be a positive integer"):
            load_dataset("mnist-scenes", "test", options={"test_scenes": bad})
