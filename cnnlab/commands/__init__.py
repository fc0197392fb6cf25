"""One module per CLI subcommand; see `cnnlab.cli`."""

import argparse
import textwrap


def example_epilog(*examples: str) -> str:
    """The `--help` footer every command carries: runnable examples, each inside 80 columns (a long one's comment
    goes on the line above it, and a long command continues on the next line after a backslash, as in a shell)."""
    lines = []
    for example in examples:
        command, _, comment = example.partition("  # ")
        command = command.rstrip()
        if comment and len(example) + 2 > 80:
            lines.append(f"  # {comment}")
        elif comment:
            command = example
        # a line that fits is kept whole: a backslash would otherwise continue a comment, which a shell ignores
        lines += [f"  {command}"] if len(command) + 2 <= 80 else _continued(command)
    return "examples:\n" + "\n".join(lines)


def _continued(command: str, width: int = 80) -> list[str]:
    words, lines, line = command.split(" "), [], "  "
    for word in words:
        if len(line) + len(word) + 2 > width and line.strip():
            lines.append(line.rstrip() + " \\")
            line = "      "
        line += word + " "
    return lines + [line.rstrip()]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, with the description and epilog as written, and lines broken between words only: never
    inside "mnist-scenes" or "--train-limit" at their hyphen, which a reader would copy half of."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_command(subparsers, name: str, help: str, examples: list[str], func) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help, description=textwrap.fill(help, 79, break_on_hyphens=False),
        epilog=example_epilog(*examples), formatter_class=HelpFormatter,
    )
    p.set_defaults(func=func)
    return p
