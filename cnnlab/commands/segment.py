"""`cnnlab segment train|evaluate|predict`: label every pixel of MNIST scenes with FCN-32s/16s/8s or U-Net.

`segment train` is `cnnlab train` (same options, Trainer, run folders and checkpoints) starting from the
`segmentation` recipe; evaluation reports pixel accuracy and the IoU of every class.
"""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.errors import ConfigError


def add_parser(subparsers):
    from cnnlab.commands import evaluate as evaluate_command
    from cnnlab.commands import predict as predict_command
    from cnnlab.commands import train

    p = add_command(subparsers, "segment", "Segmentation: train, evaluate or apply FCN / U-Net on MNIST scenes.", [
        "cnnlab segment train        # U-Net on mnist-scenes: 0.90 mean IoU, 5 min on 2 Zen 5 cores",
        "cnnlab segment train --model fcn-8s --epochs 1",
        "cnnlab segment evaluate runs/unet-mnist-scenes-20261125-101500 --figure scenes.png",
        "cnnlab segment predict NAME my_digits.png --out-dir segmented/",
    ], _usage)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))

    fit = train.add_parser(actions, "train", "segmentation",
                           "Train a segmentation model (default: the `segmentation` recipe, U-Net on mnist-scenes).",
                           ["cnnlab segment train --recipe segmentation-quick   # ~0.77 mIoU, 1-2 min",
                            "cnnlab segment train --model fcn-32s --lr 0.005",
                            "cnnlab segment train --config runs/NAME/config.json",
                            "cnnlab segment train --resume runs/NAME"])
    fit.set_defaults(func=_train)

    evaluate = add_command(actions, "evaluate", "Pixel accuracy, per-class and mean IoU of a segmentation run "
                           "(`cnnlab evaluate` for segmentation runs).", [
        "cnnlab segment evaluate runs/NAME --json",
        "cnnlab segment evaluate NAME --checkpoint best --figure scenes.png",
    ], lambda args: evaluate_command.run(args, only="segmentation"))
    evaluate_command.add_evaluate_options(evaluate)

    predict = add_command(actions, "predict", "Label every pixel of your own images of digits (`cnnlab predict` "
                          "for segmentation runs).", [
        "cnnlab segment predict runs/NAME digits.png --out-dir segmented/",
    ], lambda args: predict_command.run(args, only="segmentation"))
    predict_command.add_predict_options(predict, ranks_classes=False)
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
