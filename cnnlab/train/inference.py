"""A trained model applied: its numbers on a split of its dataset (`evaluate`: one run, with test-time augmentation,
or an ensemble), and its answer for images of any form (`predict`). `cnnlab evaluate` and `cnnlab predict` print
them; `run.evaluate()` and `run.predict()` return them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.errors import ConfigError
from cnnlab.tasks import Task, task_for
from cnnlab.tasks.parts import plain
from cnnlab.tasks.task import ENSEMBLE
from cnnlab.train.batches import eval_batch_size
from cnnlab.train.evaluation import View, averaged, tta_views
from cnnlab.train.streaming import split_for
from cnnlab.viz.activations import normalize_input
from cnnlab.viz.familiarity import Familiarity


@dataclass
class Scores:
    """What `evaluate` measured, as the run's task counts it (cnnlab.tasks): `accuracy` (of images, of pixels for a
    segmentation, of classes for a localization) and `loss`, `per_class` numbers, `confusion` [K, K] (rows: the
    true class), and whatever else the task's evaluation holds (`mean_iou`, `localization_accuracy`, ...);
    `evaluation` holds every image's outputs and `data` the images."""
    title: str
    task: Task
    classes: tuple[str, ...]
    evaluation: object
    data: object
    where: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name.startswith("_") or "evaluation" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.evaluation, name)  # accuracy, loss, mean_iou, localization_accuracy, ...

    @property
    def per_class(self) -> dict:
        """Each class's numbers: a classifier's accuracy on its images, a segmentation's IoU, a localization's
        images, class accuracy, box IoU and share localized."""
        return self.task.per_class(self.evaluation, self.classes)

    @property
    def confusion(self) -> torch.Tensor:
        return self.task.confusion(self.evaluation, len(self.classes))

    def as_dict(self) -> dict:
        """The numbers, as `cnnlab evaluate --json` prints them."""
        return {**self.where, **self.task.evaluation_json(self.evaluation, self.classes)}

    def __repr__(self) -> str:
        said = plain(self.task.summary(self.evaluation))
        return f"<Scores {self.title}, {len(self.data):,} {self.task.example}s: {said}>"


def evaluate(runs: list, checkpoint: str = "last", split: str = "test", limit: int | None = None,
             batch_size: int | None = None, tta: bool = False, data_dir: str | None = None,
             quiet: bool = True) -> Scores:
    """The numbers of one run, or of an ensemble of runs of one dataset (their class probabilities averaged), on
    `split` (its first `limit` images); `tta` averages each image's shifted (mirrored, zoomed) views."""
    for name, value in (("limit", limit), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if split not in ("train", "test"):
        raise ConfigError(f"--split {split!r}: expected train or test")
    trained = runs[0]
    task = task_for(trained.config)
    if tta or len(runs) > 1:
        task.refuse(ENSEMBLE, trained.path)
    for other in runs[1:]:
        if other.info.classes != trained.info.classes or task_for(other.config) is not task:
            raise ConfigError(f"{other.path}: an ensemble's runs classify the same classes ({trained.name}: "
                              f"{trained.config.dataset}, {other.name}: {other.config.dataset})")
    # NHWC, as the trainer's own evaluation: on a CPU oneDNN runs these convolutions about twice as fast in it.
    models = [run.build_model(checkpoint).to(memory_format=torch.channels_last) for run in runs]
    data = split_for(trained.config.load_split(split, data_dir, quiet=quiet, limit=limit), limit=limit,
                     workers=trained.config.workers)
    # An ensemble's images are mirrored (zoomed) only if every one of its runs was trained on mirror images
    # (scale jitter); zoomed within the narrowest of their ranges.
    augments = [run.config.augment or {} for run in runs]
    views = tta_views(all(a.get("flip") for a in augments),
                      min(a.get("max_scale") or 0.0 for a in augments)) if tta else (View(),)
    with torch.inference_mode():
        logits_fn = averaged(models, views) if tta or len(models) > 1 else models[0]
        result = task.evaluate(logits_fn, data, batch_size or eval_batch_size(trained.config.eval_batch_size,
                                                                              data.shape))
    where = {"run": str(trained.path) if len(runs) == 1 else [str(run.path) for run in runs],
             "checkpoint": checkpoint, "dataset": trained.config.dataset, "split": split, "tta": tta,
             "views": len(views)}
    what = trained.name if len(runs) == 1 else f"an ensemble of {len(runs)} runs"
    title = f"{what} ({checkpoint}{f', {len(views)}-view TTA' if tta else ''}) on {trained.config.dataset} {split}"
    return Scores(title, task, tuple(data.info.classes), result, data, where)


def predict(trained, images: list, checkpoint: str = "last", out: Path | None = None) -> list[dict]:
    """The run's answer for each image (a file, a PIL image, or an array or tensor of pixels), prepared as its
    dataset's images were, as its task writes it: a classifier's class and probabilities (and whether the image
    looks like the training images), a segmentation's pixels per class (largest first), a localization's class and
    box; with `out`, a picture of each there (what a classifier sees; a segmentation's class map; the box)."""
    info, task = trained.info, trained.task
    inputs = [task.prepare_any(image, info, trained.input_shape) for image in images]
    model = trained.build_model(checkpoint)  # every image is read before any work is done
    familiarity = Familiarity.of(trained, model) if task.judges_familiarity else None
    results = []
    for i, (image, name) in enumerate(inputs):
        name = name if isinstance(images[i], (str, Path)) else f"image {i}"
        with torch.inference_mode():
            output = model(normalize_input(image, info.mean, info.std))
        row = {"image": name, **task.predict(output, info, image.shape[-2:])[0]}
        if familiarity:
            judgement = familiarity.judge(image, task.class_scores(output)[0])
            row.update(familiar=judgement.familiar, unlike=judgement.describe(), familiarity=judgement.to_dict())
        if out:
            row["figure"] = str(task.prediction_picture(image, output[0], info, Path(out) / Path(name).stem))
        results.append(row)
    return results
