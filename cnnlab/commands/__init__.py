"""One module per CLI subcommand; see `cnnlab.cli`."""

import argparse


def example_epilog(*examples: str) -> str:
    """The `--help` footer every command carries: runnable examples."""
    return "examples:\n" + "\n".join(f"  {e}" for e in examples)


def add_command(subparsers, name: str, help: str, examples: list[str], func) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help, description=help, epilog=example_epilog(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p
