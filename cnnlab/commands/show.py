"""`cnnlab show filters|features|random-filters|saliency|deconv|occlusion|dream`: look inside a trained run (either
engine)."""

from __future__ import annotations


from cnnlab.commands import HelpFormatter, add_command
from cnnlab.commands.options import add_model_file_options, check_subject, open_inspected


def add_parser(subparsers):
    p = add_command(subparsers, "show", "Pictures of what a trained CNN learned and computes.", [
        "cnnlab show filters runs/NAME",
        "cnnlab show filters runs/NAME --layer conv2 --out conv2.png",
        "cnnlab show features runs/NAME --index 7",
        "cnnlab show features runs/NAME my_digit.png",
        "cnnlab show random-filters",
        "cnnlab show random-filters photo.jpg --count 4 --size 5",
        "cnnlab show saliency runs/NAME my_digit.png",
        "cnnlab show occlusion runs/NAME --index 0 --size 6",
        "cnnlab show dream runs/NAME --layer conv2 --features 16",
        "cnnlab show features --model net.py:Net --weights net.pt my_digit.png",
    ], lambda args: p.print_help() or 2)
    kinds = p.add_subparsers(dest="kind", metavar="WHAT", parser_class=type(p))

    def kind(name, help, func, run=True, image=True):
        k = kinds.add_parser(name, help=help, description=help,
                             formatter_class=HelpFormatter)
        k.set_defaults(func=_run_found_first(func) if run else func)
        if run:
            add_model_file_options(k, "run folder (or its name under runs/); with --model, none" +
                                   ("" if not image else ": the one positional is the IMAGE"))
            k.add_argument("--checkpoint", choices=["last", "best"], default="last")
        if image:
            source = k.add_mutually_exclusive_group()
            source.add_argument("image", metavar="IMAGE", nargs="?",
                                help="an image file (PNG/JPG)" + ("" if run else "; default: the photograph of "
                                                                  "`cnnlab filters`"))
            source.add_argument("--index", type=int, help="use test image number N of the run's dataset instead")
        k.add_argument("--out", default=f"{name}.png", help=f"output PNG (default {name}.png)")
        return k

    f = kind("filters", "Learned kernels of a conv layer as an image grid, with the hand-crafted filters.",
             show_filters, image=False)
    f.add_argument("--layer", help="conv layer name (default: the first); see the error message for names")
    m = kind("features", "Feature maps of every conv and pool layer for one input.", show_features)
    m.add_argument("--max-maps", type=int, default=16, help="channels shown per layer (default 16)")
    r = kind("random-filters", "An image convolved with random filters (the lecture's slide).", show_random_filters,
             run=False)
    r.add_argument("--count", type=int, default=6, help="number of random filters (default 6)")
    r.add_argument("--size", type=int, default=3, help="filter side in pixels (default 3)")
    r.add_argument("--seed", type=int, default=0)
    s = kind("saliency", "Gradient saliency and Grad-CAM for one input.", show_saliency)
    s.add_argument("--target", type=int, help="class index to explain (default: the predicted class)")
    s.add_argument("--layer", help="layer for Grad-CAM (default: the activation after the last conv layer)")
    s.add_argument("--baseline", choices=["mean", "black"], default="mean",
                   help="integrated gradients' starting image: the dataset's mean pixel everywhere, or black "
                   "(default mean)")
    s.add_argument("--steps", type=int, default=64, help="integrated gradients' points on the path (default 64)")
    d = kind("deconv", "Top 9 test images per feature, projected back to pixels (the lecture's figure).",
             show_deconv, image=False)
    d.add_argument("--layers", help="conv layers, comma-separated (default: every conv layer)")
    d.add_argument("--features", default="4", help="a count of random features per layer, or a comma list of "
                                                   "feature numbers such as 3,7 (default 4)")
    d.add_argument("--method", choices=["deconvnet", "guided-backprop"], default="deconvnet",
                   help="how ReLUs pass the signal back (default deconvnet)")
    d.add_argument("--limit", type=int, metavar="N", help="search the first N test images only (default: all)")
    d.add_argument("--seed", type=int, default=0, help="which random features (default 0)")
    o = kind("occlusion", "What the prediction becomes as a square hides each part of the input.",
             show_occlusion)
    o.add_argument("--target", type=int, help="class whose probability is mapped (default: the true label with "
                   "--index, else the predicted class)")
    o.add_argument("--layer", help="conv layer whose strongest feature map is followed (default: the last)")
    o.add_argument("--size", type=int, default=8, help="side of the square in input pixels (default 8)")
    o.add_argument("--stride", type=int, default=2, help="step between square positions (default 2)")
    o.add_argument("--fill", choices=["mean", "grey"], default="mean",
                   help="the square's colour: the dataset's mean pixel, or mid-grey (default mean)")
    dr = kind("dream", "Inputs optimized to excite each feature map of a layer.", show_dream, image=False)
    dr.add_argument("--layer", help="conv layer (default: the last)")
    dr.add_argument("--features", type=int, default=16, help="feature maps shown, from 0 (default 16)")
    dr.add_argument("--steps", type=int, default=128, help="optimizer steps (default 128)")
    dr.add_argument("--seed", type=int, default=0)
    dr.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run_found_first(func):
    """`func`, once its RUN is found: a missing or mistyped one is refused before torch and matplotlib load."""
    def checked(args):
        check_subject(args)
        return func(args)
    return checked


