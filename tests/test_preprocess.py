import io

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_mnist
from cnnlab.data.preprocess import MAX_PIXELS, load_digit
from cnnlab.errors import ImageError


def photo_of(digit: np.ndarray, scale: int = 6, canvas=(300, 260), offset=(40, 70), fmt="PNG") -> bytes:
    """A 'photo' of an MNIST digit: dark ink on white paper, enlarged, off-centre on a bigger sheet."""
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    sheet = Image.new("L", canvas, 255)
    sheet.paste(ink, offset)
    buffer = io.BytesIO()
    sheet.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    mass = image.sum()
    return (ys * image).sum() / mass, (xs * image).sum() / mass


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_round_trip_reproduces_mnist_digits(fmt):
    test = load_mnist("test")
    correlations = []
    for digit in test.images[:40]:
        prepared = load_digit(photo_of(digit, fmt=fmt))
        assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
        cy, cx = centre_of_mass(prepared.astype(float))
        assert abs(cy - 14) < 1 and abs(cx - 14) < 1
        rows, cols = np.nonzero(prepared > 30)
        assert 17 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # the longer side is scaled to ~20 px
        correlations.append(np.corrcoef(prepared.ravel(), digit.ravel())[0, 1])
    assert np.median(correlations) > 0.85


def test_transparent_background_counts_as_paper():
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((20, 20, 20, 255), (45, 10, 55, 90))  # a vertical bar: a "1"
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    prepared = load_digit(buffer.getvalue())
    rows, cols = np.nonzero(prepared > 100)
    assert np.ptp(rows) + 1 == 20 and np.ptp(cols) + 1 <= 4


def test_white_on_black_is_not_inverted():
    digit = load_mnist("test").images[0]
    prepared = load_digit(photo_of(255 - digit))  # light digit on dark paper, as MNIST itself
    assert prepared[0, 0] == 0 and prepared.max() > 200


@pytest.mark.parametrize("payload,message", [
    (b"", "empty file"),
    (b"GIF89a not really", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
])
def test_bad_images_get_one_line_errors(payload, message):
    with pytest.raises(ImageError, match=message):
        load_digit(payload, name="upload.png")


def test_blank_and_truncated_images(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    with pytest.raises(ImageError, match="blank.png: no digit found"):
        load_digit(blank)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(photo_of(load_mnist("test").images[1])[:300])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        load_digit(truncated)
    with pytest.raises(ImageError, match="missing.png: file not found"):
        load_digit(tmp_path / "missing.png")


def test_huge_image_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 10
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, "PNG")
    with pytest.raises(ImageError, match="pixels is more than"):
        load_digit(buffer.getvalue())


def test_sixteen_bit_grayscale():
    digit = load_mnist("test").images[2].astype(np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(digit).resize((112, 112)).save(buffer, "PNG")
    prepared = load_digit(buffer.getvalue())
    assert prepared.max() > 200 and prepared[0, 0] == 0
