"""`cnnlab segment train|evaluate|predict`: label every pixel of MNIST scenes with FCN-32s/16s/8s or U-Net.

`segment train` is `cnnlab train` (same options, Trainer, run folders and checkpoints) starting from the
`segmentation` recipe; evaluation reports pixel accuracy and the IoU of every class.
"""

from __future__ import annotations

from cnnlab.commands import add_command, example_epilog
from cnnlab.errors import ConfigError


def add_parser(subparsers):
    from cnnlab.commands import train

    p = add_command(subparsers, "segment", "Segmentation: train, evaluate or apply FCN / U-Net on MNIST scenes.", [
        "cnnlab segment train                                   # U-Net on mnist-scenes: 0.90 mean IoU, ~5 min",
        "cnnlab segment train --model fcn-8s --epochs 1",
        "cnnlab segment evaluate runs/unet-mnist-scenes-20261125-101500 --figure scenes.png",
        "cnnlab segment predict NAME my_digits.png --out segmented/",
    ], _usage)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))

    fit = train.add_parser(actions)
    fit.description = "Train a segmentation model (default: the `segmentation` recipe, U-Net on mnist-scenes)."
    fit.epilog = example_epilog("cnnlab segment train --epochs 2 --train-limit 2000",
                                "cnnlab segment train --model fcn-32s --lr 0.005",
                                "cnnlab segment train --config runs/NAME/config.json",
                                "cnnlab segment train --resume runs/NAME")
    fit.set_defaults(func=_train)

    evaluate = add_command(actions, "evaluate", "Pixel accuracy, per-class and mean IoU of a segmentation run.", [
        "cnnlab segment evaluate runs/NAME --json",
        "cnnlab segment evaluate NAME --checkpoint best --figure scenes.png",
    ], _evaluate)
    evaluate.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    evaluate.add_argument("--checkpoint", choices=["last", "best"], default="last")
    evaluate.add_argument("--split", choices=["train", "test"], default="test")
    evaluate.add_argument("--limit", type=int, help="evaluate on the first N scenes only")
    evaluate.add_argument("--batch-size", type=int, default=100)
    evaluate.add_argument("--figure", metavar="PNG", help="also draw input | truth | prediction | errors")
    evaluate.add_argument("--data-dir", help="folder with the MNIST files the scenes are made from")
    evaluate.add_argument("--json", action="store_true", help="print the numbers as JSON")

    predict = add_command(actions, "predict", "Label every pixel of your own images of digits.", [
        "cnnlab segment predict runs/NAME digits.png --out segmented/",
    ], _predict)
    predict.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="PNG/JPG files; digits about 20 px tall")
    predict.add_argument("--checkpoint", choices=["last", "best"], default="last")
    predict.add_argument("--out", metavar="DIR", default=".", help="where IMAGE_segmented.png go (default .)")
    predict.add_argument("--json", action="store_true", help="print the pixels per class as JSON")
    return p


def _usage(args) -> int:
    raise ConfigError("give an action: train, evaluate or predict (see `cnnlab segment --help`)")


def _train(args) -> int:
    from cnnlab.commands import train

    # `cnnlab train` with the segmentation recipe as the starting point: --resume, --config and
    # --nproc-per-node behave exactly as there.
    if not (args.config or args.resume):
        args.recipe = args.recipe or "segmentation"
    args.command_words = ["segment", "train"]
    return train.run(args)


def _open(run: str, checkpoint: str):
    from cnnlab.train.runs import Run
    from cnnlab.train.tasks import task_for

    trained = Run.open(run)
    if task_for(trained.config).name != "segmentation":
        raise ConfigError(f"{trained.path}: {trained.config.model} is not a segmentation model "
                          "(use `cnnlab evaluate` / `cnnlab predict`)")
    return trained, trained.build_model(checkpoint)


def _evaluate(args) -> int:
    import json

    import torch

    from cnnlab.commands.tables import print_iou
    from cnnlab.train.batches import TensorSplit
    from cnnlab.train.evaluation import evaluate_segmentation

    trained, model = _open(args.run, args.checkpoint)
    data = TensorSplit(trained.config.load_split(args.split, args.data_dir),
                       limit=args.limit)
    with torch.inference_mode():
        result = evaluate_segmentation(model, data, args.batch_size)
    classes = data.info.classes
    if args.figure:
        from cnnlab.viz.segmentation_figures import plot_scenes

        plot_scenes(data.images[:, 0].numpy(), data.labels.numpy(), result.predictions.numpy(), classes,
                    args.figure)
    if args.json:
        print(json.dumps({"run": str(trained.path), "checkpoint": args.checkpoint, "dataset": trained.config.dataset,
                          "split": args.split, "scenes": len(data), "pixel_accuracy": result.accuracy,
                          "mean_iou": result.mean_iou, "mean_iou_includes_background": True, "loss": result.loss,
                          "iou": dict(zip(classes, result.iou.tolist()))}, indent=2))
        return 0
    print_iou(result, classes, f"{trained.name} ({args.checkpoint}) on {trained.config.dataset} {args.split}, "
                                f"{len(data):,} scenes")
    return 0


def _predict(args) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from cnnlab.data import dataset_info
    from cnnlab.data.preprocess import open_image, to_gray
    from cnnlab.viz.activations import normalize_input
    from cnnlab.viz.segmentation_figures import plot_scenes

    trained, model = _open(args.run, args.checkpoint)
    info = dataset_info(trained.config.dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        gray = to_gray(open_image(path))
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        ink = 1 - gray if np.median(border) > 0.5 else gray  # the scenes are white digits on black
        image = np.round(ink * 255).astype(np.uint8)
        with torch.inference_mode():
            predicted = model(normalize_input(image, info.mean, info.std)).argmax(1)[0].numpy()
        figure = out / f"{Path(path).stem}_segmented.png"
        plot_scenes([image], None, [predicted], info.classes, figure, titles=[Path(path).name])
        counts = np.bincount(predicted.ravel(), minlength=info.num_classes)
        found = {info.classes[c]: int(counts[c]) for c in np.argsort(-counts) if c and counts[c]}
        results.append({"image": path, "figure": str(figure), "pixels_per_class": found})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for row in results:
        found = ", ".join(f"{name} ({pixels} px)" for name, pixels in row["pixels_per_class"].items()) or "no digits"
        print(f"{row['image']}: {found}  -> {row['figure']}")
    return 0