def _save(fig, out) -> None:
    from pathlib import Path

    import matplotlib.pyplot as plt

    from cnnlab.errors import ConfigError

    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out}")


def inspected(args):
    """The run, or the --model, that `args` name. With --model the one positional given is the IMAGE."""
    if getattr(args, "model", None) and args.run and getattr(args, "image", None) is None and \
            getattr(args, "index", None) is None and hasattr(args, "image"):
        args.image, args.run = args.run, None
    return open_inspected(args)


def load_input(args, subject):
    """(uint8 image the model sees, a caption) from IMAGE or --index (a test image of the dataset): a digit
    prepared MNIST-style for a classifier, a scene at its own size for a segmentation; for a --model whose input
    is not a 28×28 digit, the image fitted to its input shape."""
    from cnnlab.data.preprocess import load_digit, load_photo, load_scene
    from cnnlab.errors import ConfigError

    info = subject.info
    scenes = info.task == "segmentation"
    if args.image is not None:
        shape = getattr(subject, "input_shape", (1, 28, 28))
        if scenes:
            return load_scene(args.image), args.image
        if info.prepare:  # a photo dataset's own preparation (CIFAR, a folder)
            return info.prepare(args.image), args.image
        return (load_digit(args.image) if shape == (1, 28, 28) else
                load_photo(args.image, shape[1:], channels=shape[0])), args.image
    if args.index is None:
        raise ConfigError("give an IMAGE file or --index N (a test image)")
    dataset = info.name
    test = subject.test_split(limit=args.index + 1 if scenes else None)
    if not 0 <= args.index < len(test.labels):
        raise ConfigError(f"--index {args.index}: the {dataset} test set has images 0..{len(test.labels) - 1}")
    if scenes:
        return test.images[args.index], f"{dataset} test scene {args.index}"
    label = info.classes[int(test.labels[args.index])]
    return test.images[args.index], f"{dataset} test image {args.index} (label {label})"


def _verdict(logits, info) -> tuple[int, str]:
    """(the class to explain by default, what the model says) from one image's logits: [K] for a classifier, the
    class with most pixels other than background from [K, H, W] for a segmentation."""
    import torch

    if logits.dim() == 1:
        probs = logits.softmax(0)
        top = int(probs.argmax())
        return top, f"predicted {info.classes[top]} ({float(probs[top]):.0%})"
    counts = torch.bincount(logits.argmax(0).flatten(), minlength=len(info.classes))
    found = [c for c in counts.argsort(descending=True).tolist() if c and counts[c]]
    if found:
        said = ", ".join(f"{info.classes[c]} ({int(counts[c])} px)" for c in found[:4])
        return found[0], f"found {said}"
    # No pixel won by a digit: explain the digit the model finds likeliest somewhere, rather than background.
    likeliest = int(logits.softmax(0)[1:].amax((1, 2)).argmax()) + 1
    return likeliest, f"found no digits (the likeliest: {info.classes[likeliest]})"


