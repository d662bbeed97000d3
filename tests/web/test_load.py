"""A bounded load test: 20 concurrent 640x480 ``/api/fuse`` requests against a real Uvicorn
server on localhost all succeed, queued behind one shared model; the memory they add stays
bounded. (Speed is not asserted here: ``benchmarks/bench_web.py`` measures it.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import LiveServer, require_web

pytestmark = pytest.mark.slow

N_REQUESTS = 20


def test_twenty_concurrent_fuse_requests_all_succeed(shared_root: Path, msrs_pair, record_property) -> None:
    require_web()
    from refinefuse.web import WebSettings, create_app
    from refinefuse.web.loadtest import fire, rss_mib

    app = create_app(WebSettings(data_root=shared_root))
    with LiveServer(app) as server:
        fire(server.url, *msrs_pair, n=1)  # warm up (first-call allocations)
        before = rss_mib()
        result = fire(server.url, *msrs_pair, n=N_REQUESTS)
        after = rss_mib()
    assert result.statuses == [200] * N_REQUESTS, result.errors[:3]
    assert app.state.engine.served == N_REQUESTS + 1
    assert app.state.engine.waiting == 0
    summary = result.summary()
    record_property("load", summary)
    if before is not None and after is not None:
        record_property("rss_mib", {"before": round(before), "after": round(after)})
        # 20 queued pairs are ~40 MB of uploads; a leak or per-request model would be far more
        assert after - before < 1024, (before, after)
