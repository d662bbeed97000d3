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
    p.add_argument(
        "--method",
        default="refinefuse",
        help="refinefuse (default), any registered network (refinefuse_l3, ...; needs --weights) "
        "or a baseline: mean, max, lp, dwt, gff, mst",
    )
    p.add_argument(
        "--weights",
        help="checkpoint of the network named by --method "
        "(default for refinefuse: the weights shipped with the package)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="network runtime: auto = ONNX Runtime on the CPU when installed (faster), else PyTorch",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "int8"],
        help="network precision: fp32 (default); bf16 = PyTorch bfloat16 autocast; int8 = ONNX Runtime "
        "static int8 on the CPU (calibrated once on msrs/train128, then cached; docs/efficiency.md)",
    )
    p.add_argument(
        "--mode", default="auto", choices=["auto", "ir-vis", "medical"], help="which source gives the output colour"
    )
    p.add_argument("--ext", default=".png", help="output extension for folder inputs (default .png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="fuse only the pairs whose output is missing or unreadable (resume an interrupted run)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fuse)


def _run_fuse(args: argparse.Namespace) -> int:
    from .fuse import fuse_paths

    written = fuse_paths(
        args.ir,
        args.vis,
        args.out,
        method=args.method,
        weights=args.weights,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        mode=args.mode,
        ext=args.ext,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        progress=not args.quiet,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    if not args.quiet:
        where = args.out if not written else written[0] if len(written) == 1 else written[0].parent
        print(f"fused {len(written)} pair(s) -> {where}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="fuse the bundled MSRS example pair with the shipped weights")
    p.add_argument("--out", default="refinefuse-demo", help="output folder (default ./refinefuse-demo)")
    p.add_argument(
        "--method", default="refinefuse", help="refinefuse (default), another registered network or a baseline"
    )
    p.add_argument("--weights", help="checkpoint of that network (default for refinefuse: the shipped weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .fuse import demo

    path = demo(args.out, method=args.method, weights=args.weights, device=args.device, overwrite=args.overwrite)
    print(f"fused the example pair -> {path} (side by side: {path.parent / 'overview.png'})")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="model size: parameters and conv MACs",
        description="Print a model's parameter count and conv/linear MACs (PyTorch's FlopCounterMode) "
        "at square input sizes.",
    )
    p.add_argument("--model", default="refinefuse", help="registered model name (default: refinefuse)")
    p.add_argument(
        "--size", type=int, nargs="+", default=[256, 512], metavar="N", help="input sizes NxN (default: 256 512)"
    )

    def run(args: argparse.Namespace) -> int:
        from .models import create_model, list_models
        from .models.complexity import count_macs, count_params

        if args.model not in list_models():
            raise RefineFuseError(f"unknown model {args.model!r}; available: {', '.join(list_models())}")
        if any(s < 1 for s in args.size):
            raise RefineFuseError(f"--size must be positive, got {args.size}")
        model = create_model(args.model)
        print(f"model: {args.model}  config: {model.config}")
        print(f"parameters: {count_params(model):,} ({count_params(model) / 1e6:.2f} M)")
        print(f"{'size':>11}  {'MACs (G)':>9}")
        for s in args.size:
            print(f"{f'{s}x{s}':>11}  {count_macs(model, s, s) / 1e9:9.2f}")
        return 0

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- eval / plot
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score fused images (VIF, AG, SCD, Qabf, SF, EN, SSIM, ...) against their sources",
        description="Score one or more folders of fused images against the source folders, pairing "
        "images by file name. Prints a Markdown table of means (best bold, second underlined); with "
        "--out also writes the per-image CSV and the summary as Markdown and JSON beside it.",
    )
    p.add_argument(
        "--fused",
        required=True,
        action="append",
        metavar="[NAME=]DIR",
        help="folder of fused images; repeat for several methods; NAME= sets the row name (default: the folder name)",
    )
    p.add_argument("--ir", required=True, help="infrared (or CT/PET/SPECT) source folder")
    p.add_argument("--vis", required=True, help="visible (or MRI) source folder")
    p.add_argument(
        "--metrics",
        help="comma-separated metric names, or 'all' (default: the profile's list; paper: VIF,AG,SCD,Qabf,SF,EN,SSIM)",
    )
    p.add_argument(
        "--profile",
        default="paper",
        choices=["paper", "cddfuse", "tang"],
        help="metric conventions (default paper: reproduces the paper's tables)",
    )
    p.add_argument("--out", metavar="CSV", help="per-image CSV; the summary goes to the same name with .md and .json")
    p.add_argument(
        "--plot",
        nargs="?",
        const="",
        metavar="PNG",
        help="also draw a bar chart of the means (default name: the --out name with .png, else metrics.png)",
    )
    # numbers are checked by _run_eval, so that a bad value is one line (exit 2) like other input errors
    p.add_argument("--workers", metavar="N", help="processes (default: number of CPUs; 1 = no pool)")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip source pairs without a fused image and report how many were skipped",
    )
    p.add_argument("--decimals", default="4", metavar="N", help="digits in the tables, 0-15 (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _eval_int(option: str, text: str | int, low: int, high: int | None = None) -> int:
    """``int(text)`` if it lies in ``[low, high]``, else :class:`InputError` naming the option."""
    from .errors import InputError

    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InputError(f"{option} must be a whole number {allowed}, got '{text}'")
    return value


def _run_eval(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    from .metrics import evaluate_folders, markdown_table, plot_summary, write_reports
    from .metrics.evaluate import MetricWarning, name_list, parse_method_dirs
    from .metrics.report import MAX_DECIMALS

    decimals = _eval_int("--decimals", args.decimals, 0, MAX_DECIMALS)
    workers = None if args.workers is None else _eval_int("--workers", args.workers, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # printed below, one line each
        results = evaluate_folders(
            parse_method_dirs(args.fused),
            args.ir,
            args.vis,
            metrics=args.metrics,
            profile=args.profile,
            workers=workers,
            skip_missing=args.skip_missing,
            progress=not args.quiet,
        )
    means = results.means()
    print(markdown_table(means, results.metrics, decimals=decimals, counts=results.counts()), end="")
    for line in results.issues():
        print(f"refinefuse: warning: {line}", file=sys.stderr)
    for method, names in results.skipped.items():
        print(f"{method}: skipped {len(names)} pair(s) without a fused image ({name_list(names)})", file=sys.stderr)
    if args.skip_missing:
        print(f"skipped {results.n_skipped} missing fused image(s) in total", file=sys.stderr)
    if args.out:
        for path in write_reports(results, args.out, decimals=decimals).values():
            print(f"wrote {path}", file=sys.stderr)
    if args.plot is not None:
        png = (
            Path(args.plot) if args.plot else (Path(args.out).with_suffix(".png") if args.out else Path("metrics.png"))
        )
        print(f"wrote {plot_summary(means, png, results.metrics, title=f'profile {results.profile}')}", file=sys.stderr)
    return 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="bar chart PNG of a summary JSON written by 'refinefuse eval --out'")
    p.add_argument("summary", help="summary JSON (results.json from 'refinefuse eval --out results.csv')")
    p.add_argument("-o", "--out", help="PNG to write (default: the summary name with .png)")
    p.add_argument("--metrics", help="comma-separated metrics to show (default: all in the summary)")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import InputError
    from .metrics import plot_summary, read_summary_json

    rows, columns = read_summary_json(args.summary)
    if args.metrics:
        wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in columns]
        if unknown:
            raise InputError(f"{args.summary}: no metric {unknown[0]} (has {', '.join(columns)})")
        columns = tuple(wanted)
    png = Path(args.out) if args.out else Path(args.summary).with_suffix(".png")
    print(f"wrote {plot_summary(rows, png, columns, title=args.title)}")
    return 0


# ----------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a fusion model on paired ir/ and vi/ folders",
        description="Train RefineFuse (paper settings by default: SGD, lr 1e-3, batch 8, 300 epochs, crop 256). "
        "Checkpoints (last.pt, best.pt), log.csv, TensorBoard events and validation grids go to --out. "
        "Several GPUs: torchrun --nproc_per_node N -m refinefuse train ...",
    )
    p.add_argument("--config", help="YAML file of settings (e.g. src/refinefuse/configs/train_msrs.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting as KEY=VALUE, value in YAML (repeatable)",
    )
    _add_config_flags(p)
    p.set_defaults(func=_run_train)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~refinefuse.config.TrainConfig` field, generated from the dataclass:
    ``--batch-size 8``, ``--rescale "[1, 4]"``, ``--augment/--no-augment``; help from its docs."""
    from dataclasses import fields

    from .config import TrainConfig, field_help

    docs = field_help()
    group = p.add_argument_group("settings (defaults: the paper's, see TrainConfig; lists and dicts in YAML)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=docs.get(f.name),
            )
        else:
            kind = str(f.type).split("[")[0].split(" ")[0]
            metavar = {"int": "N", "float": "X", "str": "TEXT", "list": "[A, B]", "dict": "{K: V}"}.get(
                kind, kind.upper()
            )
            group.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=metavar, help=docs.get(f.name))


def _run_train(args: argparse.Namespace) -> int:
    import os
    from dataclasses import fields

    from .config import TrainConfig, parse_flag_value, parse_overrides
    from .training import build_config, train

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name) and f.name != "resume"}
    overrides = {k: v if isinstance(v, bool) else parse_flag_value(k, v) for k, v in given.items()}
    overrides.update(parse_overrides(args.set))
    cfg = build_config(args.config, overrides, resume=bool(getattr(args, "resume", False)))
    best = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best checkpoint: {best}")
    return 0


# ----------------------------------------------------------------------------- bench / export-onnx
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="efficiency benchmark (Table 11): parameters, MACs and runtimes of RefineFuse and the baselines",
        description="Parameters, conv MACs and median runtimes per pair, for the network forward alone and "
        "for the whole fusion of a file pair (read, colour conversion, fusion, write; model loaded once), on the "
        "bundled MSRS pair resized to each size. Prints a Markdown table; --out also writes JSON (+ .md beside it).",
    )
    p.add_argument(
        "--methods",
        help="comma-separated: registered networks (refinefuse, refinefuse_l3, ...), NETWORK-onnx "
        "(ONNX Runtime, CPU) and/or baselines (default: refinefuse, refinefuse-onnx when onnxruntime is "
        "installed, and every baseline)",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["640x480", "1024x768"],
        metavar="WxH",
        help="image sizes to time (default: 640x480 1024x768)",
    )
    p.add_argument(
        "--mac-sizes",
        nargs="+",
        type=int,
        default=[256, 512],
        metavar="N",
        help="square sizes for the MAC count (default: 256 512)",
    )
    p.add_argument("--device", default="auto", help="network device: auto (CUDA if available), cpu, cuda, ...")
    p.add_argument("--threads", type=int, help="torch/OpenCV CPU threads (default: torch's default)")
    p.add_argument("--batch-size", type=int, default=1, help="pairs per network forward (default 1)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="network autocast precision (fp16: CUDA only; bf16: CPU or CUDA with bf16)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; median reported (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--weights", help="network checkpoint (default: shipped weights, else random init)")
    p.add_argument(
        "--channels",
        type=int,
        nargs="+",
        metavar="C",
        help="network widths per level (default: paper config; for quick checks)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 128x96 only, MACs at 64, 1 run, no warm-up")
    p.add_argument(
        "--folder",
        metavar="DATASET",
        help="also time folder fusion of a whole bundled dataset (e.g. msrs: the 361 test pairs): reading, "
        "fusing and writing overlapped; pairs per second",
    )
    p.add_argument(
        "--folder-precision",
        default="fp32",
        choices=["fp32", "bf16", "int8"],
        help="network precision of --folder (default fp32)",
    )
    p.add_argument("--folder-pairs", type=int, metavar="N", help="--folder on N evenly spaced pairs (default all)")
    p.add_argument("--out", metavar="JSON", help="write the result as JSON here and the table beside it (.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_bench)


def _parse_size(text: str) -> tuple[int, int]:
    from .errors import InputError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"bad size '{text}' (expected WxH, e.g. 640x480)") from None
    return w, h


def _run_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .bench import efficiency_table, run_benchmark

    sizes, mac_sizes, repeats, warmup = [_parse_size(s) for s in args.sizes], args.mac_sizes, args.repeats, args.warmup
    if args.quick:
        sizes, mac_sizes, repeats, warmup = [(128, 96)], [64], 1, 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    result = run_benchmark(
        methods,
        sizes=sizes,
        mac_sizes=mac_sizes,
        device=args.device,
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision,
        repeats=repeats,
        warmup=warmup,
        weights=args.weights,
        model_overrides={"channels": args.channels} if args.channels else None,
        progress=not args.quiet,
    )
    table = efficiency_table(result)
    if args.folder:
        from .bench import folder_throughput

        result["folder"] = folder_throughput(
            args.folder, precision=args.folder_precision, max_pairs=args.folder_pairs, threads=args.threads
        )
        f = result["folder"]
        table += (
            f"\nFolder fusion ({f['dataset']}, {f['pairs']} pairs, refinefuse {f['precision']}, CPU, "
            f"{f['threads']} threads, read/fuse/write overlapped): {f['pairs_per_s']} pairs/s ({f['seconds']} s)\n"
        )
    print(table, end="")
    if args.out:
        from .io import write_text

        out = Path(args.out)
        write_text(out, json.dumps(result, indent=2) + "\n")
        write_text(out.with_suffix(".md"), table)
        print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


def _add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the network to ONNX (for ONNX Runtime)",
        description="Export a RefineFuse checkpoint to ONNX (inputs ir, vis: float32 (N,1,H,W) in [0,1], H and W "
        "multiples of the model stride; batch, height and width are dynamic). The graph has no padding: "
        "refinefuse.export.OnnxFuser pads and crops. Prints the max abs difference to PyTorch on the example pair.",
    )
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--height", type=int, default=480, help="trace height (default 480)")
    p.add_argument("--width", type=int, default=640, help="trace width (default 640)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .checkpoint import load_model
    from .colour import luminance
    from .errors import InputError
    from .export import compare_onnx, export_onnx
    from .fuse import EXAMPLE_PAIR, read_pair
    from .methods import DEFAULT_METHOD, load_network

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out}: output exists (use --overwrite to replace it)")
    # any network's checkpoint, else the shipped weights
    model = load_model(args.weights, map_location="cpu") if args.weights else load_network(DEFAULT_METHOD)[0]
    export_onnx(model, out, height=args.height, width=args.width, opset=args.opset)
    ir, vis = (luminance(img) for img in read_pair(EXAMPLE_PAIR))
    diff = compare_onnx(model, out, ir, vis)
    print(
        f"wrote {out}; max abs difference to PyTorch on {EXAMPLE_PAIR.name} ({ir.shape[1]}x{ir.shape[0]}): {diff:.2e}"
    )
    return 0


# ----------------------------------------------------------------------------- reproduce / demo
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="paper-style quality table and comparison figure of a dataset or of any folder pair",
        description="Fuse every pair of a dataset (--dataset NAME, or any two folders: --ir DIR --vis DIR --name NAME) "
        "with each method, score them (profile paper) and write "
        "OUT/NAME/table.md (VIF AG SCD Qabf SF EN SSIM, best bold, second underlined, with the paper's "
        "rows marked '(published)' where the paper has a table of NAME, e.g. m3fd), table.json, per_image.csv "
        "and figure.png. Existing fused images in OUT/NAME/METHOD/ are reused, so a rerun only evaluates; "
        "--overwrite recomputes them.",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="bundled dataset: msrs | tno | roadscene | mri_ct | mri_pet | mri_spect"
    )
    p.add_argument("--ir", metavar="DIR", help="instead of --dataset: infrared (or CT/PET/SPECT) folder")
    p.add_argument("--vis", metavar="DIR", help="with --ir: visible (or MRI) folder, paired by file name")
    p.add_argument(
        "--name",
        help="with --ir/--vis: the dataset's name (results go to OUT/NAME; m3fd, msrs, tno, ... add the paper's rows)",
    )
    p.add_argument("--mode", choices=["ir-vis", "medical"], help="with --ir/--vis: how to fuse (default ir-vis)")
    p.add_argument("--data-root", help="shared data root (default $REFINEFUSE_DATA_ROOT or ../shared)")
    p.add_argument(
        "--methods",
        help="comma-separated methods: registered networks (refinefuse, refinefuse_l3, ...) "
        "and baselines (default: refinefuse and every baseline; max and mean are always added)",
    )
    p.add_argument("--out", default="results", help="results root (default ./results)")
    p.add_argument("--weights", help="checkpoint of the network among --methods (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "int8"],
        help="network precision (see refinefuse fuse --help); fused images of another precision are not reused",
    )
    p.add_argument("--max-pairs", type=int, help="only N evenly spaced pairs (quick runs; stated in the caption)")
    p.add_argument("--workers", type=int, help="evaluation processes (default: number of CPUs)")
    p.add_argument("--figure-pair", help="pair name shown in the figure (default: msrs 00828N, others the first)")
    p.add_argument("--zoom", metavar="X,Y,W,H", help="zoom box of the figure in pixels (default: automatic)")
    p.add_argument(
        "--overwrite",
        "--refuse",
        action="store_true",
        dest="overwrite",
        help="recompute fused images that already exist",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_reproduce)


def _run_reproduce(args: argparse.Namespace) -> int:
    from .datasets import folder_dataset
    from .errors import InputError
    from .reproduce import reproduce

    folders = args.ir is not None or args.vis is not None
    if args.dataset is not None and folders:
        raise InputError("--dataset and --ir/--vis exclude each other (choose one)")
    if args.dataset is not None and (args.name is not None or args.mode is not None):
        raise InputError("--name and --mode go with --ir/--vis, not with --dataset")
    if args.dataset is None and (args.ir is None or args.vis is None or args.name is None):
        raise InputError("give --dataset NAME, or --ir DIR --vis DIR --name NAME")
    dataset = (
        args.dataset
        if args.dataset is not None
        else folder_dataset(args.ir, args.vis, args.name, mode=args.mode or "ir-vis")
    )
    res = reproduce(
        dataset,
        out=args.out,
        data_root_dir=args.data_root,
        methods=args.methods,
        weights=args.weights,
        device=args.device,
        precision=args.precision,
        max_pairs=args.max_pairs,
        workers=args.workers,
        figure_pair=args.figure_pair,
        zoom=args.zoom,
        overwrite=args.overwrite,
        progress=not args.quiet,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(res["table"].read_text(), end="")
    for key in ("table", "json", "csv", "figure"):
        print(f"wrote {res[key]}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- ablate / features
def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="ablation study (paper Tables 8-10): train every variant under one schedule, evaluate, tabulate",
        description="Train each variant of the requested ablation tables (8: loss settings A, B, C; 9: SFIM/PSIM/FIM "
        "variants I-V; 10: 3 and 5 levels; the full model in every table) with the project's trainer under ONE "
        "schedule, same data and seed, each in OUT/runs/VARIANT-seedK; evaluate each on MSRS test and TNO "
        "(reproduce); measure parameters, MACs at 256x256 and CPU time at 640x480; write OUT/tableN.md and .json "
        "(our rows, then the paper's rows marked '(published)'). Hours of CPU with the default schedule; "
        "--resume continues a killed run.",
    )
    p.add_argument("--table", default="all", metavar="8|9|10|all", help="which table(s), e.g. 9 or 8,10 (default all)")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation folder (runs, evaluations, tables)")
    p.add_argument(
        "--schedule",
        metavar="FILE",
        help="YAML of training settings shared by every run (default: the packaged configs/ablation_cpu.yaml)",
    )
    p.add_argument("--data", metavar="DIR", help="training folder (default ../shared/data/msrs/train128)")
    p.add_argument("--data-root", help="shared data root (default $REFINEFUSE_DATA_ROOT or ../shared)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue: skip finished runs, resume an unfinished one, reuse finished evaluations",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="train and evaluate nothing: write the tables from the runs and evaluations already finished in "
        "OUT (unfinished rows say 'not run yet'); timings are measured for finished models if missing",
    )
    p.add_argument(
        "--max-pairs", type=int, metavar="N", help="evaluate N evenly spaced pairs per dataset (default all)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="K",
        help="train the full model with K seeds; its row is then mean ± std (seed noise) (default 1)",
    )
    p.add_argument("--datasets", default="msrs,tno", help="evaluation datasets, comma-separated (default msrs,tno)")
    p.add_argument("--variants", help="only these variants, comma-separated (quick runs; keys of ablation.VARIANTS)")
    p.add_argument("--device", default="auto", help="evaluation device (training: the schedule's device)")
    p.add_argument("--bench-repeats", type=int, default=5, metavar="N", help="timed CPU forward passes (default 5)")
    p.add_argument("--workers", type=int, help="metric evaluation processes (default: number of CPUs)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch/OpenCV threads for evaluation and timing (default: torch's; training: the schedule's threads)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_ablate)


def _run_ablate(args: argparse.Namespace) -> int:
    from .ablation import ablate

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]

    res = ablate(
        args.table,
        args.out,
        schedule=args.schedule,
        data=args.data,
        resume=args.resume or args.tables_only,
        tables_only=args.tables_only,
        max_pairs=args.max_pairs,
        seeds=args.seeds,
        datasets=names(args.datasets) or [],
        variants=names(args.variants),
        data_root_dir=args.data_root,
        device=args.device,
        bench_repeats=args.bench_repeats,
        workers=args.workers,
        threads=args.threads,
        progress=not args.quiet,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    for paths in res["tables"].values():
        print(paths["md"].read_text(), end="\n")
        print(f"wrote {paths['md']} and {paths['json']}", file=sys.stderr)
    return 0


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="feature visualisation of one pair (paper Fig. 11): level-1/3 features, SFIM, PSIM and FIM outputs",
        description="Run the network on one pair and save one labelled figure of its inner features (forward "
        "hooks): the infrared, visible and fused features at levels 1 and 3, and the outputs of SFIM (level 2), "
        "PSIM (deepest level) and FIM. Each map is shown as its first principal component over the channels "
        "(--reduce pca, sign following the channel mean) or its channel mean.",
    )
    p.add_argument("--ir", required=True, help="infrared (or CT/PET/SPECT) image")
    p.add_argument("--vis", required=True, help="visible (or MRI) image")
    p.add_argument("--out", required=True, metavar="FIG.png", help="figure to write (PNG)")
    p.add_argument("--weights", help="checkpoint of any registered network (default: the shipped weights)")
    p.add_argument("--reduce", default="pca", choices=["pca", "mean"], help="channels -> one map (default pca)")
    p.set_defaults(func=_run_features)


def _run_features(args: argparse.Namespace) -> int:
    from .features import feature_figure

    path = feature_figure(args.ir, args.vis, args.out, weights=args.weights, reduce=args.reduce)
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- serve
def _add_serve(sub: argparse._SubParsersAction) -> None:
    from .web.settings import DEFAULT_HOST, DEFAULT_PORT, WebSettings

    d = WebSettings()
    p = sub.add_parser(
        "serve",
        help="local web app: upload two images, compare fusion methods side by side (extra [web])",
        description="Start the web app (FastAPI + Uvicorn): a page at http://HOST:PORT/ to upload a pair or pick an "
        "example, fuse it with the chosen methods and compare them (slider, zoom, the seven metrics, downloads), "
        "and the JSON API it uses (POST /api/fuse, POST /api/evaluate; docs at /docs). Bound to localhost unless "
        "--host says otherwise. Needs pip install 'refinefuse[web]'.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--weights", help="checkpoint of the network (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    p.add_argument(
        "--data-root", help="where the TNO and MRI-PET examples are read (default $REFINEFUSE_DATA_ROOT or ../shared)"
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / 2**20,
        help="largest request body in MiB (default %(default)g)",
    )
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="largest image in pixels (default %(default)d)")
    p.add_argument(
        "--max-queue", type=int, default=d.max_queue, help="requests that may wait; more get 503 (default %(default)d)"
    )
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import importlib.util
    import ipaddress

    from .errors import InputError
    from .web.settings import WebSettings

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"serve needs the web extra ({', '.join(missing)} missing): pip install 'refinefuse[web]'")
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port must be between 1 and 65535, got {args.port}")
    try:
        settings = WebSettings(
            weights=args.weights,
            device=args.device,
            data_root=args.data_root,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            max_queue=args.max_queue,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"refinefuse serve: warning: bound to {args.host}: reachable from other machines", file=sys.stderr)
    from .web import serve

    serve(settings, host=args.host, port=args.port)  # loads the network first: a bad checkpoint is one line
    return 0


# ----------------------------------------------------------------------------- detect
def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="fusion for detection (paper Table 4): train and score a YOLO detector on each method's images",
        description="For each method (ir, vis: the single source; any fusion method) make its images of the MSRS "
        "train128 and test pairs (fused with the same code as 'fuse'; test pairs resized to the training size "
        "first), train one Ultralytics YOLO detector per method and seed with identical settings, score each "
        "on the test images (mAP@0.5 and mAP@[0.5,0.95], per class and overall) and write OUT/table.md, "
        "OUT/table.json and OUT/detections.jpg. Labels: the union of the infrared and visible boxes, duplicates "
        "merged. Needs the detect extra (pip install 'refinefuse[detect]'). Finished runs in OUT are reused.",
    )
    p.add_argument("--dataset", default="msrs", choices=["msrs"], help="dataset with boxes (default msrs)")
    p.add_argument(
        "--methods", default="ir,vis,max,mean,refinefuse", help="comma-separated (default ir,vis,max,mean,refinefuse)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (images, runs, table, figure)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per detector (default 20)")
    p.add_argument("--imgsz", type=int, default=128, help="detector input size, a multiple of 32 (default 128)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16, the paper's)")
    p.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds per method (default 3)")
    p.add_argument(
        "--detector",
        default="yolov8n.yaml",
        metavar="MODEL",
        help="Ultralytics model YAML to train from scratch (default yolov8n.yaml), or a .safetensors detector "
        "to start from (.pt pickles are refused: docs/detection.md shows how to convert trusted weights)",
    )
    p.add_argument("--weights", help="fusion network checkpoint (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--max-train", type=int, metavar="N", help="use N evenly spaced training pairs (quick looks)")
    p.add_argument("--max-test", type=int, metavar="N", help="use N evenly spaced test pairs (quick looks)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads while training (default: every CPU)")
    p.add_argument("--tables-only", action="store_true", help="train nothing: table and figure from finished runs")
    p.add_argument("--data-root", help="shared data root (default $REFINEFUSE_DATA_ROOT or ../shared)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from .detection import DetectConfig, DetectorSettings, detect

    methods = tuple(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    cfg = DetectConfig(
        methods=methods,
        seeds=args.seeds,
        detector=DetectorSettings(detector=args.detector, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch),
        weights=args.weights,
        device=args.device,
        max_train=args.max_train,
        max_test=args.max_test,
        threads=args.threads,
    )
    res = detect(
        args.out,
        cfg,
        tables_only=args.tables_only,
        data_root_dir=args.data_root,
        progress=not args.quiet,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(res["table"].read_text(), end="")
    print(f"wrote {res['table']}, {res['json']}" + (f" and {res['figure']}" if res["figure"] else ""), file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- entry point
COMMANDS = (
    _add_fuse,
    _add_demo,
    _add_info,
    _add_eval,
    _add_plot,
    _add_train,
    _add_bench,
    _add_export_onnx,
    _add_reproduce,
    _add_ablate,
    _add_features,
    _add_detect,
    _add_serve,
)


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
