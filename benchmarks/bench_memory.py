"""Peak RSS and time of fusing one random image pair on the CPU: the package's default path
(``--backend auto``: the shipped weights through ``load_fuser``, i.e. ONNX Runtime up to the
tiling threshold when installed, tiled PyTorch above it) or ``--backend torch`` (``fuse_tensor``
on a randomly initialised ``--model``).

Each size runs in a fresh subprocess so ``ru_maxrss`` (the process's peak resident set) is
not inflated by earlier runs. Usage::

    PYTHONPATH=src python benchmarks/bench_memory.py [--sizes 1024x768 4096x3072] [--threads 2]
        [--backend auto|torch|onnx] [--model refinefuse] [--tile N] [--max-pixels N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import torch
from refinefuse.models import create_model
from refinefuse.models.inference import fuse_tensor, DEFAULT_MAX_PIXELS
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
ir, vis = torch.rand(2, 1, 1, args["h"], args["w"])
if args["backend"] == "torch":
    model = create_model(args["model"]).eval()
    run = lambda: fuse_tensor(model, ir, vis, tile=args["tile"], max_pixels=args["max_pixels"] or DEFAULT_MAX_PIXELS)
else:
    from refinefuse.fuse import default_weights, load_fuser
    fuser = load_fuser(weights=default_weights(), device="cpu", backend=args["backend"])
    run = lambda: torch.from_numpy(fuser(ir[0, 0].numpy(), vis[0, 0].numpy()))[None, None]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
out = run()
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
assert out.shape == ir.shape and 0 <= float(out.min()) and float(out.max()) <= 1
print(json.dumps({"base_mib": base / 1024, "peak_mib": peak / 1024, "seconds": seconds}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1024x768", "4096x3072"], help="WIDTHxHEIGHT")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--model", default="refinefuse", help="network for --backend torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--max-pixels", type=int, default=None)
    args = parser.parse_args(argv)
    if args.backend != "torch":  # export the shipped weights once, outside the measured processes
        from refinefuse.fuse import default_weights, load_fuser

        load_fuser(weights=default_weights(), device="cpu", backend=args.backend)
    print(f"{'size':>11} {'tiled':>5} {'base MiB':>9} {'peak MiB':>9} {'seconds':>8}")
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        spec = {
            "h": h,
            "w": w,
            "model": args.model,
            "threads": args.threads,
            "tile": args.tile,
            "backend": args.backend,
            "max_pixels": args.max_pixels,
        }
        run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{size:>11} failed:\n{run.stderr.strip()}", file=sys.stderr)
            return 1
        r = json.loads(run.stdout.strip().splitlines()[-1])
        from refinefuse.models.inference import DEFAULT_MAX_PIXELS

        tiled = args.tile is not None or h * w > (args.max_pixels or DEFAULT_MAX_PIXELS)
        print(f"{size:>11} {'yes' if tiled else 'no':>5} {r['base_mib']:9.0f} {r['peak_mib']:9.0f} {r['seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
