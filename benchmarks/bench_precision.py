"""Network precision study (issue 16): fp32 / bf16 / int8 on the CPU, in one run.

Usage::

    python benchmarks/bench_precision.py [--threads 2] [--repeats 5] [--sizes 640x480 1024x768]
        [--metrics --out DIR [--max-pairs N]] [--json OUT.json]

Speed: the shipped weights through each runtime, on the bundled MSRS pair resized with OpenCV
(luminance, batch 1), the rows interleaved repeat by repeat so that a busy machine slows them
alike: ``fp32 onnx`` (the default CPU path), ``int8 onnx`` (``--precision int8``), ``bf16
torch`` (``--precision bf16``) and ``fp32 torch`` (``--backend torch``). Median ms and the max
absolute difference of the output to ``fp32 onnx`` (grey, [0, 1] scale and in 8-bit levels).

Quality (``--metrics``): ``refinefuse reproduce --dataset msrs --methods refinefuse
--precision P`` for each precision into ``DIR/P`` (fused images already there are reused),
then the seven metrics' means over the pairs, their relative change to fp32, and the max and
mean absolute difference of the fused 8-bit images to the fp32 ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PRECISION_ROWS = (("fp32 onnx", "fp32", "auto"), ("int8 onnx", "int8", "auto"), ("bf16 torch", "bf16", "torch"))


def _sizes(values: list[str]) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.lower().split("x")) for s in values]  # type: ignore[misc]


def speed(sizes: list[tuple[int, int]], repeats: int, warmup: int) -> dict:
    import cv2
    import numpy as np

    from refinefuse.colour import luminance
    from refinefuse.fuse import EXAMPLE_PAIR, read_pair
    from refinefuse.methods import get_fuser

    rows = [*PRECISION_ROWS, ("fp32 torch", "fp32", "torch")]
    fusers = {name: get_fuser("refinefuse", device="cpu", backend=backend, precision=p) for name, p, backend in rows}
    ir0, vis0 = read_pair(EXAMPLE_PAIR)
    out: dict = {}
    for w, h in sizes:
        interp = cv2.INTER_AREA if w * h < ir0.shape[0] * ir0.shape[1] else cv2.INTER_CUBIC
        ir, vis = (luminance(cv2.resize(img, (w, h), interpolation=interp)) for img in (ir0, vis0))
        outputs = {name: fuser(ir, vis) for name, fuser in fusers.items()}  # also the warm-up
        for _ in range(max(0, warmup - 1)):
            for fuser in fusers.values():
                fuser(ir, vis)
        times: dict[str, list[float]] = {name: [] for name in fusers}
        for _ in range(repeats):
            for name, fuser in fusers.items():
                t0 = time.perf_counter()
                fuser(ir, vis)
                times[name].append(1000 * (time.perf_counter() - t0))
        ref = outputs["fp32 onnx"]
        out[f"{w}x{h}"] = {
            name: {
                "median_ms": round(statistics.median(times[name]), 1),
                "runs_ms": [round(t, 1) for t in times[name]],
                "vs_fp32_onnx": round(statistics.median(times[name]) / statistics.median(times["fp32 onnx"]), 3),
                "max_abs_diff": float(np.abs(outputs[name] - ref).max()),
                "max_abs_diff_levels": int(
                    np.abs(np.round(outputs[name] * 255).astype(int) - np.round(ref * 255).astype(int)).max()
                ),
            }
            for name in fusers
        }
    return out


def quality(out: Path, max_pairs: int | None, reuse: bool = False) -> dict:
    import numpy as np

    from refinefuse.io import read_image
    from refinefuse.reproduce import reproduce

    means: dict[str, dict[str, float]] = {}
    for _, precision, _ in PRECISION_ROWS:
        stored = out / precision / "msrs" / "table.json"
        if reuse and stored.is_file():  # a finished reproduce of these very images (delete the folder to redo)
            table = json.loads(stored.read_text())
            if table.get("n_pairs") == (max_pairs or table.get("n_total")):
                means[precision] = {k: float(v) for k, v in table["measured"]["refinefuse"].items()}
                print(f"{precision}: metrics reused from {stored}", file=sys.stderr)
                continue
        res = reproduce(
            "msrs",
            out=out / precision,
            methods=["refinefuse"],
            precision=precision,
            max_pairs=max_pairs,
            floor=False,
            progress=False,
            log=lambda msg: print(msg, file=sys.stderr),
        )
        means[precision] = {k: float(v) for k, v in res["means"]["refinefuse"].items()}
    ref_dir = out / "fp32" / "msrs" / "refinefuse"
    diffs: dict[str, dict[str, float]] = {}
    for _, precision, _ in PRECISION_ROWS[1:]:
        folder = out / precision / "msrs" / "refinefuse"
        worst, total, n = 0, 0.0, 0
        for ref_path in sorted(ref_dir.glob("*.png")):
            a = read_image(ref_path).astype(int)
            b = read_image(folder / ref_path.name).astype(int)
            d = np.abs(a - b)
            worst, total, n = max(worst, int(d.max())), total + float(d.mean()), n + 1
        diffs[precision] = {"max_abs_levels": worst, "mean_abs_levels": round(total / max(n, 1), 4), "images": n}
    change = {
        p: {k: round(100 * (v - means["fp32"][k]) / abs(means["fp32"][k]), 3) for k, v in means[p].items()}
        for p in means
        if p != "fp32"
    }
    return {"means": means, "change_percent": change, "pixel_diff_to_fp32": diffs}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x768"])
    parser.add_argument("--metrics", action="store_true", help="also the MSRS test metrics per precision")
    parser.add_argument("--out", default="results/precision", help="reproduce folders of --metrics")
    parser.add_argument("--max-pairs", type=int, help="--metrics on N evenly spaced pairs (default all 361)")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing part")
    parser.add_argument(
        "--reuse", action="store_true", help="--metrics: reuse DIR/P/msrs/table.json where a finished run left it"
    )
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "threads": args.threads,
        "repeats": args.repeats,
    }
    if not args.no_speed:
        result["speed"] = speed(_sizes(args.sizes), args.repeats, args.warmup)
    if args.metrics:
        result["quality"] = quality(Path(args.out), args.max_pairs, args.reuse)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
