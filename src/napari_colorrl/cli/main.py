"""The ``colorrl`` command line: train, predict, evaluate, export, demo (one module each).

Every subcommand calls the same Qt-free core as the napari docks. Errors the user can fix are
printed as one line naming the problem and the fix, with a non-zero exit status; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from napari_colorrl import __version__
from napari_colorrl.cli import UsageError, demo, evaluate, export, predict, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorrl",
        description="ColorRL instance segmentation (reinforced coloring), headless.",
    )
    parser.add_argument("--version", action="version", version=f"napari-colorrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (train, predict, evaluate, export, demo):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            if not args.debug:
                warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("colorrl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error becomes one clear line
        if args.debug:
            raise
        if not isinstance(err, (UsageError, ValueError, OSError, RuntimeError, MemoryError)):
            print(f"colorrl: unexpected error: {type(err).__name__}: {_one_line(err)} "
                  f"(run with --debug for details)", file=sys.stderr)
            return 1
        print(f"colorrl: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each on stderr, without the source line."""
    print(f"colorrl: warning: {_one_line(message)}", file=sys.stderr)
