"""benchmarks/precision_figure.py: the fp32-vs-other side-by-side of issue 16, on synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def module():
    return load_script("benchmarks/precision_figure.py")


def test_figure_layout_and_difference_panel(module):
    rng = np.random.default_rng(0)
    fp32 = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
    other = fp32.copy()
    other[50, 60] += 10  # one pixel differs by 10 levels, inside the box
    before = fp32.copy()
    fig = module.figure(fp32, other, (40, 30, 40, 30), zoom=3)
    assert fig.dtype == np.uint8 and fig.ndim == 3
    top_width = 2 * 160 + module.GAP
    assert fig.shape[1] == max(top_width, 3 * 120 + 2 * module.GAP)
    bottom = fig[-90:]  # the 3x crops: 30 rows x 3
    diff_panel = bottom[:, -120:]
    assert diff_panel.max() == 80  # 10 levels x8, in a 3x3 block
    assert (diff_panel == 80).sum() == 9 * 3
    np.testing.assert_array_equal(fp32, before)  # the box is drawn on copies


def test_missing_results_is_one_line(module, tmp_path, capsys):
    assert module.main(["--results", str(tmp_path), "--out", str(tmp_path / "f.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err
    assert not (tmp_path / "f.jpg").exists()
