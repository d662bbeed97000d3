"""Fixtures of the web app's tests (helpers: ``web_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def msrs_pair(data_dir: Path) -> tuple[bytes, bytes]:
    """Encoded PNG bytes of MSRS test pair 00828N (640x480, night)."""
    return (
        (data_dir / "msrs" / "test" / "ir" / "00828N.png").read_bytes(),
        (data_dir / "msrs" / "test" / "vi" / "00828N.png").read_bytes(),
    )
