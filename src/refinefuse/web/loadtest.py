"""A bounded load test of a running server: N concurrent ``POST /api/fuse`` requests.

Used by ``benchmarks/bench_web.py`` (server in its own process, peak memory reported) and
by the test suite (server in a thread). Needs ``httpx2`` (the ``test`` extra).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    """Status codes and latencies (s) of each request, in request order, and the wall time."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(s == 200 for s in self.statuses)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3)) if lat else (lambda q: None)
        return {
            "requests": len(self.statuses),
            "ok": self.ok,
            "statuses": sorted(set(self.statuses)),
            "wall_s": round(self.wall_s, 2),
            "pairs_per_s": round(self.ok / self.wall_s, 3) if self.wall_s else None,
            "latency_p50_s": pick(0.5),
            "latency_max_s": round(lat[-1], 3) if lat else None,
        }


def fire(
    url: str, ir: bytes, vis: bytes, n: int = 20, method: str = "refinefuse", timeout: float = 600.0
) -> LoadResult:
    """Send ``n`` ``POST /api/fuse`` requests at once (one thread each) to ``url``; wait for all."""
    import httpx2 as httpx

    def one(_: int) -> tuple[int, float, str]:
        t0 = time.perf_counter()
        try:
            r = httpx.post(
                f"{url}/api/fuse",
                files={"ir": ("ir.png", ir, "image/png"), "vis": ("vis.png", vis, "image/png")},
                data={"method": method},
                timeout=timeout,
            )
            return r.status_code, time.perf_counter() - t0, "" if r.status_code == 200 else r.text[:200]
        except httpx.HTTPError as exc:
            return -1, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"

    result = LoadResult()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        for status, latency, error in pool.map(one, range(n)):
            result.statuses.append(status)
            result.latencies.append(latency)
            if error:
                result.errors.append(error)
    result.wall_s = time.perf_counter() - t0
    return result


def rss_mib(pid: int | None = None, peak: bool = False) -> float | None:
    """Resident memory of process ``pid`` (default: this one) in MiB, from ``/proc``
    (``VmHWM``, the peak so far, with ``peak=True``); None where ``/proc`` is missing."""
    key = "VmHWM:" if peak else "VmRSS:"
    try:
        with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
