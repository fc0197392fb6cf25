"""`cnnlab evaluate RUN`: a trained run's numbers on a split of its dataset: accuracy, loss and per-class accuracy of
a classifier; pixel accuracy, per-class and mean IoU of a segmentation."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "evaluate", "Evaluate a trained run on its test set (or another split): accuracy, "
                    "or IoU for segmentation.", [
        "cnnlab evaluate runs/simple-cnn-mnist-20261125-101500",
        "cnnlab evaluate NAME --checkpoint best --split train --limit 5000",
        "cnnlab evaluate runs/unet-mnist-scenes-20261125-101500 --figure scenes.png",
        "cnnlab evaluate NAME --tta                 # averaged over shifted (zoomed) copies",
        "cnnlab evaluate RUN1 RUN2 RUN3             # an ensemble: their probabilities averaged",
    ], run)
    add_evaluate_options(p)
    return p


def add_evaluate_options(p) -> None:
    """The options of `evaluate` (and of `segment evaluate`, which is the same command for segmentation runs)."""
    p.add_argument("run", metavar="RUN", nargs="+", help="run folder (or its name under runs/); several: an "
                   "ensemble of classifiers of one dataset, their class probabilities averaged")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average the class probabilities "
                   "of each image and its four 1-pixel shifts, of their mirror images for runs trained with flips, "
                   "and of the image zoomed in and out for runs trained with scale jitter (classifiers)")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate on the first N images of the split only")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per batch (default: the run's "
                                                               "eval batch size)")
    p.add_argument("--figure", metavar="PNG", help="also draw the confusion matrix (classification) or input | "
                                                   "truth | prediction | errors (segmentation)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the dataset files (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")


def run(args, segmentation_only: bool = False) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.train.runs import Run

    for name in ("limit", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    runs = [Run.open(path) for path in args.run]  # before torch loads: a mistyped name is refused at once

    import torch

    from cnnlab.train.batches import TensorSplit
    from cnnlab.train.evaluation import View, averaged, tta_views
    from cnnlab.train.tasks import task_for

    trained = runs[0]
    task = task_for(trained.config)
    if segmentation_only and task.name != "segmentation":
        raise ConfigError(f"{trained.path}: {trained.config.model} is not a segmentation model "
                          "(use `cnnlab evaluate` / `cnnlab predict`)")
    if task.name == "segmentation" and (args.tta or len(runs) > 1):
        raise ConfigError(f"{trained.path}: --tta and ensembles average a classifier's probabilities; this run "
                          "labels every pixel")
    for other in runs[1:]:
        if other.info.classes != trained.info.classes or task_for(other.config).name != task.name:
            raise ConfigError(f"{other.path}: an ensemble's runs classify the same classes ({trained.name}: "
                              f"{trained.config.dataset}, {other.name}: {other.config.dataset})")
    # NHWC, as the trainer's own evaluation: on a CPU oneDNN runs these convolutions about twice as fast in it.
    models = [run.build_model(args.checkpoint).to(memory_format=torch.channels_last) for run in runs]
    data = TensorSplit(trained.config.load_split(args.split, args.data_dir, quiet=args.json, limit=args.limit),
                       limit=args.limit)
    # An ensemble's images are mirrored (zoomed) only if every one of its runs was trained on mirror images
    # (scale jitter); zoomed within the narrowest of their ranges.
    augments = [run.config.augment or {} for run in runs]
    views = tta_views(all(a.get("flip") for a in augments),
                      min(a.get("max_scale") or 0.0 for a in augments)) if args.tta else (View(),)
    with torch.inference_mode():
        if args.tta or len(models) > 1:
            logits_fn = averaged(models, views)
        else:
            logits_fn = models[0]
        result = task.evaluate(logits_fn, data, args.batch_size or trained.config.eval_batch_size)
    where = {"run": str(trained.path) if len(runs) == 1 else [str(run.path) for run in runs],
             "checkpoint": args.checkpoint, "dataset": trained.config.dataset, "split": args.split,
             "tta": args.tta, "views": len(views)}
    what = trained.name if len(runs) == 1 else f"an ensemble of {len(runs)} runs"
    tta = f", {len(views)}-view TTA" if args.tta else ""
    title = f"{what} ({args.checkpoint}{tta}) on {trained.config.dataset} {args.split}"
    if task.name == "segmentation":
        return _segmentation(args, data, result, where, f"{title}, {len(data):,} scenes")
    classes = data.info.classes
    confusion = result.confusion(len(classes))
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    if args.figure:
        from cnnlab.viz.training import plot_confusion

        plot_confusion(confusion, classes, args.figure)
    if args.json:
        print(to_json({**where, "images": len(data), "accuracy": result.accuracy, "loss": result.loss,
                          "per_class_accuracy": dict(zip(classes, per_class))}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("accuracy", justify="right")
    for i, name in enumerate(classes):
        table.add_row(name, f"{int(confusion[i].sum()):,}", f"{per_class[i]:.2%}")
    console = Console()
    console.print(f"{title}: [bold]{result.accuracy:.2%}[/] of {len(data):,}, loss {result.loss:.4f}")
    console.print(table)
    return 0


def _segmentation(args, data, result, where: dict, title: str) -> int:

    from cnnlab.commands.tables import print_iou

    classes = data.info.classes
    if args.figure:
        from cnnlab.viz.segmentation_figures import plot_scenes

        plot_scenes(data.images[:, 0].numpy(), data.labels.numpy(), result.predictions.numpy(), classes,
                    args.figure)
    if args.json:
        print(to_json({**where, "scenes": len(data), "pixel_accuracy": result.accuracy,
                          "mean_iou": result.mean_iou, "mean_iou_includes_background": True, "loss": result.loss,
                          "iou": dict(zip(classes, result.iou.tolist()))}, indent=2))
        return 0
    print_iou(result, classes, title)
    return 0
