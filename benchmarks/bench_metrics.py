"""Speed of the fusion metrics: time per metric per image, and wall time for a folder.

    python benchmarks/bench_metrics.py --fused DIR --ir DIR --vis DIR [--workers N]
        [--profile paper] [--metrics VIF,AG,...] [--sample 20] [--reference 2]

1. Per-metric time: each metric of the profile on ``--sample`` triplets in this process
   (one core), after reading; printed as milliseconds per image.
2. Folder wall time: ``refinefuse.metrics.evaluate_folders`` on every pair of the folder
   with ``--workers`` processes, reading included (what ``refinefuse eval`` does).
3. ``--reference N``: VIF of N triplets with a direct 2-D ``scipy.signal.convolve2d``
   transcription of ``vifp_mscale`` (the way the reference Evaluator filters), to show the
   values agree and how much slower it is.

Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from refinefuse.io import pair_folders, read_image  # noqa: E402
from refinefuse.metrics import as_grey, evaluate_folders, functional, get_profile  # noqa: E402
from refinefuse.metrics.evaluate import default_workers  # noqa: E402


def _triplets(fused_dir: Path, ir_dir: Path, vis_dir: Path, limit: int) -> list[tuple[np.ndarray, ...]]:
    out = []
    for pair in pair_folders(ir_dir, vis_dir)[:limit]:
        fused = next(fused_dir.glob(f"{pair.name}.*"))
        out.append(tuple(as_grey(read_image(p)) for p in (fused, pair.ir, pair.vis)))
    return out


def _vifp_convolve2d(ref: np.ndarray, dist: np.ndarray) -> float:
    """vifp_mscale with 2-D convolve2d, 'valid', log10: the slow reference way."""
    from scipy.signal import convolve2d

    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        y, x = np.ogrid[-(n - 1) / 2 : (n - 1) / 2 + 1, -(n - 1) / 2 : (n - 1) / 2 + 1]
        win = np.exp(-(x * x + y * y) / (2 * sd * sd))
        win[win < np.finfo(win.dtype).eps * win.max()] = 0
        win = np.rot90(win / win.sum(), 2)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g * g * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    v = num / den
    return 1.0 if np.isnan(v) else float(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fused", required=True, type=Path)
    ap.add_argument("--ir", required=True, type=Path)
    ap.add_argument("--vis", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=None, help="processes for the folder run (default: CPUs)")
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--metrics", default=None)
    ap.add_argument("--sample", type=int, default=20, help="triplets for the per-metric timing")
    ap.add_argument("--reference", type=int, default=0, help="triplets for the convolve2d VIF comparison")
    args = ap.parse_args()

    from refinefuse.metrics.evaluate import _init_worker

    _init_worker()  # this process times the metrics the way a worker runs them
    profile = get_profile(args.profile)
    names = profile.resolve(args.metrics)
    workers = args.workers or default_workers()
    print(f"cpus available: {default_workers()}, load average: {os.getloadavg()[0]:.2f}")

    triplets = _triplets(args.fused, args.ir, args.vis, args.sample)
    h, w = triplets[0][0].shape
    print(f"\nper-metric time, profile {profile.name}, {len(triplets)} triplets of {w}x{h}, one process:")
    print(f"  {'':5s} {'wall':>8s} {'cpu':>8s}  (ms per image)")
    total_wall = total_cpu = 0.0
    for name in names:
        fn = profile.metrics[name]
        t0, c0 = time.perf_counter(), time.process_time()
        for f, a, b in triplets:
            fn(f, a, b)
        wall = (time.perf_counter() - t0) / len(triplets) * 1000
        cpu = (time.process_time() - c0) / len(triplets) * 1000
        total_wall += wall
        total_cpu += cpu
        print(f"  {name:5s} {wall:8.1f} {cpu:8.1f}")
    t0, c0 = time.perf_counter(), time.process_time()
    _triplets(args.fused, args.ir, args.vis, args.sample)
    wall = (time.perf_counter() - t0) / len(triplets) * 1000
    cpu = (time.process_time() - c0) / len(triplets) * 1000
    print(f"  {'read':5s} {wall:8.1f} {cpu:8.1f}  (3 PNG files + grey conversion)")
    print(f"  {'total':5s} {total_wall + wall:8.1f} {total_cpu + cpu:8.1f}")

    if args.reference:
        print(f"\nVIF, separable filtering vs 2-D convolve2d (reference way), {args.reference} triplets:")
        for f, a, b in triplets[: args.reference]:
            t0 = time.perf_counter()
            ref = _vifp_convolve2d(a, f) + _vifp_convolve2d(b, f)
            t_ref = time.perf_counter() - t0
            t0 = time.perf_counter()
            ours = functional.vif(f, a, b)
            t_ours = time.perf_counter() - t0
            print(
                f"  convolve2d {ref:.12f} ({t_ref:.2f} s)  ours {ours:.12f} ({t_ours * 1000:.0f} ms)"
                f"  rel. diff {abs(ours - ref) / abs(ref):.1e}"
            )

    n = len(pair_folders(args.ir, args.vis))
    print(f"\nfolder: {n} pairs, {len(names)} metrics ({','.join(names)}), {workers} worker process(es):")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    results = evaluate_folders(
        {"fused": args.fused}, args.ir, args.vis, metrics=names, profile=profile, workers=workers, progress=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  wall time {wall:.1f} s ({wall / n * 1000:.0f} ms per pair), including process start and reading")
    print(f"  CPU time {cpu:.1f} s in all processes; load average now {os.getloadavg()[0]:.2f}")
    means = results.means()["fused"]
    print("  means: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
