"""Does an input look like the images a classifier was trained on? A classifier answers every input with a class,
a portrait as readily as a digit; this says when the answer is a guess about something it never saw.

Two scores, each with a threshold set on the run's own test images; an input beyond either is called unlike the
training images:

- energy, -logsumexp(logits) (Liu et al., "Energy-based out-of-distribution detection", 2020): the model's
  logits are all low for an input none of its features recognize, whatever the softmax makes of them; lower is
  more familiar. It is what the model says, and the main test: its threshold flags FALSE_ALARMS (1%) of the
  test images.
- for 28x28 single-channel images (digits, garments), the share of grey pixels among the drawn ones of the
  prepared image (from 64 to 159 among those of 64 or more): a pen stroke prepared MNIST-style is bright with a
  thin grey edge (a median of 24% on MNIST's test digits), a photograph or a texture mostly grey (a median of
  82% on the non-digit pictures of docs/inside.md). It is what the input looks like, whatever the model says;
  its threshold flags only 0.1% of the test images, as a photo of a real digit on unevenly lit paper can come
  out greyer than MNIST's.

`Familiarity.calibrate` sets the thresholds on the first CALIBRATION_IMAGES test images (0.2-2 s for the default
CNN); `judge` takes one prepared image and the model's logits for it. docs/inside.md reports both rates: false
alarms on the test images the thresholds were not set on, detections on non-digit pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.data.preprocess import normalize

FALSE_ALARMS = 0.01  # the share of test images the energy flags (the grey share a tenth of it)
CALIBRATION_IMAGES = 2000  # the first test images, which the thresholds are set on
DRAWN, BRIGHT = 64, 160  # a prepared digit's pixel is drawn from 64, bright (ink, not its edge) from 160


def energy(logits: torch.Tensor) -> np.ndarray:
    """-logsumexp over the classes of [N, K] logits: low for an input the model recognizes."""
    return (-torch.logsumexp(logits.float(), dim=1)).numpy()


def grey_share(images: np.ndarray) -> np.ndarray:
    """The share of grey pixels among the drawn ones of prepared uint8 digits ([N, 28, 28] or [28, 28])."""
    images = np.asarray(images)
    drawn = (images >= DRAWN).sum(axis=(-2, -1))
    grey = ((images >= DRAWN) & (images < BRIGHT)).sum(axis=(-2, -1))
    return grey / np.maximum(drawn, 1)


@dataclass(frozen=True)
class Judgement:
    """What `Familiarity.judge` makes of one input: its scores, their thresholds, and the reasons it is unlike."""
    familiar: bool
    energy: float
    energy_threshold: float
    greys: float | None
    greys_threshold: float | None
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"familiar": self.familiar, "energy": round(self.energy, 4),
                "energy_threshold": round(self.energy_threshold, 4),
                "grey_share": None if self.greys is None else round(self.greys, 4),
                "grey_share_threshold": None if self.greys_threshold is None else round(self.greys_threshold, 4),
                "false_alarms": FALSE_ALARMS}

    def describe(self) -> str:
        """'' when familiar; else a phrase saying why, with the scores and thresholds."""
        if self.familiar:
            return ""
        return f"unlike the training images: {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class Familiarity:
    """Thresholds set on a classifier's test images; `greys` only for 28x28 single-channel digits."""
    energy: float
    greys: float | None
    images: int

    @classmethod
    def calibrate(cls, model: torch.nn.Module, images: np.ndarray, info,
                  count: int = CALIBRATION_IMAGES) -> "Familiarity":
        """Thresholds at which `model`'s first `count` test `images` (uint8, as its dataset holds them) are flagged
        FALSE_ALARMS of the time by the energy, a tenth of that by the grey share."""
        images = np.asarray(images[:count])
        with torch.inference_mode():
            logits = torch.cat([model(_batch(images[i:i + 500], info)) for i in range(0, len(images), 500)])
        greys = float(np.quantile(grey_share(images), 1 - FALSE_ALARMS / 10)) if _is_digit(images[0]) else None
        return cls(float(np.quantile(energy(logits), 1 - FALSE_ALARMS)), greys, len(images))

    @classmethod
    def of(cls, subject, model: torch.nn.Module) -> "Familiarity | None":
        """The thresholds for a run (or a model of your own) at the model given, set on its first test images;
        None for a model with no dataset (--dataset none: no test images to set them on)."""
        from cnnlab.errors import ConfigError

        try:
            test = subject.test_split(limit=CALIBRATION_IMAGES)
        except ConfigError:
            return None
        return cls.calibrate(model, test.images, subject.info)

    def judge(self, image: np.ndarray, logits: torch.Tensor) -> Judgement:
        """One prepared uint8 image and the model's logits for it ([K] or [1, K])."""
        score = float(energy(logits.reshape(1, -1))[0])
        # a digit [28, 28] or [1, 28, 28] (a folder's or shards' grey images keep their channel)
        greys = float(grey_share(np.asarray(image).reshape(28, 28))) if self.greys is not None and _is_digit(image) \
            else None
        reasons = []
        if score > self.energy:
            reasons.append(f"energy {score:.1f} > {self.energy:.1f}, which {FALSE_ALARMS:.0%} of test images "
                           "exceed")
        if greys is not None and greys > self.greys:
            reasons.append(f"{greys:.0%} of its drawn pixels grey > {self.greys:.0%}, which "
                           f"{FALSE_ALARMS / 10:.1%} of test images exceed")
        return Judgement(not reasons, score, self.energy, greys, self.greys, tuple(reasons))


def _is_digit(image: np.ndarray) -> bool:
    return np.asarray(image).shape[-2:] == (28, 28) and (np.asarray(image).ndim == 2 or image.shape[0] == 1)


def _batch(images: np.ndarray, info) -> torch.Tensor:
    x = torch.from_numpy(normalize(images, info.mean, info.std))
    return x[:, None] if x.ndim == 3 else x
