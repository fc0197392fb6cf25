"""Command-line flags built from `TrainConfig`'s fields, so that a training option is declared once (in
`cnnlab/train/config.py`) and every command that trains offers it with the same spelling, help and choices."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

from cnnlab.data.registry import DATASETS, GENERATED
from cnnlab.errors import ConfigError
from cnnlab.train.config import RECIPES, TrainConfig, recipe_task

_TYPES = {"int": int, "float": float, "str": str}


def json_object(text: str) -> dict:
    # ArgumentTypeError, so argparse reports it as a usage error naming the option.
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


def config_fields(names: list[str] | None = None, task: str | None = None) -> list[dataclasses.Field]:
    """The TrainConfig fields that have a flag: all of them, or those in `names` (in the dataclass's order), or
    those that apply to `task`."""
    return [f for f in dataclasses.fields(TrainConfig)
            if f.metadata["flag"] and (names is None or f.name in names)
            and (task is None or f.metadata["tasks"] is None or task in f.metadata["tasks"])]


def add_config_options(parser: argparse.ArgumentParser, names: list[str] | None = None,
                       recipe: str = "default") -> None:
    """A flag per TrainConfig field (`--batch-size` for batch_size) that applies to `recipe`'s task, defaulting to
    None: "not given", so that the recipe or config file underneath keeps its value. The help shows the recipe's
    values as the defaults. `cnnlab train` (the default recipe) takes every recipe and dataset; a task's own
    command (`segment train`) offers the recipes and datasets of its task."""
    task = recipe_task(recipe)
    starting = {**{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(TrainConfig)}, **RECIPES[recipe], "recipe": recipe}
    choices, helps = {}, {}
    if recipe != "default":
        choices["recipe"] = tuple(r for r in RECIPES if recipe_task(r) == task)
        helps["dataset"] = "registered dataset: " + ", ".join(d for d, info in {**DATASETS, **GENERATED}.items()
                                                                if info.task == task)
    for f in config_fields(names, task if names is None else None):
        kind = f.type.split("|")[0].strip()
        meta = {**f.metadata, "help": helps.get(f.name, f.metadata["help"]),
                "choices": choices.get(f.name, f.metadata["choices"])}
        flag = "--" + f.name.replace("_", "-")
        default = starting[f.name]
        shown = "" if default in (None, {}, False) else f" (default {'on' if default is True else default})"
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meta["help"] + shown)
        elif kind == "dict":
            parser.add_argument(flag, type=json_object, metavar=meta["metavar"],
                                help=meta["help"] + (f" (default {json.dumps(default)})" if default else ""))
        elif meta["choices"]:  # listed in the help: a usage line of {a,b,c} choices would not fit 80 columns
            parser.add_argument(flag, type=_TYPES[kind], choices=meta["choices"], metavar=f.name.split("_")[-1].upper(),
                                help=f"{meta['help']}: {', '.join(meta['choices'])}{shown}")
        else:
            parser.add_argument(flag, type=_TYPES[kind], metavar=meta["metavar"], help=meta["help"] + shown)


def config_overrides(args: argparse.Namespace, names: list[str] | None = None) -> dict:
    """{field: value} for every config flag given on the command line."""
    return {f.name: getattr(args, f.name) for f in config_fields(names) if getattr(args, f.name, None) is not None}


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Where a training command's run folder goes, and how much it prints."""
    parser.add_argument("--name", help="run folder name (default MODEL-DATASET-TIMESTAMP, with the engine before "
                        "the time when it is not torch)")
    parser.add_argument("--runs-dir", help="where run folders go (default runs/ or $CNNLAB_RUNS)")
    parser.add_argument("--quiet", action="store_true", help="no progress or tables; print only the run folder")


def parse_shape(text: str, square: bool = True) -> tuple[int, int, int]:
    """`--input CxHxW` as (C, H, W); the registered models take square images (`square`), a user's model may not."""
    match = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*[x,]\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--input: expected CxHxW such as 1x28x28, got {text!r}")
    c, h, w = (int(v) for v in match.groups())
    if max(c, h, w) > 4096 or c > 16:
        raise ConfigError(f"--input {text}: at most 16 channels and 4096 pixels a side")
    if min(c, h, w) < 1 or (square and h != w):
        raise ConfigError(f"--input: the models take square images with at least one channel, got {text!r}")
    return c, h, w


def add_model_file_options(parser: argparse.ArgumentParser, run_help: str = "run folder (or its name under runs/)",
                           many: bool = False) -> None:
    """RUN, or a model from the user's own file: the one set of flags `show`, `report` and `serve` take."""
    parser.add_argument("run", metavar="RUN", nargs="*" if many else "?", help=run_help)
    own = parser.add_argument_group("your own model (instead of a RUN; importing FILE.py runs its code)")
    own.add_argument("--model", metavar="FILE.py:NAME",
                     help="a torch.nn.Module class, or a function returning one, built with no arguments")
    own.add_argument("--weights", metavar="FILE", help="its weights: .safetensors or a PyTorch state dict (read "
                     "with weights_only=True: never unpickled); default: as NAME() builds it")
    own.add_argument("--dataset", metavar="NAME", default="mnist",
                     help="what it was trained on: test images, class names, normalization (default mnist; "
                     "none: your own images only, pixels scaled to [0, 1])")
    own.add_argument("--class-names", metavar="A,B,...", help="names of its outputs (default: the dataset's)")
    own.add_argument("--input", metavar="CxHxW", help="its input shape (default: the dataset's images)")


def own_model(args: argparse.Namespace):
    """The --model's UserModel, checked against its inputs and names; None without --model (its other flags are
    then an error: a run knows its own weights, dataset and classes)."""
    if args.model is None:
        _refuse_model_flags(args)
        return None
    from cnnlab.train.user_model import UserModel

    return UserModel.open(args.model, args.weights, args.dataset, args.class_names,
                          parse_shape(args.input, square=False) if args.input else None)


def _refuse_model_flags(args: argparse.Namespace) -> None:
    """--weights, --class-names, --input and --dataset without --model: an error (a run knows its own)."""
    given = [flag for flag, value in [("--weights", args.weights), ("--class-names", args.class_names),
                                      ("--input", args.input),
                                      ("--dataset", None if args.dataset == "mnist" else args.dataset)] if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --model FILE.py:NAME (a run knows its own)")


def open_inspected(args: argparse.Namespace):
    """The run named by RUN, or the --model: both answer name, caption, info, test_split() and build_model()."""
    from cnnlab.train.runs import Run

    if args.model and args.run:
        raise ConfigError(f"give a RUN ({args.run}) or --model, not both")
    check_subject(args)
    return own_model(args) or Run.open(args.run)


def check_subject(args: argparse.Namespace) -> None:
    """Refuse, before torch loads, a command given neither a RUN nor a --model, or a RUN that is not there."""
    from cnnlab.train.runs import find_run

    if not (args.model or args.run):
        raise ConfigError("give a RUN folder, or --model FILE.py:NAME")
    if args.run and not args.model:
        _refuse_model_flags(args)
        find_run(args.run)
