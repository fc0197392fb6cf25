"""The `cnnlab` command. Each subcommand lives in `cnnlab.commands.<name>` and provides
`add_parser(subparsers)` (which sets `func`) so that adding a command is one module plus one line here."""

from __future__ import annotations

import argparse
import difflib
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
    """argparse, but errors are a single line (no usage dump) that names the command and, for a mistyped flag,
    subcommand or choice, the nearest one it takes; exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        # A command's own parser (one without subcommands) knows its flags: what it does not take is refused here,
        # naming the command, rather than by `cnnlab` above it, which knows none of them.
        if extras and not self._subparsers:
            self.error(self._unexpected(extras))
        return namespace, extras

    def _unexpected(self, extras: list[str]) -> str:
        flags = [word.split("=")[0] for word in extras if word.startswith("-")]
        if flags:
            known = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
            said = []
            for flag in flags:
                near = nearest(flag, known)
                said.append(f"{flag}" + (f" (did you mean {near}?)" if near else ""))
            return f"unknown option {', '.join(said)}; see `{self.prog} --help`"
        takes = " ".join(a.metavar or a.dest.upper() for a in self._actions
                         if not a.option_strings and a.dest != "help") or "no positional arguments"
        return f"unexpected argument {extras[0]!r} ({self.prog} takes {takes}; see `{self.prog} --help`)"

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            near = nearest(str(value), [str(c) for c in action.choices])
            hint = f" (did you mean {near!r}?)" if near else ""
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint}; choose from "
                                                 f"{', '.join(map(str, action.choices))}")


def nearest(word: str, known: list[str]) -> str | None:
    """The known flag, command or choice a mistyped `word` most likely meant (None if none is close): a close
    spelling, or the one `word` starts with (`--lr-rate`: `--lr`)."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixes = [k for k in known if word.startswith(k) and len(k) > 3]
    return max(prefixes, key=len) if prefixes else None


def build_parser() -> argparse.ArgumentParser:
    from cnnlab.commands import HelpFormatter

    parser = _Parser(prog="cnnlab", description="Convolutional neural networks: build, train, look inside and "
                     "reuse CNNs.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"cnnlab.commands.{name}").add_parser(sub)
    return parser


def command_words(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """["cnnlab", "segment", "train"]: the command `args` ran, down to its last subcommand."""
    words = [parser.prog]
    while parser._subparsers is not None:
        choice = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
        word = getattr(args, choice.dest, None)
        if word not in choice.choices:
            break
        words.append(word)
        parser = choice.choices[word]
    return words


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = " ".join(command_words(parser, args))
    try:
        return args.func(args) or 0
    except CnnlabError as err:
        print(f"{command}: error: {err}", file=sys.stderr)  # one line: CnnlabError
        return 2
    except BrokenPipeError:  # `cnnlab zoo | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit then finds no pipe
        return 0
    except OSError as err:  # the machine's, not the input's: a full disk, a permission; what was kept is whole
        where = f"{err.filename}: " if err.filename else ""
        print(f"{command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        # torch's allocators raise RuntimeErrors (CUDA's OutOfMemoryError is one) for what Python calls MemoryError
        if isinstance(err, RuntimeError) and not any(s in str(err) for s in ("can't allocate memory", "out of memory")):
            raise
        # images read from disk cost a batch each: what fills memory is the batches and the model
        print(f"{command}: error: out of memory: the batches or the model are too large for this machine (try a "
              "smaller --batch-size, --eval-batch-size or model)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