def _unlike(args, subject, model, image, logits) -> str:
    """For a classifier's IMAGE file unlike the images it was trained on (cnnlab.viz.familiarity): a note printed
    with the reasons, and ", unlike its training images" for the figure's title; else ""."""
    import textwrap

    from cnnlab.errors import ConfigError
    from cnnlab.viz.familiarity import Familiarity

    if args.image is None or logits.dim() != 1:
        return ""
    try:
        test = subject.test_split()
    except ConfigError:  # --model with --dataset none: no test images to set the thresholds on
        return ""
    said = Familiarity.calibrate(model, test.images, subject.info).judge(image, logits).describe()
    if not said:
        return ""
    print(textwrap.fill(f"note: {args.image} is {said}", 80, subsequent_indent="  ", break_long_words=False,
                        break_on_hyphens=False))
    return ", unlike its training images"


def show_filters(args) -> int:
    from cnnlab.viz.activations import conv_layer
    from cnnlab.viz.handcrafted import by_short_name
    from cnnlab.viz.kernels import plot_kernels

    run = inspected(args)
    name, conv = conv_layer(run.build_model(args.checkpoint), args.layer)
    fig = plot_kernels(name, conv, by_short_name())
    fig.text(0.5, -0.01, f"{run.name} ({run.caption})", ha="center", fontsize=8)
    _save(fig, args.out)
    return 0


def show_features(args) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.viz.activations import feature_maps, normalize_input
    from cnnlab.viz.features import plot_feature_maps

    if args.max_maps < 1:
        raise ConfigError(f"--max-maps must be at least 1, got {args.max_maps}")
    run = inspected(args)
    info = run.info
    image, caption = load_input(args, run)
    model = run.build_model(args.checkpoint)
    maps, logits = feature_maps(model, normalize_input(image, info.mean, info.std))
    title = f"Feature maps of {run.name} ({run.caption}) for {caption}: {_verdict(logits, info)[1]}" + \
        _unlike(args, run, model, image, logits)
    _save(plot_feature_maps(image, maps, args.max_maps, title), args.out)
    return 0


def show_random_filters(args) -> int:
    import numpy as np
    from cnnlab.data import load_dataset
    from cnnlab.data.preprocess import open_image, to_gray
    from cnnlab.errors import ConfigError
    from cnnlab.viz.handcrafted import load_image
    from cnnlab.viz.features import plot_random_filters

    if args.count < 1 or args.size < 1:
        raise ConfigError(f"--count and --size must be at least 1, got {args.count} and {args.size}")
    if args.count > 64 or args.size > 31:
        raise ConfigError(f"--count must be at most 64 and --size at most 31, got {args.count} and {args.size}")
    if args.image is not None:
        picture = open_image(args.image)
        picture.thumbnail((256, 256))  # filters of a few pixels only show structure at a modest resolution
        image, name = to_gray(picture), args.image
    elif args.index is None:
        # ITU-R 601 luma, the weights PIL uses for its own grayscale conversion
        image, name = load_image() @ np.array([0.299, 0.587, 0.114], dtype=np.float32), "photograph"
    else:
        test = load_dataset("mnist", "test", quiet=True)
        if not 0 <= args.index < len(test.labels):
            raise ConfigError(f"--index {args.index}: the mnist test set has images 0..{len(test.labels) - 1}")
        image, name = test.images[args.index] / 255.0, f"MNIST test image {args.index}"
    _save(plot_random_filters(np.asarray(image), args.count, args.size, args.seed, name), args.out)
    return 0


