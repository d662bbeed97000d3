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
    p = sub.add_parser(
        "fuse",
        help="fuse an image pair, or two folders of pairs matched by file name",
        description="Fuse infrared + visible (or CT/PET/SPECT + MRI) images. Colour visible or "
        "functional images are fused through their Y channel and keep their colour.",
    )
    p.add_argument("--ir", required=True, help="infrared (or CT/PET/SPECT) image file or folder")
    p.add_argument("--vis", required=True, help="visible (or MRI) image file or folder")
    p.add_argument("--out", required=True, help="output file, or folder for folder inputs")
    p.add_argument("--method", default="refinefuse", help="refinefuse (default) or a baseline: mean, max, lp, dwt, gff, mst")
    p.add_argument("--weights", help="checkpoint for the network (default: the weights shipped with the package)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--mode", default="auto", choices=["auto", "ir-vis", "medical"], help="which source gives the output colour")
    p.add_argument("--ext", default=".png", help="output extension for folder inputs (default .png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fuse)


def _run_fuse(args: argparse.Namespace) -> int:
    from .fuse import fuse_paths

    written = fuse_paths(
        args.ir, args.vis, args.out, method=args.method, weights=args.weights, device=args.device,
        mode=args.mode, ext=args.ext, overwrite=args.overwrite, progress=not args.quiet,
    )
    if not args.quiet:
        where = written[0] if len(written) == 1 else written[0].parent
        print(f"fused {len(written)} pair(s) -> {where}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="fuse the bundled MSRS example pair with the shipped weights")
    p.add_argument("--out", default="refinefuse-demo", help="output folder (default ./refinefuse-demo)")
    p.add_argument("--method", default="refinefuse", help="refinefuse (default) or a baseline name")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .fuse import demo

    path = demo(args.out, method=args.method, weights=args.weights, device=args.device, overwrite=args.overwrite)
    print(f"fused the example pair -> {path} (side by side: {path.parent / 'overview.png'})")
    return 0


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
COMMANDS = (_add_fuse, _add_demo, _add_info, _add_eval, _add_train, _add_bench, _add_reproduce)


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
