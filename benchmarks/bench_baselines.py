"""Time each classical baseline on one real 640x480 MSRS test pair (luminance only).

Usage::

    PYTHONPATH=src python benchmarks/bench_baselines.py [--pair 00004N] [--repeats 7] [--threads 2]

Prints, per baseline, the median and minimum wall time of ``repeats`` calls after one
warm-up call (fusion of the Y channels; file reading and colour conversion excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="00004N", help="MSRS test pair name (default 00004N)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="OpenCV/BLAS threads (default 2)")
    parser.add_argument("--data-root", default=None, help="shared root (default $REFINEFUSE_DATA_ROOT or ../shared)")
    args = parser.parse_args(argv)

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import cv2

    from refinefuse.baselines import BASELINES
    from refinefuse.colour import luminance
    from refinefuse.io import read_image
    from refinefuse.paths import dataset_dir

    cv2.setNumThreads(args.threads)
    folder = dataset_dir("msrs/test", args.data_root)
    ir = luminance(read_image(folder / "ir" / f"{args.pair}.png"))
    vis = luminance(read_image(folder / "vi" / f"{args.pair}.png"))
    print(
        f"pair {args.pair} {ir.shape[1]}x{ir.shape[0]}, {args.repeats} runs, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"{'method':8s} {'median ms':>10s} {'min ms':>8s}")
    for name, fuse in BASELINES.items():
        fuse(ir, vis)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fuse(ir, vis)
            times.append(time.perf_counter() - t0)
        print(f"{name:8s} {1000 * statistics.median(times):10.1f} {1000 * min(times):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
