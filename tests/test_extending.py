"""docs/extending.md: every worked example (a network, a baseline, a metric, a dataset) runs
as written, each in a fresh interpreter so its registrations do not leak into other tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_the_four_examples():
    assert len(EXAMPLES) == 4
    for name in ("register_model", "register_baseline", "register_metric", "register_dataset"):
        assert sum(name in code for code in EXAMPLES) == 1, name


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=["network", "baseline", "metric", "dataset"])
def test_example_runs(index, shared_root, tmp_path):
    env = {**os.environ, "REFINEFUSE_DATA_ROOT": str(shared_root)}
    proc = subprocess.run(
        [sys.executable, "-c", EXAMPLES[index]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
