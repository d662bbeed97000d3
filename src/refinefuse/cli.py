"""Command-line interface: thin wrappers over the Python API.

Each subcommand has an ``_add_<name>(subparsers)`` function that declares its options and
sets ``func`` to a small runner that calls the API. User errors
(:class:`~refinefuse.errors.RefineFuseError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import RefineFuseError


# ----------------------------------------------------------------------------- fuse / info
def _add_fuse(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the fusion work (issue 2)


def _add_info(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the model work (issue 2)


# ----------------------------------------------------------------------------- eval / plot
def _add_eval(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the metrics work (issue 3)


# ----------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the training work (issue 4)


# ----------------------------------------------------------------------------- bench / export-onnx
def _add_bench(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the baselines/benchmark work (issue 5)


# ----------------------------------------------------------------------------- reproduce / demo
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    pass  # filled in by the reproduction work (issue 6)


# ----------------------------------------------------------------------------- entry point
COMMANDS = (_add_fuse, _add_info, _add_eval, _add_train, _add_bench, _add_reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinefuse", description="Multi-modal image fusion (infrared-visible, medical) with RefineFuse."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RefineFuseError as exc:
        print(f"refinefuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refinefuse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
