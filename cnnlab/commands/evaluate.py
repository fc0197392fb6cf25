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

    from cnnlab.train.inference import evaluate
    from cnnlab.train.tasks import task_for

    if segmentation_only and task_for(runs[0].config).name != "segmentation":
        raise ConfigError(f"{runs[0].path}: {runs[0].config.model} is not a segmentation model "
                          "(use `cnnlab evaluate` / `cnnlab predict`)")
    scores = evaluate(runs, args.checkpoint, args.split, args.limit, args.batch_size, args.tta, args.data_dir,
                      quiet=args.json)
    if scores.task == "segmentation":
        return _segmentation(args, scores)
    if args.figure:
        from cnnlab.viz.training import plot_confusion

        plot_confusion(scores.confusion, scores.classes, args.figure)
    if args.json:
        print(to_json(scores.as_dict(), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("accuracy", justify="right")
    confusion = scores.confusion
    for i, (name, accuracy) in enumerate(scores.per_class.items()):
        table.add_row(name, f"{int(confusion[i].sum()):,}", f"{accuracy:.2%}")
    console = Console()
    console.print(f"{scores.title}: [bold]{scores.accuracy:.2%}[/] of {len(scores.data):,}, loss {scores.loss:.4f}")
    console.print(table)
    return 0


def _segmentation(args, scores) -> int:
    from cnnlab.commands.tables import print_iou

    data, result = scores.data, scores.evaluation
    if args.figure:
        from cnnlab.viz.segmentation_figures import plot_scenes

        plot_scenes(data.images[:, 0].numpy(), data.labels.numpy(), result.predictions.numpy(), scores.classes,
                    args.figure)
    if args.json:
        print(to_json(scores.as_dict(), indent=2))
        return 0
    print_iou(result, scores.classes, f"{scores.title}, {len(data):,} scenes")
    return 0
