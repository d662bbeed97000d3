"""Static checks as tests, so that CI (which runs the test suite) runs them: ruff (lint and
format) and mypy, both configured in pyproject.toml. The tools come with the ``test`` extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF_PATHS = ["src", "tests", "scripts", "benchmarks"]


def _run(*args: str) -> None:
    """Run ``python -m <args>`` from the repository root; fail with the tool's output unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`python -m {' '.join(args)}` exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}", pytrace=False
        )


def test_ruff_lint_and_format() -> None:
    _run("ruff", "check", *RUFF_PATHS)
    _run("ruff", "format", "--check", *RUFF_PATHS)


@pytest.mark.slow
def test_mypy() -> None:
    _run("mypy")  # files and options from [tool.mypy] in pyproject.toml
