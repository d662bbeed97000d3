"""Peak resident memory of a long run of the ONNX Runtime fuser in one process (folder fusion),
against the peak after its first pair: does memory grow with the number of pairs?

Each configuration runs in a fresh subprocess that fuses ``--pairs`` random pairs of one size
(``--sizes``: several sizes are cycled, as in a folder of mixed sizes) with the shipped weights
and reports ``VmHWM`` (peak RSS) after the first pair and after the last. Configurations:
ONNX Runtime's CPU memory arena on (its default) or off (``OnnxFuser(arena=False)``, the
package's choice). Usage::

    python benchmarks/bench_folder_memory.py [--pairs 20] [--sizes 1024x768] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, sys, time
import numpy as np, torch
from refinefuse.export import OnnxFuser, cached_export
from refinefuse.methods import load_network
from refinefuse.web.loadtest import rss_mib
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
model, path = load_network("refinefuse")
fuser = OnnxFuser(cached_export(model, path), threads=args["threads"], arena=args["arena"])
rng = np.random.default_rng(0)
sizes = [tuple(int(v) for v in s.split("x")) for s in args["sizes"]]
start = rss_mib(peak=True)
after_first, t0 = None, time.perf_counter()
for i in range(args["pairs"]):
    w, h = sizes[i % len(sizes)]
    ir, vis = rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)
    fuser(ir, vis)
    if i == 0:
        after_first = rss_mib(peak=True)
print(json.dumps({"arena": args["arena"], "pairs": args["pairs"], "sizes": args["sizes"],
                  "peak_mib_before": round(start), "peak_mib_after_first": round(after_first),
                  "peak_mib_after_all": round(rss_mib(peak=True)),
                  "seconds_per_pair": round((time.perf_counter() - t0) / args["pairs"], 3)}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--sizes", nargs="+", default=["1024x768"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    for arena in (True, False):
        cfg = {"pairs": args.pairs, "sizes": args.sizes, "threads": args.threads, "arena": arena}
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)], capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
