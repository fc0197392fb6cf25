"""`cnnlab evaluate RUN`: accuracy, loss and per-class accuracy of a trained run on a test set."""

from __future__ import annotations

from cnnlab.commands import add_command


def add_parser(subparsers):
    p = add_command(subparsers, "evaluate", "Evaluate a trained run on its test set (or another dataset split).", [
        "cnnlab evaluate runs/simple-cnn-mnist-20261125-101500",
        "cnnlab evaluate NAME --checkpoint best --split train",
    ], run)
    p.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return p


def run(args) -> int:
    import json

    import torch

    from cnnlab.train.batches import TensorSplit
    from cnnlab.train.runs import Run
    from cnnlab.train.evaluation import evaluate

    trained = Run.open(args.run)
    model = trained.build_model(args.checkpoint)
    data = TensorSplit(trained.config.load_split(args.split, args.data_dir))
    with torch.inference_mode():
        result = evaluate(model, data, args.batch_size)
    classes = data.info.classes
    confusion = result.confusion(len(classes))
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    numbers = {"run": str(trained.path), "checkpoint": args.checkpoint, "dataset": trained.config.dataset,
               "split": args.split, "images": len(data), "accuracy": result.accuracy, "loss": result.loss,
               "per_class_accuracy": dict(zip(classes, per_class))}
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{trained.name} ({args.checkpoint}) on {trained.config.dataset} {args.split}: "
                        f"{result.accuracy:.2%} of {len(data):,}, loss {result.loss:.4f}")
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("accuracy", justify="right")
    for i, name in enumerate(classes):
        table.add_row(name, f"{int(confusion[i].sum()):,}", f"{per_class[i]:.2%}")
    Console().print(table)
    return 0