def show_saliency(args) -> int:
    import numpy as np
    import torch

    from cnnlab.data.preprocess import normalize
    from cnnlab.errors import ConfigError
    from cnnlab.viz.activations import normalize_input
    from cnnlab.viz.saliency import grad_cam, gradient_saliency, integrated_gradients, plot_saliency, target_scores

    run = inspected(args)
    info = run.info
    image, caption = load_input(args, run)
    model = run.build_model(args.checkpoint)
    x = normalize_input(image, info.mean, info.std)
    with torch.no_grad():
        logits = model(x)[0]
    predicted, verdict = _verdict(logits, info)
    verdict += _unlike(args, run, model, image, logits)
    target = predicted if args.target is None else args.target
    if not 0 <= target < info.num_classes:
        raise ConfigError(f"--target {target}: classes are 0..{info.num_classes - 1}")
    cam, layer = grad_cam(model, x, target, args.layer)
    # normalized, the dataset's mean pixel is 0 (each channel's) and black is -mean / std
    black = torch.from_numpy(normalize(np.zeros(x.shape[1:], np.uint8), info.mean, info.std))[None]
    baseline = torch.zeros_like(x) if args.baseline == "mean" else black
    integrated = integrated_gradients(model, x, target, baseline, args.steps)
    with torch.no_grad():  # completeness: the attributions should sum to this difference
        score, start = target_scores(model(torch.cat([x, baseline])), target).tolist()
    path = f"the {args.baseline} image, {args.steps} steps (Δscore {score - start:.3g})"
    question = "where is" if info.task == "segmentation" else "why"
    caption = f"{run.name}: {question} {info.classes[target]}? — {caption}, {verdict}"
    _save(plot_saliency(image, gradient_saliency(model, x, target), cam, layer, caption,
                        (integrated, path)), args.out)
    return 0


def show_occlusion(args) -> int:
    import numpy as np
    import torch

    from cnnlab.data.preprocess import normalize
    from cnnlab.errors import ConfigError
    from cnnlab.viz.activations import normalize_input
    from cnnlab.viz.occlusion import occlusion, plot_occlusion

    run = inspected(args)
    info = run.info
    if info.task == "segmentation":
        raise ConfigError(f"{args.run}: occlusion maps a classifier's probability, and this run labels every pixel "
                          "(`cnnlab show saliency` explains a class's region)")
    image, caption = load_input(args, run)
    model = run.build_model(args.checkpoint)
    x = normalize_input(image, info.mean, info.std)
    with torch.no_grad():
        predicted, verdict = _verdict(model(x)[0], info)
    target = args.target
    if target is None:  # the paper maps the true class: a test image's label, else what the model predicts
        target = int(run.test_split().labels[args.index]) if args.index is not None \
            else predicted
    # the square's pixel value per channel, 0-255: the dataset's mean (normalized: 0), or mid-grey
    channels = x.shape[1]
    pixel = np.broadcast_to(np.asarray(info.mean if args.fill == "mean" else 0.5, np.float32) * 255, (channels,))
    fill = torch.from_numpy(normalize(pixel.reshape(channels, 1, 1), info.mean, info.std))
    result = occlusion(model, x, target, args.size, args.stride, fill, args.layer)
    caption = f"{run.name}: occlusion of {caption}, {verdict}; {args.fill} square, stride {args.stride}"
    _save(plot_occlusion(image, result, list(info.classes), caption,
                         pixel.reshape(channels, 1, 1) if np.ndim(image) == 3 else float(pixel[0])), args.out)
    return 0


