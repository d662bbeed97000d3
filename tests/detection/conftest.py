"""Fixtures of the detection tests. Without the ``detect`` extra they skip, unless
``REFINEFUSE_REQUIRE_EXTRAS=1`` (set by CI) turns the skip into a failure."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ultralytics_extra() -> None:
    if importlib.util.find_spec("ultralytics") is not None:
        return
    msg = "the detect extra (ultralytics: pip install -e '.[detect]')"
    if os.environ.get("REFINEFUSE_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"{msg} missing; REFINEFUSE_REQUIRE_EXTRAS=1 forbids skipping")
    pytest.skip(f"{msg} missing")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, shared_root: Path, ultralytics_extra: None) -> dict:
    """A tiny ``refinefuse detect`` (20 train / 10 test pairs, ir and max, 1 epoch, 1 seed)."""
    from refinefuse.cli import main

    out = tmp_path_factory.mktemp("detect")
    argv = ["detect", "--out", str(out), "--methods", "ir,max", "--epochs", "1", "--seeds", "1"]
    argv += ["--max-train", "20", "--max-test", "10", "--imgsz", "128", "--quiet", "--data-root", str(shared_root)]
    assert main(argv) == 0
    return {"out": out, "argv": argv}
