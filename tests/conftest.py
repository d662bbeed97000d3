"""Shared fixtures. Tests that need ``../shared`` skip when it is missing, unless
``REFINEFUSE_REQUIRE_DATA=1`` (set by CI), which turns that skip into a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from refinefuse.paths import data_root

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"shared data not found at {path} (set REFINEFUSE_DATA_ROOT)"
    if os.environ.get("REFINEFUSE_REQUIRE_DATA") == "1":
        pytest.fail(msg + "; REFINEFUSE_REQUIRE_DATA=1 forbids skipping")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The shared data root (``../shared`` by default)."""
    return _require(data_root().resolve())


@pytest.fixture(scope="session")
def data_dir(shared_root: Path) -> Path:
    """``<shared>/data``."""
    return _require(shared_root / "data")


@pytest.fixture(scope="session")
def golden_dir(shared_root: Path) -> Path:
    """``<shared>/metrics-golden``."""
    return _require(shared_root / "metrics-golden")


@pytest.fixture(scope="module")
def tiny():
    """A small randomly initialised RefineFuse (channels 8, 8, 16, 16; seed 0), eval mode."""
    from refinefuse.models import create_model

    torch.manual_seed(0)
    return create_model("refinefuse", channels=[8, 8, 16, 16]).eval()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Cached ONNX exports go to a temporary folder, not the user's ~/.cache."""
    old = os.environ.get("REFINEFUSE_CACHE")
    os.environ["REFINEFUSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("REFINEFUSE_CACHE", None)
    else:
        os.environ["REFINEFUSE_CACHE"] = old
