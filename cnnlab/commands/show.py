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


def shown(args):
    """The pictures of the run or --model that `args` name (cnnlab.viz.show: `run.show` in Python)."""
    from cnnlab.viz.show import Show

    return Show(inspected(args), args.checkpoint)


def chosen_input(args):
    """IMAGE, or --index N (a test image)."""
    return args.image if args.image is not None else args.index


def _note_unlike(args, fig) -> None:
    """For an IMAGE file unlike the images the classifier was trained on (cnnlab.viz.familiarity), a note with the
    reasons (the figure's title says it too)."""
    import textwrap

    if fig.numbers.get("unlike"):
        print(textwrap.fill(f"note: {args.image} is {fig.numbers['unlike']}", 80, subsequent_indent="  ",
                            break_long_words=False, break_on_hyphens=False))


def show_filters(args) -> int:
    _save(shown(args).filters(args.layer), args.out)
    return 0


def show_features(args) -> int:
    fig = shown(args).features(chosen_input(args), args.max_maps)
    _note_unlike(args, fig)
    _save(fig, args.out)
    return 0


def show_random_filters(args) -> int:
    import numpy as np
    from cnnlab.data import load_dataset
    from cnnlab.data.preprocess import open_image, to_gray
    from cnnlab.errors import ConfigError
    from cnnlab.viz.features import plot_random_filters
    from cnnlab.viz.handcrafted import load_image

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
    fig = shown(args).saliency(chosen_input(args), "all", args.target, args.layer, args.baseline, args.steps)
    _note_unlike(args, fig)
    _save(fig, args.out)
    return 0


def show_occlusion(args) -> int:
    _save(shown(args).occlusion(chosen_input(args), args.target, args.size, args.stride, args.fill, args.layer),
          args.out)
    return 0


def show_dream(args) -> int:
    import contextlib

    show = shown(args)
    progress = None
    if not args.quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn(f"optimizing {args.features} inputs"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn())
    with progress or contextlib.nullcontext():
        task = progress.add_task("", total=args.steps) if progress else None
        fig = show.dream(args.layer, args.features, args.steps, args.seed,
                         (lambda step: progress.update(task, completed=step)) if progress else None)
    _save(fig, args.out)
    return 0


def show_deconv(args) -> int:
    fig = shown(args).deconv(args.layers, args.features, args.method, args.limit, args.seed)
    _save(fig, args.out)
    hits = fig.numbers["hits"]
    print(f"searched {fig.numbers['images']:,} test images for {sum(len(h) for h in hits.values())} features of "
          f"{len(hits)} layer(s) in {fig.numbers['seconds']:.1f} s")
    return 0
