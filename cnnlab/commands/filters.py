"""`cnnlab filters`: the hand-crafted filter table (operation | filter | convolved image) for a photograph."""

from __future__ import annotations

from cnnlab.commands import add_command


def add_parser(subparsers):
    p = add_command(subparsers, "filters", "Apply the classic hand-crafted 3x3 filters to an image, as one figure.", [
        "cnnlab filters",
        "cnnlab filters photo.jpg --out photo-filters.png",
        'cnnlab filters --kernel "0,-1,0;-1,5,-1;0,-1,0" --kernel "1,0,-1;2,0,-2;1,0,-1"',
    ], run)
    p.add_argument("image", nargs="?", help="image file (default: a crop of Grace Hopper's portrait, shipped with "
                                            "matplotlib)")
    p.add_argument("--kernel", action="append", default=[], metavar="ROWS",
                   help="add a custom kernel: rows separated by ';', values by ',' (repeatable)")
    p.add_argument("--out", default="handcrafted-filters.png", help="where to write the figure (default "
                   "handcrafted-filters.png; `show filters` writes a run's learned ones to filters.png)")
    return p


def run(args) -> int:
    from cnnlab.viz.handcrafted import CATALOGUE, figure, load_image, parse_kernel

    custom = [parse_kernel(text) for text in args.kernel]  # bad kernels fail before any work is done
    image = load_image(args.image)
    source = args.image or "Grace Hopper, US Navy portrait (public domain), from matplotlib's sample data"
    path = figure(image, [*CATALOGUE, *custom], args.out, source)
    print(f"wrote {path} ({len(CATALOGUE) + len(custom)} filters on a {image.shape[1]}x{image.shape[0]} image)")
    return 0
