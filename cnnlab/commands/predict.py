"""`cnnlab predict RUN IMAGE...`: classify your own images of digits (or clothes) with a trained run."""

from __future__ import annotations

from cnnlab.commands import add_command


def add_parser(subparsers):
    p = add_command(subparsers, "predict", "Classify image files with a trained run (MNIST-style preprocessing).", [
        "cnnlab predict runs/simple-cnn-mnist-20261125-101500 my_digit.png",
        "cnnlab predict NAME a.png b.jpg --save-inputs prepared/",
    ], run)
    p.add_argument("run", metavar="RUN", help="run folder (or its name under runs/)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG/JPG files")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.add_argument("--top", type=int, default=3, help="how many classes to list per image (default 3)")
    p.add_argument("--save-inputs", metavar="DIR", help="also save the 28x28 images the model sees")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    return p


def run(args) -> int:
    import json
    from pathlib import Path

    from PIL import Image

    from cnnlab.data import dataset_info
    from cnnlab.data.preprocess import load_digit
    from cnnlab.train.runs import Run
    from cnnlab.viz.activations import predict_probabilities

    trained = Run.open(args.run)
    info = dataset_info(trained.config.dataset)
    digits = [load_digit(path) for path in args.images]
    model = trained.build_model(args.checkpoint)
    probs = predict_probabilities(model, info, digits)
    if args.save_inputs:
        out = Path(args.save_inputs)
        out.mkdir(parents=True, exist_ok=True)
        for path, digit in zip(args.images, digits):
            Image.fromarray(digit).save(out / f"{Path(path).stem}_28x28.png")
    results = [{"image": path, "class": info.classes[int(p.argmax())],
                "probabilities": {c: round(float(v), 6) for c, v in zip(info.classes, p)}}
               for path, p in zip(args.images, probs)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    top = max(1, min(args.top, len(info.classes)))
    for path, p in zip(args.images, probs):
        values, indices = p.topk(top)
        ranked = "  ".join(f"{info.classes[i]} {v:.1%}" for v, i in zip(values.tolist(), indices.tolist()))
        print(f"{path}: {info.classes[int(indices[0])]}   ({ranked})")
    return 0
