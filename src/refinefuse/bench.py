"""Efficiency benchmark (paper Table 11): size and speed of RefineFuse and the baselines.

For each method :func:`run_benchmark` reports

- parameters and conv/linear MACs at square sizes (network only; PyTorch's FlopCounterMode, see
  :mod:`refinefuse.models.complexity`; baselines have none: ``None``, shown as ``-``);
- **forward**: median wall time per pair of the grey fusion alone on luminance inputs
  (network: :func:`~refinefuse.models.inference.fuse_tensor` on a ``(batch, 1, H, W)``
  tensor already on the device, time divided by the batch; baselines: their grey fuser);
- **file**: median wall time of the whole fusion of one file pair with the model already
  loaded: read both PNGs, colour conversion (Y in, Cr/Cb back), fusion, PNG write
  (:func:`refinefuse.fuse.read_pair`, :func:`~refinefuse.fuse.fuse_arrays`,
  :func:`~refinefuse.io.write_image`), batch 1.

Inputs are the bundled MSRS pair (:data:`refinefuse.fuse.EXAMPLE_PAIR`, 640x480, colour
visible) resized with OpenCV to each size. Times are after ``warmup`` untimed runs; CUDA
is synchronised around each timed run. Without ``weights`` and without shipped weights the
network is randomly initialised (timing and size do not depend on the weights; the result
notes say so).
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .export import onnx_available
from .metrics.report import pipe_table

__all__ = ["run_benchmark", "efficiency_table", "folder_throughput", "PRECISIONS", "ONNX_SUFFIX", "INT8_SUFFIX"]

PRECISIONS = ("fp32", "bf16", "fp16")
#: ``<network>-onnx``: that network exported to ONNX and run by ONNX Runtime on the CPU (optional extra ``onnx``).
ONNX_SUFFIX = "-onnx"
#: ``<network>-int8``: the same through ONNX Runtime after static int8 quantisation (calibrated on
#: msrs/train128, :func:`refinefuse.export.quantize_int8`).
INT8_SUFFIX = "-int8"


# ----------------------------------------------------------------------------- helpers
def _size_key(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` on ``device``; :class:`InputError` where unsupported."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise InputError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}")
    elif not (device.type == "cpu" and precision == "bf16"):
        raise InputError(f"precision {precision} is not supported on {device.type} (CPU: fp32 or bf16)")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device, per: int = 1) -> list[float]:
    """Wall times (ms, divided by ``per``) of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000.0 * (time.perf_counter() - t0) / per)
    return times


def _network_of(method: str) -> str | None:
    """The registered network a bench method times (``name`` or ``name-onnx``), else ``None``."""
    from .methods import check_method, is_network

    base = method.removesuffix(ONNX_SUFFIX).removesuffix(INT8_SUFFIX)
    if is_network(base):
        return base
    if base != method:
        raise InputError(
            f"unknown fusion method '{method}' ({ONNX_SUFFIX} or {INT8_SUFFIX} follows a network name, "
            "e.g. refinefuse-onnx)"
        )
    check_method(method)  # InputError for unknown names
    return None


def _load_network(
    name: str, weights: str | os.PathLike[str] | None, model_overrides: dict | None
) -> tuple[torch.nn.Module, str]:
    """Network ``name`` to time and a note on where its weights come from."""
    from .methods import default_weights, load_network
    from .models import create_model

    if weights is not None:
        if model_overrides:
            raise InputError("give either weights or model overrides, not both")
        return load_network(name, weights)[0], f"weights: {weights}"
    shipped = default_weights(name)
    if shipped is not None and not model_overrides:
        return load_network(name, shipped)[0], f"weights: shipped {shipped.name}"
    model = create_model(name, **(model_overrides or {}))
    what = f"config {model_overrides}" if model_overrides else "paper config"
    return model, f"network randomly initialised ({what}); timing does not depend on the weights"


def _calibration_available() -> bool:
    from .export import CALIBRATION_SET
    from .paths import dataset_dir

    return (dataset_dir(CALIBRATION_SET) / "ir").is_dir()


