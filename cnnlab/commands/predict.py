"""`cnnlab predict RUN IMAGE...`: apply a trained run to your own images: the class of a digit (or garment), or,
for a segmentation run, the class of every pixel of a scene of digits."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "predict", "Apply a trained run to image files: a class per image (prepared as "
                    "its dataset's images: MNIST-style for digits, resized for photos), or a class per pixel for a "
                    "segmentation run.", [
        "cnnlab predict runs/simple-cnn-mnist-20261125-101500 my_digit.png",
        "cnnlab predict NAME a.png b.jpg --out-dir prepared/",
        "cnnlab predict runs/resnet20-photos-20261130-101500 cat.jpg",
        "cnnlab predict runs/unet-mnist-scenes-20261125-101500 digits.png --out-dir segmented/",
    ], run)
    add_predict_options(p)
    return p


def add_predict_options(p, ranks_classes: bool = True) -> None:
    """The options of `predict` (and of `segment predict`, the same command for segmentation runs, which ranks no
    classes of an image: `ranks_classes` False)."""
    p.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG/JPG files")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    if ranks_classes:
        p.add_argument("--top", type=int, default=3, help="classes listed per image (classification; default 3)")
    p.add_argument("--out-dir", metavar="DIR", help="also write a picture per image there: "
                   + ("the input a classifier sees (28x28 for digits), or a segmentation's class map" if ranks_classes
                      else "IMAGE_segmented.png, the class of every pixel"))
    p.add_argument("--json", action="store_true", help="print the results as JSON (and nothing else)")


def run(args, only: str | None = None) -> int:
    """`cnnlab predict`; `only`: the task a task's own command (`segment predict`) takes."""
    from pathlib import Path

    from cnnlab.errors import ConfigError
    from cnnlab.train.runs import Run

    trained = Run.open(args.run)
    task = trained.task
    if only and task.name != only:
        raise ConfigError(f"{trained.path}: {trained.config.model} is not a {only} model (use `cnnlab predict`)")
    out = Path(args.out_dir) if args.out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    results = predict(trained, args.images, args.checkpoint, out)
    if args.json:
        print(to_json(results, indent=2))
        return 0
    for row in results:
        picture = f"  -> {row['figure']}" if "figure" in row else ""
        print(f"{row['image']}: {task.prediction_line(row, getattr(args, 'top', 3))}{picture}")
    return 0


def predict(trained, images: list[str], checkpoint: str, out=None) -> list[dict]:
    """The run's prediction for each image file, prepared as its dataset's images were (a digit MNIST-style, a
    photo resized as the dataset's, a scene at its own size), as its task writes it; with `out`, a picture of
    each prediction there."""
    from pathlib import Path

    import torch

    from cnnlab.viz.activations import normalize_input

    info, task = trained.info, trained.task
    model, shape = trained.load_model(checkpoint)
    inputs = [task.prepare(path, info, shape or trained.input_shape) for path in images]  # all read before any work
    results = []
    for path, image in zip(images, inputs):
        with torch.inference_mode():
            output = model(normalize_input(image, info.mean, info.std))
        row = {"image": path, **task.predict(output, info, image.shape[-2:])[0]}
        if out:
            row["figure"] = str(task.prediction_picture(image, output[0], info, out / Path(path).stem))
        results.append(row)
    return results
