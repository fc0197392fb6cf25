"""How often `predict`, `show` and the explorer call an input unlike a run's training images
(cnnlab.viz.familiarity): false alarms on the test images the thresholds were not set on, detections on pictures
that are no digits (matplotlib's two sample photographs and crops of them, and numpy textures), and, for digit
runs, on MNIST test digits "photographed": dark ink on unevenly lit paper, noise, JPEG.

    python benchmarks/familiarity.py runs/NAME                 # 187 pictures, 200 photographed digits
    python benchmarks/familiarity.py runs/NAME --quick         # 24 pictures, 20 photographed digits
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageFilter

from cnnlab import hardware
from cnnlab.data.preprocess import load_digit, normalize
from cnnlab.errors import ImageError
from cnnlab.train.runs import Run
from cnnlab.viz.familiarity import CALIBRATION_IMAGES, Familiarity

PHOTOS = [Path(matplotlib.get_data_path()) / "sample_data" / name
          for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")]
TEXTURES = ("noise", "colour noise", "gradient", "stripes", "colour blobs", "pink noise", "checkerboard")


def nondigit_pictures(rng: np.random.Generator, crops: int = 40, textures: int = 15) -> dict[str, list[np.ndarray]]:
    """{kind: uint8 pictures}: each sample photograph whole and `crops` square crops of it, and `textures` of each
    kind in TEXTURES."""
    found: dict[str, list[np.ndarray]] = {"photograph": [], "crop": []}
    for path in PHOTOS:
        photo = np.asarray(Image.open(path).convert("RGB"))
        found["photograph"].append(photo)
        h, w = photo.shape[:2]
        for _ in range(crops):
            side = int(rng.integers(min(h, w) // 4, min(h, w)))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            found["crop"].append(photo[y:y + side, x:x + side])
    yy, xx = np.mgrid[0:128, 0:128] / 128
    for _ in range(textures):
        a, b, c = rng.uniform(0, 1, 3)
        blobs = Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).resize((128, 128))
        spectrum = np.fft.fft2(rng.normal(size=(128, 128, 3)), axes=(0, 1)) / (
            np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128)))[..., None] + 1e-2)
        pink = np.real(np.fft.ifft2(spectrum, axes=(0, 1)))
        squares = int(rng.integers(4, 16))
        made = {"noise": rng.normal(128, 50, (128, 128)), "colour noise": rng.normal(128, 50, (128, 128, 3)),
                "gradient": np.stack([255 * (a * xx + (1 - a) * yy), 255 * (b * yy + (1 - b) * (1 - xx)),
                                      255 * c * np.ones_like(xx)], -1),
                "stripes": np.stack([127 + 127 * np.sin(2 * np.pi * rng.uniform(2, 12) * (xx * np.cos(t) +
                                                                                          yy * np.sin(t)))
                                     for t in rng.uniform(0, np.pi, 3)], -1),
                "colour blobs": np.asarray(blobs.filter(ImageFilter.GaussianBlur(4))),
                "pink noise": 128 + 60 * pink / pink.std(),
                "checkerboard": np.kron(np.indices((squares, squares)).sum(0) % 2 * 255.0,
                                        np.ones((128 // squares + 1,) * 2))[:128, :128]}
        for kind, picture in made.items():
            found.setdefault(kind, []).append(np.clip(picture, 0, 255).astype(np.uint8))
    return found


def photographed(digits: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    """MNIST digits as a phone might take them: dark ink on paper lit unevenly, noise, JPEG at quality 70."""
    out = []
    yy, xx = np.mgrid[0:200, 0:200] / 200
    for digit in digits:
        ink = np.asarray(Image.fromarray(digit).resize((200, 200), Image.Resampling.BICUBIC)
                         .filter(ImageFilter.GaussianBlur(2)), dtype=np.float64) / 255
        paper = 0.75 + 0.2 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
        photo = paper * (1 - 0.8 * ink) + rng.normal(0, 0.02, ink.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(photo * 255, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=70)
        out.append(buffer.getvalue())
    return out


def as_png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    return buffer.getvalue()


def flagged(model: torch.nn.Module, info, familiarity: Familiarity, images: list[np.ndarray]) -> np.ndarray:
    """Whether each prepared uint8 digit is called unlike the training images."""
    if not images:
        return np.zeros(0, bool)
    x = torch.from_numpy(normalize(np.stack(images), info.mean, info.std))[:, None]
    with torch.inference_mode():
        logits = torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)])
    return np.array([not familiarity.judge(image, row).familiar for image, row in zip(images, logits)])


def prepared(pictures: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """The pictures prepared as `predict` prepares a digit, and how many of them the preparation refused ("no digit
    found": `predict` says so and answers nothing, so those count as told apart from digits)."""
    digits = []
    for picture in pictures:
        try:
            digits.append(load_digit(as_png(picture)))
        except ImageError:
            pass
    return digits, len(pictures) - len(digits)


def rates(model: torch.nn.Module, info, test_images: np.ndarray, pictures: list[np.ndarray]) -> dict[str, float]:
    """With the thresholds set on the first CALIBRATION_IMAGES test images: the share of the other test images
    flagged ("false alarms"); of `pictures`, the share the preparation refuses and the share refused or flagged
    ("detected"); of the pictures prepared as digits, the share flagged, and by the energy alone."""
    familiarity = Familiarity.calibrate(model, test_images, info)
    digits, refused = prepared(pictures)
    said = flagged(model, info, familiarity, digits)
    by_energy = flagged(model, info, dataclasses.replace(familiarity, greys=None), digits)
    return {"false alarms": float(flagged(model, info, familiarity, list(test_images[CALIBRATION_IMAGES:])).mean()),
            "refused": refused / len(pictures), "detected": (refused + said.sum()) / len(pictures),
            # of the pictures the preparation takes for digits, what the familiarity test itself tells apart
            "prepared": len(digits), "flagged": float(said.mean()), "by energy": float(by_energy.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run on 28x28 digits (MNIST)")
    parser.add_argument("--quick", action="store_true", help="5 crops and 2 textures of each kind, 20 digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = Run.open(args.run)
    model, info, test = run.build_model(), run.info, run.test_split()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    familiarity = Familiarity.calibrate(model, test.images, info)
    calibration = time.perf_counter() - start
    false_alarms = flagged(model, info, familiarity, list(test.images[CALIBRATION_IMAGES:]))
    print(f"{run.name}: thresholds set on test images 0-{CALIBRATION_IMAGES - 1} in {calibration:.2f} s: energy "
          f"{familiarity.energy:.2f}, grey share {familiarity.greys:.3f}")
    print(f"false alarms: {false_alarms.mean():.2%} of the other {len(false_alarms):,} test images")
    kinds = nondigit_pictures(rng, *((5, 2) if args.quick else (40, 15)))
    every = []
    for kind, pictures in kinds.items():
        digits, refused = prepared(pictures)
        said = [*flagged(model, info, familiarity, digits), *[True] * refused]
        every += said
        print(f"  {kind}: {np.mean(said):.0%} of {len(said)} flagged" + (f" ({refused} refused: no digit found)"
                                                                          if refused else ""))
    print(f"detected: {np.mean(every):.1%} of {len(every)} non-digit pictures")
    count = 20 if args.quick else 200
    digits = test.images[CALIBRATION_IMAGES:CALIBRATION_IMAGES + count]
    labels = test.labels[CALIBRATION_IMAGES:CALIBRATION_IMAGES + count]
    photos, kept = [], []
    for i, photo in enumerate(photographed(digits, rng)):
        try:
            photos.append(load_digit(photo))
            kept.append(i)
        except ImageError:  # the preparation found no digit: `predict` would answer nothing
            pass
    said = flagged(model, info, familiarity, photos)
    x = torch.from_numpy(normalize(np.stack(photos), info.mean, info.std))[:, None]
    with torch.inference_mode():
        wrong = (model(x).argmax(1).numpy() != labels[kept]).mean()
    refused = [CALIBRATION_IMAGES + i for i in range(count) if i not in kept]
    print(f"photographed digits: {said.sum() / count:.1%} of {count} flagged ({wrong:.1%} of them misread)"
          + (f", {len(refused)} refused (no digit found: test images {refused})" if refused else ""))
    print(f"CPU: {hardware.cpu_model()}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