def _machine(device: torch.device, threads: int) -> dict[str, Any]:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _network_grey_fuser(model: torch.nn.Module, device: torch.device, precision: str):
    """:func:`refinefuse.methods.network_fuser` under ``precision`` autocast."""
    from .methods import network_fuser

    fuser = network_fuser(model, device)

    def fuse(ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        with _autocast(device, precision):
            return fuser(ir_y, vis_y)

    return fuse


# ----------------------------------------------------------------------------- benchmark
def run_benchmark(
    methods: Sequence[str] | None = None,
    sizes: Sequence[tuple[int, int]] = ((640, 480), (1024, 768)),
    mac_sizes: Sequence[int] = (256, 512),
    device: str | torch.device = "auto",
    threads: int | None = None,
    batch_size: int = 1,
    precision: str = "fp32",
    repeats: int = 5,
    warmup: int = 1,
    weights: str | os.PathLike[str] | None = None,
    model_overrides: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Time and size RefineFuse and the baselines; returns a JSON-able dict.

    Args:
        methods: registered networks (``"refinefuse"``, ``"refinefuse_l3"``, ...), the same
            with ``-onnx`` (ONNX Runtime, CPU) or ``-int8`` (ONNX Runtime, static int8) and/or
            baseline names (default: refinefuse, refinefuse-onnx, refinefuse-int8 and every
            baseline; the ONNX rows only with onnxruntime installed and fp32, the int8 row only
            with msrs/train128 under the data root for its calibration).
        sizes: ``(width, height)`` images to time (default MSRS 640x480 and M3FD 1024x768).
        mac_sizes: square sizes for the MAC count.
        device: network device (``"auto"``, ``"cpu"``, ``"cuda"``...); baselines run on the CPU.
        threads: torch/OpenCV CPU threads (default: leave as is).
        batch_size: pairs per network forward (forward time is per pair; file fusion is 1 pair).
        precision: ``"fp32"``, ``"bf16"`` (CUDA with bf16, or CPU) or ``"fp16"`` (CUDA) autocast.
        repeats, warmup: timed and untimed runs per measurement (median reported).
        weights: network checkpoint (default: the network's shipped weights, else random init);
            it must hold the network(s) named in ``methods``.
        model_overrides: network config overrides (e.g. ``{"channels": (8, 8, 8, 8)}`` for tests).

    Returns:
        ``{"machine", "settings", "notes", "rows"}``; each row has ``method``, ``params``,
        ``macs`` (``{size: MACs}``), ``forward_ms`` and ``file_ms`` (``{"WxH": median}``)
        and ``times_ms`` (all runs).
    """
    from .baselines import list_baselines
    from .methods import DEFAULT_METHOD, resolve_device

    if not methods:
        with_onnx = onnx_available() and precision == "fp32"
        with_int8 = with_onnx and _calibration_available()
        onnx_rows = [DEFAULT_METHOD + ONNX_SUFFIX] if with_onnx else []
        onnx_rows += [DEFAULT_METHOD + INT8_SUFFIX] if with_int8 else []
        methods = [DEFAULT_METHOD, *onnx_rows, *list_baselines()]
    methods = list(methods)
    for name in methods:
        _network_of(name)  # InputError for unknown names, before any work
    for name in (m for m in methods if m.endswith((ONNX_SUFFIX, INT8_SUFFIX))):
        if not onnx_available():
            raise InputError(f"method {name} needs onnx and onnxruntime: pip install 'refinefuse[onnx]'")
        if precision != "fp32":
            raise InputError(f"method {name} runs in fp32 only (got precision {precision})")
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise InputError(f"need repeats >= 1, warmup >= 0, batch size >= 1 (got {repeats}, {warmup}, {batch_size})")
    sizes = [(int(w), int(h)) for w, h in sizes]
    if any(w < 1 or h < 1 for w, h in sizes) or any(int(s) < 1 for s in mac_sizes):
        raise InputError(f"sizes must be positive, got {sizes} and MAC sizes {list(mac_sizes)}")
    dev = resolve_device(device)
    _autocast(dev, precision)  # validate before the work
    saved_threads = torch.get_num_threads(), cv2.getNumThreads()
    if threads:
        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    try:
        return _run(
            methods, sizes, mac_sizes, dev, batch_size, precision, repeats, warmup, weights, model_overrides, progress
        )
    finally:  # leave the process's thread settings as they were
        torch.set_num_threads(saved_threads[0])
        cv2.setNumThreads(saved_threads[1])


def _run(methods, sizes, mac_sizes, dev, batch_size, precision, repeats, warmup, weights, model_overrides, progress):
    from .colour import luminance
    from .fuse import EXAMPLE_PAIR, fuse_arrays, read_pair
    from .io import Pair, write_image
    from .methods import get_fuser
    from .models.complexity import count_macs, count_params
    from .models.inference import fuse_tensor

    notes = [
        "forward: grey fusion of luminance only (network: tensors already on the device, time per pair)",
        "file: read PNG pair + colour conversion + fusion + PNG write, model loaded once, batch 1",
        f"median of {repeats} runs after {warmup} warm-up run(s); baselines run on the CPU",
        f"input: bundled MSRS pair {EXAMPLE_PAIR.name} resized with OpenCV (INTER_AREA/INTER_CUBIC)",
    ]
    networks = list(dict.fromkeys(n for n in map(_network_of, methods) if n is not None))
    models, network_macs = {}, {}  # network name -> model, MACs (counted once for name and name-onnx)
    for net in networks:
        model, weight_note = _load_network(net, weights, model_overrides)
        models[net] = model.to(dev).eval()
        notes.append(weight_note if len(networks) == 1 else f"{net}: {weight_note}")
    for name in (m for m in methods if m.endswith(ONNX_SUFFIX)):
        notes.append(f"{name}: ONNX Runtime CPUExecutionProvider, same threads, fp32, export time not counted")
    for name in (m for m in methods if m.endswith(INT8_SUFFIX)):
        notes.append(
            f"{name}: ONNX Runtime, static int8 (calibrated on 32 msrs/train128 pairs), same threads, "
            "export and quantisation time not counted"
        )

    ir0, vis0 = read_pair(EXAMPLE_PAIR)
    rows = []
    with tempfile.TemporaryDirectory(prefix="refinefuse-bench-") as tmp:
        pairs = {}
        for w, h in sizes:  # one resized pair per size, written once
            interp = cv2.INTER_AREA if w * h < ir0.shape[0] * ir0.shape[1] else cv2.INTER_CUBIC
            ir, vis = (cv2.resize(img, (w, h), interpolation=interp) for img in (ir0, vis0))
            pair = Pair(_size_key((w, h)), Path(tmp) / f"{w}x{h}_ir.png", Path(tmp) / f"{w}x{h}_vis.png")
            write_image(pair.ir, ir)
            write_image(pair.vis, vis)
            pairs[(w, h)] = pair
        out_png = Path(tmp) / "fused.png"
        jobs = [(m, s) for m in methods for s in sizes]
        bar = tqdm(total=len(jobs), desc="bench", unit="run", disable=not progress)
        for name in methods:
            row: dict[str, Any] = {
                "method": name,
                "params": None,
                "macs": {str(s): None for s in mac_sizes},
                "forward_ms": {},
                "file_ms": {},
                "times_ms": {"forward": {}, "file": {}},
            }
            net = _network_of(name)
            model = models.get(net)
            if net is not None:
                if net not in network_macs:  # same network in the name and name-onnx rows: count once
                    network_macs[net] = {str(s): count_macs(model, int(s), int(s)) for s in mac_sizes}
                row["params"], row["macs"] = count_params(model), dict(network_macs[net])
            kind = "baseline" if net is None else "network" if name == net else "onnx"
            if kind == "network":
                fuser = _network_grey_fuser(model, dev, precision)
            elif kind == "onnx":  # exported here (not the cached export of a checkpoint): random init works too
                from .export import calibration_pairs, export_onnx, onnx_fuser, quantize_int8

                w0, h0 = sizes[0]
                cpu_model = model if dev.type == "cpu" else copy.deepcopy(model).cpu()
                path = export_onnx(cpu_model, Path(tmp) / f"{net}.onnx", height=h0, width=w0)
                if name.endswith(INT8_SUFFIX):
                    path = quantize_int8(path, Path(tmp) / f"{net}-int8.onnx", calibration_pairs())
                fuser = onnx_fuser(path, threads=torch.get_num_threads())
            else:
                fuser = get_fuser(name)
            for size in sizes:
                bar.set_postfix_str(f"{name} {_size_key(size)}")
                pair = pairs[size]
                ir_img, vis_img = read_pair(pair)
                ir_y, vis_y = luminance(ir_img), luminance(vis_img)
                if kind == "network":
                    ir_t = torch.from_numpy(ir_y)[None, None].repeat(batch_size, 1, 1, 1).to(dev)
                    vis_t = torch.from_numpy(vis_y)[None, None].repeat(batch_size, 1, 1, 1).to(dev)

                    def forward(model=model, ir_t=ir_t, vis_t=vis_t):
                        with _autocast(dev, precision):
                            return fuse_tensor(model, ir_t, vis_t, progress=False)

                    per = batch_size
                elif kind == "onnx":
                    ir_b = np.repeat(ir_y[None, None], batch_size, axis=0)
                    vis_b = np.repeat(vis_y[None, None], batch_size, axis=0)

                    def forward(fuser=fuser, ir_b=ir_b, vis_b=vis_b):
                        return fuser.run(ir_b, vis_b)

                    per = batch_size
                else:

                    def forward(fuser=fuser, ir_y=ir_y, vis_y=vis_y):
                        return fuser(ir_y, vis_y)

                    per = 1

                def whole_file(fuser=fuser, pair=pair):
                    a, b = read_pair(pair)
                    write_image(out_png, fuse_arrays(a, b, fuser))

                key = _size_key(size)
                fwd = _median_ms(forward, repeats, warmup, dev, per=per)
                whole = _median_ms(whole_file, repeats, warmup, dev)
                row["forward_ms"][key], row["file_ms"][key] = statistics.median(fwd), statistics.median(whole)
                row["times_ms"]["forward"][key], row["times_ms"]["file"][key] = fwd, whole
                bar.update()
            rows.append(row)
        bar.close()
    settings = {
        "methods": list(methods),
        "sizes": [_size_key(s) for s in sizes],
        "mac_sizes": [int(s) for s in mac_sizes],
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "precision": precision,
        "repeats": repeats,
        "warmup": warmup,
        "weights": str(weights) if weights else None,
        "model_overrides": model_overrides,
    }
    return {"machine": _machine(dev, torch.get_num_threads()), "settings": settings, "notes": notes, "rows": rows}


# ----------------------------------------------------------------------------- report
def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def efficiency_table(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`run_benchmark` result (Table 11 layout), with a settings line and notes."""
    settings, machine = result["settings"], result["machine"]
    macs = settings["mac_sizes"]
    sizes = settings["sizes"]
    header = ["Method", "Params (M)"] + [f"MACs {s}x{s} (G)" for s in macs]
    header += [f"Forward {s} (ms)" for s in sizes] + [f"File {s} (ms)" for s in sizes]
    body = []
    for row in result["rows"]:
        cells = [row["method"], _fmt(row["params"], 1e6)]
        cells += [_fmt(row["macs"].get(str(s)), 1e9) for s in macs]
        cells += [_fmt(row["forward_ms"].get(s), digits=1) for s in sizes]
        cells += [_fmt(row["file_ms"].get(s), digits=1) for s in sizes]
        body.append(cells)
    settings_line = (
        f"Device {machine['device']}"
        + (f" ({machine['gpu']})" if "gpu" in machine else "")
        + f", {machine['cpu']}, {machine['cpus']} CPUs, {settings['threads']} threads, torch {machine['torch']}, "
        f"{settings['precision']}, batch {settings['batch_size']}"
    )
    notes = "".join(f"- {note}\n" for note in result["notes"])
    return f"{settings_line}\n\n{pipe_table(header, body)}\n{notes}"


def folder_throughput(
    dataset: str = "msrs",
    *,
    precision: str = "fp32",
    max_pairs: int | None = None,
    threads: int | None = None,
    data_root_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Pairs per second of ``refinefuse fuse`` on a whole dataset folder (default the 361 MSRS
    test pairs): reading, fusing (the shipped weights, CPU, ``precision``) and writing
    overlapped (:func:`refinefuse.fuse.run_jobs`), outputs into a temporary folder; the
    model is loaded (and exported) before the clock starts."""
    from .datasets import get_dataset
    from .fuse import FuseJob, run_jobs
    from .io import evenly_spaced, pair_folders
    from .methods import get_fuser

    spec = get_dataset(dataset)
    pairs = evenly_spaced(pair_folders(*spec.folders(data_root_dir)), max_pairs)
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        fuser = get_fuser("refinefuse", device="cpu", precision=precision)
        with tempfile.TemporaryDirectory(prefix="refinefuse-throughput-") as tmp:
            jobs = [FuseJob(p, Path(tmp) / f"{p.name}.png") for p in pairs]
            t0 = time.perf_counter()
            run_jobs(jobs, fuser, mode=spec.mode, progress=False)
            seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(saved)
    return {
        "dataset": dataset,
        "pairs": len(pairs),
        "precision": precision,
        "threads": threads or saved,
        "seconds": round(seconds, 2),
        "pairs_per_s": round(len(pairs) / seconds, 3),
    }
