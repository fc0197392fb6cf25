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
        p.add_argument("--top", type=int, metavar="N", help="the N likeliest classes per image (default: 3 in "
                       "the text, every class in the JSON)")
    p.add_argument("--out-dir", metavar="DIR", help="also write a picture per image there: "
                   + ("the input a classifier sees (28x28 for digits), or a segmentation's class map" if ranks_classes
                      else "IMAGE_segmented.png, the class of every pixel"))
    p.add_argument("--json", action="store_true", help="print the results as JSON (and nothing else)")


def run(args, only: str | None = None) -> int:
    """`cnnlab predict`; `only`: the task a task's own command (`segment predict`) takes."""
    import textwrap
    from pathlib import Path

    from cnnlab.errors import ConfigError
    from cnnlab.train.runs import Run

    trained = Run.open(args.run)  # before torch loads: a mistyped name is refused at once
    from cnnlab.train.inference import predict

    task = trained.task
    if only and task.name != only:
        raise ConfigError(f"{trained.path}: {trained.config.model} is not a {only} model (use `cnnlab predict`)")
    out = Path(args.out_dir) if args.out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    top = getattr(args, "top", None)
    if top is not None and top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    results = predict(trained, args.images, args.checkpoint, out)
    if top is not None:  # the likeliest first, in the JSON too
        for row in results:
            if "probabilities" in row:
                row["probabilities"] = dict(sorted(row["probabilities"].items(), key=lambda item: -item[1])[:top])
    if args.json:
        print(to_json(results, indent=2))
        return 0
    for row in results:
        picture = f"  -> {row['figure']}" if "figure" in row else ""
        print(f"{row['image']}: {task.prediction_line(row, top or 3)}{picture}")
        if row.get("familiar") is False:  # wrapped between words: a path stays whole
            print(textwrap.fill(f"note: {row['unlike']}", 80, initial_indent="  ", subsequent_indent="    ",
                                break_long_words=False, break_on_hyphens=False))
    return 0
