"""What the Trainer does differently per task: how to evaluate, which metric picks the best epoch, which report.

The model's registry entry names its task; the dataset's entry names the labels it has (one per image, or one
per pixel), and the two must agree. Training itself is the same for both: `F.cross_entropy` takes [N, K] logits
with [N] labels and [N, K, H, W] logits with [N, H, W] labels alike.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data import dataset_info
from cnnlab.errors import ConfigError
from cnnlab.models import model_info
from cnnlab.train.evaluation import Evaluation, SegmentationEvaluation, evaluate, evaluate_segmentation
from cnnlab.viz import segmentation_figures, training


class Classification:
    name = "classification"
    best_metric = "test_acc"
    metric_name = "test accuracy"

    @staticmethod
    def format_metric(value: float) -> str:
        return f"{value:.2%}"

    def evaluate(self, logits_fn, data, batch_size: int) -> Evaluation:
        return evaluate(logits_fn, data, batch_size)

    def metrics(self, evaluation) -> dict:
        return {}

    def headline(self, evaluation, short: bool = False) -> str:
        return f"test {evaluation.accuracy:.2%}" if short else f"test acc {evaluation.accuracy:.2%}"

    def write_report(self, run_dir: Path, config, data, result) -> None:
        info = data.info
        training.plot_curves(result.history, run_dir / "curves.png", title=run_dir.name)
        training.plot_confusion(result.final.confusion(info.num_classes), info.classes, run_dir / "confusion.png")
        training.plot_mistakes(data.images, result.final, info.classes, run_dir / "mistakes.png")
        training.write_summary(run_dir, config, result)


class Segmentation:
    name = "segmentation"
    best_metric = "test_miou"
    metric_name = "mean IoU"

    @staticmethod
    def format_metric(value: float) -> str:
        return f"{value:.3f} mIoU"

    def evaluate(self, logits_fn, data, batch_size: int) -> SegmentationEvaluation:
        return evaluate_segmentation(logits_fn, data, batch_size)

    def metrics(self, evaluation: SegmentationEvaluation) -> dict:
        return {"test_miou": evaluation.mean_iou}

    def headline(self, evaluation: SegmentationEvaluation, short: bool = False) -> str:
        if short:
            return f"mIoU {evaluation.mean_iou:.3f}"
        return f"test mIoU {evaluation.mean_iou:.4f}  pixel acc {evaluation.accuracy:.2%}"

    def write_report(self, run_dir: Path, config, data, result) -> None:
        training.plot_curves(result.history, run_dir / "curves.png", title=f"{run_dir.name} (accuracy: of pixels)")
        segmentation_figures.plot_iou(result.history, result.final, data.info.classes, run_dir / "iou.png")
        segmentation_figures.plot_scenes(data.images.cpu()[:, 0].numpy(), data.labels.cpu().numpy(), result.final.predictions.numpy(),
                    data.info.classes, run_dir / "scenes.png")
        segmentation_figures.write_summary(run_dir, config, result, data.info.classes)


TASKS = {task.name: task for task in (Classification(), Segmentation())}


def task_for(config):
    """The task of `config.model`, checked against the dataset and the settings it supports."""
    task = TASKS[model_info(config.model).task]
    dataset = dataset_info(config.dataset)
    if dataset.task != task.name:
        raise ConfigError(f"model {config.model!r} does {task.name} but dataset {config.dataset!r} is for "
                          f"{dataset.task} (use a {task.name} dataset, e.g. "
                          f"{'mnist-scenes' if task.name == 'segmentation' else 'mnist'})")
    if task.name == "segmentation" and config.engine != "torch":
        raise ConfigError(f"--engine {config.engine}: segmentation trains with the torch engine only")
    if task.name == "segmentation" and config.augment:
        raise ConfigError("--augment: the affine jitter moves images but not their pixel labels; "
                          "it is for classification only")
    return task
