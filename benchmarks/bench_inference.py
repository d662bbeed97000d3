"""CPU inference speed study for the network: which execution path is fastest at one size.

Usage::

    PYTHONPATH=src python benchmarks/bench_inference.py [--size 640x480] [--threads 2] [--repeats 5]
        [--weights CKPT] [--channels C ...] [--no-compile] [--json OUT.json]

Times, on the bundled MSRS pair resized to ``--size`` (luminance, batch 1):

- ``eager no_grad``: ``model(ir, vis)`` under ``torch.no_grad`` (reference output);
- ``inference_mode``: :func:`refinefuse.models.inference.fuse_tensor` (the package default);
- ``channels_last``: model weights and inputs in channels-last memory format;
- ``torch.compile``: inductor, default mode (skipped with a note when it fails; compile time shown);
- ``onnxruntime``: :func:`refinefuse.export.export_onnx` + :class:`~refinefuse.export.OnnxFuser`
  (CPUExecutionProvider, same thread count; skipped when onnxruntime is missing);
- ``bf16 autocast`` (with ``--bf16``): for reference (not identical: the difference is reported).

Prints median / min ms of ``--repeats`` runs after ``--warmup`` runs and the max absolute
difference of each output to the eager output.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="WxH (default 640x480)")
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--weights", help="checkpoint (default: shipped weights, else random paper-config init)")
    parser.add_argument("--channels", type=int, nargs="+", help="network widths (default: paper config)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument(
        "--bf16", action="store_true", help="also time bf16 autocast (very slow on CPUs without bf16 units)"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    from refinefuse.bench import _load_network
    from refinefuse.colour import luminance
    from refinefuse.fuse import EXAMPLE_PAIR, read_pair
    from refinefuse.models.inference import fuse_tensor

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    model, weight_note = _load_network(args.weights, {"channels": args.channels} if args.channels else None)
    model = model.eval()
    ir, vis = (cv2.resize(luminance(img), (w, h), interpolation=cv2.INTER_AREA) for img in read_pair(EXAMPLE_PAIR))
    ir_t, vis_t = torch.from_numpy(ir)[None, None], torch.from_numpy(vis)[None, None]
    print(
        f"{w}x{h}, {args.threads} threads, torch {torch.__version__}, {args.repeats} runs after {args.warmup}; "
        f"{weight_note}"
    )

    with torch.no_grad():
        reference = model(ir_t, vis_t).numpy()
    results: dict[str, dict] = {}

    def record(name: str, fn, note: str = "") -> None:
        try:
            out = np.asarray(fn(), dtype=np.float32)
            times = _time(fn, args.repeats, args.warmup)
        except Exception as exc:  # a path that does not work here is reported, not fatal
            results[name] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            print(f"{name:16s} skipped ({results[name]['skipped']})")
            return
        diff = float(np.abs(out.reshape(reference.shape) - reference).max())
        results[name] = {
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_abs_diff": diff,
            "note": note,
        }
        print(f"{name:16s} {statistics.median(times):9.1f} {min(times):9.1f}   {diff:.2e}  {note}")

    print(f"{'path':16s} {'median ms':>9s} {'min ms':>9s}   max|diff|")

    def eager():
        with torch.no_grad():
            return model(ir_t, vis_t).numpy()

    record("eager no_grad", eager)
    record("inference_mode", lambda: fuse_tensor(model, ir_t, vis_t).numpy(), "package default (fuse_tensor)")

    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_ir, cl_vis = (t.contiguous(memory_format=torch.channels_last) for t in (ir_t, vis_t))

    def channels_last():
        with torch.inference_mode():
            return cl_model(cl_ir, cl_vis).contiguous().numpy()

    record("channels_last", channels_last)

    if not args.no_compile:
        try:
            compiled = torch.compile(model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(ir_t, vis_t)
            compile_s = time.perf_counter() - t0

            def run_compiled():
                with torch.inference_mode():
                    return compiled(ir_t, vis_t).numpy()

            record("torch.compile", run_compiled, f"first call (compile) {compile_s:.0f} s")
        except Exception as exc:
            results["torch.compile"] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            print(f"{'torch.compile':16s} skipped ({results['torch.compile']['skipped']})")

    try:
        from refinefuse.export import export_onnx, onnx_fuser

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "model.onnx", height=h, width=w)
            fuser = onnx_fuser(path, threads=args.threads)
            record("onnxruntime", lambda: fuser(ir, vis), "CPUExecutionProvider")
    except Exception as exc:
        results["onnxruntime"] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        print(f"{'onnxruntime':16s} skipped ({results['onnxruntime']['skipped']})")

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(ir_t, vis_t).float().numpy()

    if args.bf16:
        record("bf16 autocast", bf16, "reduced precision: not identical")

    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "size": f"{w}x{h}",
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "weights": weight_note,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
