"""The `cnnlab` command. Each subcommand lives in `cnnlab.commands.<name>` and provides
`add_parser(subparsers)` (which sets `func`) so that adding a command is one module plus one line here."""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab import __version__
from cnnlab.errors import CnnlabError

COMMANDS = [
    "train", "evaluate", "predict", "runs", "transfer", "segment",
    "zoo", "summary",
    "filters", "show", "report", "export", "experiment",
    "serve", "info", "data",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are a single line (no usage dump) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def one_line(message: str) -> str:
    """The message on one line, whatever a user-named file or value put in it (a newline in a JSON key)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.description = "Convolutional neural networks: build, train, look inside and reuse CNNs."
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"cnnlab.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except CnnlabError as err:
        print(f"cnnlab {args.command}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's, not the input's: a full disk, a permission; what was kept is whole
        where = f"{err.filename}: " if err.filename else ""
        print(f"cnnlab {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        # torch's allocators raise RuntimeErrors (CUDA's OutOfMemoryError is one) for what Python calls MemoryError
        if isinstance(err, RuntimeError) and not any(s in str(err) for s in ("can't allocate memory", "out of memory")):
            raise
        # images read from disk cost a batch each: what fills memory is the batches and the model
        print(f"cnnlab {args.command}: error: out of memory: the batches or the model are too large for this "
              "machine (try a smaller --batch-size, --eval-batch-size or model)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
