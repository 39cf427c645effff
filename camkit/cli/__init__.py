"""The ``camkit`` command line: ``main(argv) -> int``, testable in-process.

One module per command (``add_parser(subparsers)`` and ``run(args) -> int``: parse, call the
library, print); the option groups they share are declared once in :mod:`camkit.cli.options`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from camkit.cli.common import CLIError

__all__ = ["CLIError", "build_parser", "main"]

# the order of `camkit --help`
COMMANDS = (
    "explain",
    "demo",
    "data",
    "train",
    "variant",
    "variants",
    "train_seg",
    "segment",
    "explain_seg",
    "compare",
    "evaluate",
    "export",
    "layers",
)


def build_parser() -> argparse.ArgumentParser:
    from camkit import __version__

    parser = argparse.ArgumentParser(
        prog="camkit",
        description="Grad-CAM and FCN class maps for ResNet-50, checked against masks.",
    )
    parser.add_argument("--version", action="version", version=f"camkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in COMMANDS:
        importlib.import_module(f"camkit.cli.{name}").add_parser(commands)
    return parser


def _quiet_stdout() -> None:
    """The reader of our stdout has gone (``camkit layers | head -1``): send the rest, and
    Python's final flush, to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (in-process capture)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process ends
    finally:
        os.close(devnull)


def _message(error: Exception) -> str:
    """The error's one line: a DataLoader worker's error arrives wrapped in its traceback
    ("Caught ImageError in DataLoader worker process 0. Original Traceback …"); its last
    line is the message."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    kind, _, message = last.partition(": ")
    return message if message and kind.replace(".", "").isidentifier() else last


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage, 3 export with failures,
    130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s"
    )
    logging.getLogger("camkit.progress").setLevel(logging.INFO)  # plain progress lines
    from camkit.models.resnet import WeightsUnavailableError

    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (CLIError, OSError, ValueError, TypeError, WeightsUnavailableError) as error:
        if args.debug:
            raise
        print(f"camkit: error: {_message(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("camkit: interrupted", file=sys.stderr)
        return 130
