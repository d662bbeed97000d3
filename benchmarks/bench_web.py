"""Load benchmark of the web app: ``refinefuse serve`` in its own process, N concurrent
``POST /api/fuse`` requests of an MSRS 640x480 pair; reports success, throughput, latency
and the server's resident memory (after start-up, and its peak ``VmHWM`` after the load).

Usage::

    python benchmarks/bench_web.py [--requests 20] [--method refinefuse] [--pair 00828N] [--json OUT]

Needs the ``[web]`` extra and ``../shared`` (or ``$REFINEFUSE_DATA_ROOT``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    import httpx2 as httpx

    from refinefuse.paths import data_root
    from refinefuse.web.loadtest import fire, rss_mib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--method", default="refinefuse")
    parser.add_argument("--pair", default="00828N", help="MSRS test pair")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    test = data_root() / "data" / "msrs" / "test"
    ir, vis = (test / "ir" / f"{args.pair}.png").read_bytes(), (test / "vi" / f"{args.pair}.png").read_bytes()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "refinefuse", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(server.stderr.read() if server.stderr else "", file=sys.stderr)
                raise SystemExit("bench_web: the server did not start")
            time.sleep(0.2)
        started = rss_mib(server.pid)
        fire(url, ir, vis, n=1, method=args.method)  # warm-up request
        warm, warm_peak = rss_mib(server.pid), rss_mib(server.pid, peak=True)
        result = fire(url, ir, vis, n=args.requests, method=args.method)
        peak = rss_mib(server.pid, peak=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "method": args.method,
        "pair": f"msrs/test {args.pair} (640x480)",
        **result.summary(),
        "server_rss_mib": {
            "after_start": round(started or 0),
            "after_one_request": round(warm or 0),
            "peak_during_one_request": round(warm_peak or 0),
            "peak_during_the_load": round(peak or 0),
        },
        "errors": result.errors[:3],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result.ok == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