def show_dream(args) -> int:
    import contextlib

    import torch

    from cnnlab.errors import ConfigError
    from cnnlab.viz.activations import conv_layer, conv_layers
    from cnnlab.viz.dream import DreamSettings, dream, feature_activation, plot_dream

    run = inspected(args)
    model = run.build_model(args.checkpoint)
    layers = conv_layers(model)
    name, conv = conv_layer(model, args.layer or (layers[-1][0] if layers else None))
    if not 1 <= args.features <= conv.out_channels:
        raise ConfigError(f"--features must be 1..{conv.out_channels} for layer {name!r}, got {args.features}")
    channels = list(range(args.features))
    settings = DreamSettings(steps=args.steps, seed=args.seed)
    shape = run.input_shape if hasattr(run, "input_shape") else \
        (layers[0][1].in_channels, *run.test_split(limit=1).images[0].shape[-2:])  # the inputs it was trained on
    progress = None
    if not args.quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn(f"optimizing {args.features} inputs for {name}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn())
    with progress or contextlib.nullcontext():
        task = progress.add_task("", total=args.steps) if progress else None
        images = dream(model, name, channels, shape, settings,
                       (lambda step: progress.update(task, completed=step)) if progress else None)
    with torch.no_grad():
        reached = feature_activation(model, name, images)[torch.arange(len(channels)), channels]
    title = (f"{run.name}: inputs that excite {name}'s feature maps (mean rectified activation reached; "
             f"{args.steps} steps)")
    _save(plot_dream(images, channels, reached.tolist(), title), args.out)
    return 0


def show_deconv(args) -> int:
    import random
    import time

    import torch

    from cnnlab.data.preprocess import normalize
    from cnnlab.errors import ConfigError
    from cnnlab.models.receptive import receptive_fields
    from cnnlab.viz import deconv
    from cnnlab.viz.activations import conv_layers

    run = inspected(args)
    info = run.info
    if info.task != "classification":
        raise ConfigError(f"{run.name}: deconvnet projections are drawn for classifiers; this run segments")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    model = run.build_model(args.checkpoint)
    test = run.test_split()
    pixels = test.images[:args.limit] if args.limit else test.images
    x = torch.from_numpy(normalize(pixels, info.mean, info.std))
    x = x[:, None] if x.ndim == 3 else x
    names = args.layers.split(",") if args.layers else [name for name, _ in conv_layers(model)]
    fields = receptive_fields(model, tuple(x.shape[1:]))
    sections, start = [], time.perf_counter()
    for layer in names:
        path = deconv.layers_up_to(model, x[:1], layer)  # one-line error for a layer it cannot undo
        channels = path[-1][1].out_channels
        features = _features(args.features, channels, random.Random(f"{args.seed}:{layer}"))
        hits = deconv.top_activations(model, layer, x, features)
        where = {f: deconv.boxes(model, layer, tuple(x.shape[1:]), hits[f]) for f in features}
        sections.append({"layer": layer, "hits": hits, "field": fields[layer].describe(),
                         # the projection and the patch of the same receptive field, side by side
                         "projected": {f: deconv.crop(deconv.projections(model, layer, x, f, hits[f], args.method),
                                                      where[f]) for f in features},
                         "crops": {f: deconv.crop([pixels[h.image] for h in hits[f]], where[f]) for f in features}})
    seconds = time.perf_counter() - start
    title = (f"{run.name}: top 9 of {len(x):,} {info.name} test images per feature, {args.method} "
             f"projections and their patches ({seconds:.1f} s)")
    _save(deconv.figure(sections, title), args.out)
    print(f"searched {len(x):,} test images for {sum(len(s['hits']) for s in sections)} features of "
          f"{len(names)} layer(s) in {seconds:.1f} s")
    return 0


def _features(text: str, channels: int, rng) -> list[int]:
    from cnnlab.errors import ConfigError

    try:
        if "," in text:
            chosen = [int(v) for v in text.split(",") if v.strip()]
        else:
            count = int(text)
            chosen = sorted(rng.sample(range(channels), min(count, channels))) if count >= 1 else []
    except ValueError:
        raise ConfigError(f"--features {text!r}: a count or a comma list of feature numbers") from None
    if not chosen or not all(0 <= f < channels for f in chosen):
        raise ConfigError(f"--features {text!r}: the layer has features 0..{channels - 1}")
    return chosen
