"""Helpers of the web app's tests (imported by name: pytest puts this folder on sys.path).

Without the ``[web]`` extra (or Chromium, for the browser test) the tests skip, unless
``REFINEFUSE_REQUIRE_EXTRAS=1`` (set by CI) turns the skip into a failure."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time

import pytest


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("REFINEFUSE_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"{what} missing; REFINEFUSE_REQUIRE_EXTRAS=1 forbids skipping")
    pytest.skip(f"{what} missing")


def require_web() -> None:
    missing = [m for m in ("fastapi", "uvicorn", "multipart", "httpx2") if importlib.util.find_spec(m) is None]
    require(not missing, f"the web extra ({', '.join(missing)}: pip install -e '.[web,test]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served by Uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:  # noqa: ANN001
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
