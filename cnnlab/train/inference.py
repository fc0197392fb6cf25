"""A trained model applied: its numbers on a split of its dataset (`evaluate`: one run, with test-time augmentation,
or an ensemble), and its answer for images of any form (`predict`). `cnnlab evaluate` and `cnnlab predict` print
them; `run.evaluate()` and `run.predict()` return them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.preprocess import prepare_input
from cnnlab.errors import ConfigError
from cnnlab.train.batches import TensorSplit, eval_batch_size
from cnnlab.train.evaluation import View, averaged, tta_views
from cnnlab.train.streaming import split_for
from cnnlab.train.tasks import task_for
from cnnlab.viz.activations import normalize_input
from cnnlab.viz.familiarity import Familiarity


@dataclass
class Scores:
    """What `evaluate` measured: `accuracy` and `loss` (of pixels, for a segmentation, with `iou` per class and
    `mean_iou`), `per_class` accuracy of a classifier, `confusion` [K, K] (rows: true class); `evaluation` holds
    every image's logits (or predicted pixels) and `data` the images."""
    title: str
    task: str
    classes: tuple[str, ...]
    evaluation: object
    data: TensorSplit
    where: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    @property
    def loss(self) -> float:
        return self.evaluation.loss

    @property
    def confusion(self) -> torch.Tensor:
        if self.task == "segmentation":
            return self.evaluation.confusion
        return self.evaluation.confusion(len(self.classes))

    @property
    def per_class(self) -> dict[str, float]:
        """A classifier's accuracy on each class's images (a segmentation's IoU per class)."""
        if self.task == "segmentation":
            return dict(zip(self.classes, self.evaluation.iou.tolist()))
        confusion = self.confusion
        return dict(zip(self.classes, (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()))

    @property
    def mean_iou(self) -> float:
        return self.evaluation.mean_iou

    def as_dict(self) -> dict:
        """The numbers, as `cnnlab evaluate --json` prints them."""
        if self.task == "segmentation":
            return {**self.where, "scenes": len(self.data), "pixel_accuracy": self.accuracy,
                    "mean_iou": self.mean_iou, "mean_iou_includes_background": True, "loss": self.loss,
                    "iou": self.per_class}
        return {**self.where, "images": len(self.data), "accuracy": self.accuracy, "loss": self.loss,
                "per_class_accuracy": self.per_class}

    def __repr__(self) -> str:
        if self.task == "segmentation":
            return f"<Scores {self.title}: mean IoU {self.mean_iou:.4f}, pixel accuracy {self.accuracy:.2%}>"
        return f"<Scores {self.title}: accuracy {self.accuracy:.2%} of {len(self.data):,}, loss {self.loss:.4f}>"


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
    if task.name == "segmentation" and (tta or len(runs) > 1):
        raise ConfigError(f"{trained.path}: --tta and ensembles average a classifier's probabilities; this run "
                          "labels every pixel")
    for other in runs[1:]:
        if other.info.classes != trained.info.classes or task_for(other.config).name != task.name:
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
    return Scores(title, task.name, tuple(data.info.classes), result, data, where)


def predict(trained, images: list, checkpoint: str = "last", out: Path | None = None) -> list[dict]:
    """The run's answer for each image (a file, a PIL image, or an array or tensor of pixels), prepared as its
    dataset's images were: a classifier's class and probabilities, a segmentation's pixels per class (largest
    first); with `out`, a picture of each there (what a classifier sees; a segmentation's class map)."""
    info = trained.config.dataset_info()
    inputs = [prepare_input(image, info, getattr(trained, "input_shape", (1, 28, 28))) for image in images]
    model = trained.build_model(checkpoint)  # every image is read before any work is done
    names = [str(image) if isinstance(image, (str, Path)) else f"image {i}" for i, image in enumerate(images)]
    if info.task == "segmentation":
        return _segmented(model, info, names, [x for x, _ in inputs], out)
    with torch.inference_mode():
        logits = model(torch.cat([normalize_input(x, info.mean, info.std) for x, _ in inputs]))
    familiarity = Familiarity.of(trained, model)
    judged = [familiarity.judge(x, row) if familiarity else None for (x, _), row in zip(inputs, logits)]
    if out:
        from PIL import Image

        for name, (x, _) in zip(names, inputs):
            picture = x if x.ndim == 2 else x[0] if len(x) == 1 else x.transpose(1, 2, 0)  # [H, W] or [H, W, 3]
            Image.fromarray(picture).save(out / f"{Path(name).stem}_{x.shape[-1]}x{x.shape[-2]}.png")
    return [{"image": name, "class": info.classes[int(p.argmax())],
             "probabilities": {c: round(float(v), 6) for c, v in zip(info.classes, p)},
             "familiar": judgement is None or judgement.familiar, "unlike": judgement.describe() if judgement else "",
             "familiarity": judgement.to_dict() if judgement else None}
            for name, p, judgement in zip(names, logits.softmax(1), judged)]


def _segmented(model, info, names: list[str], scenes: list[np.ndarray], out) -> list[dict]:
    results = []
    for name, scene in zip(names, scenes):
        with torch.inference_mode():
            predicted = model(normalize_input(scene, info.mean, info.std)).argmax(1)[0].numpy()
        counts = np.bincount(predicted.ravel(), minlength=info.num_classes)
        row = {"image": name, "pixels_per_class": {info.classes[c]: int(counts[c]) for c in np.argsort(-counts)
                                                   if c and counts[c]}}
        if out:
            from cnnlab.viz.segmentation_figures import plot_scenes

            row["figure"] = str(out / f"{Path(name).stem}_segmented.png")
            plot_scenes([scene], None, [predicted], info.classes, row["figure"], titles=[Path(name).name])
        results.append(row)
    return results
