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


def run(args, only: str | None = None) -> int:
    """`cnnlab evaluate`; `only`: the task a task's own command (`segment evaluate`) takes."""
    import textwrap

    from cnnlab.errors import ConfigError
    from cnnlab.train.runs import Run

    for name in ("limit", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    runs = [Run.open(path) for path in args.run]  # before torch loads: a mistyped name is refused at once

    from cnnlab.commands.tables import print_table
    from cnnlab.tasks.parts import plain
    from cnnlab.train.inference import evaluate

    task = runs[0].task
    if only and task.name != only:
        raise ConfigError(f"{runs[0].path}: {runs[0].config.model} is not a {only} model "
                          "(use `cnnlab evaluate` / `cnnlab predict`)")
    scores = evaluate(runs, args.checkpoint, args.split, args.limit, args.batch_size, args.tta, args.data_dir,
                      quiet=args.json)
    if args.figure:
        task.evaluation_figure(scores.data, scores.evaluation, args.figure)
    if args.json:
        print(to_json(scores.as_dict(), indent=2))
        return 0
    for table in task.tables(scores.evaluation, scores.classes):
        print_table(table)
    # in 80 columns, wrapped between words: a run's name stays whole
    said = f"{scores.title}, {len(scores.data):,} {task.example}s: {plain(task.summary(scores.evaluation))}"
    print(textwrap.fill(said, 80, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
    return 0
