"""scripts/crop_compare.py: the detail figures of docs/RESULTS.md."""

from __future__ import annotations

import cv2
import numpy as np
from script_loader import load_script

crop_compare = load_script("scripts/crop_compare.py")


def test_panels_are_the_crops_enlarged_and_separated_by_white(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (40, 60), dtype=np.uint8)
    b = 255 - a
    fig = crop_compare.crop_compare([a, b], (10, 5, 20, 10), scale=2.0, gap=3)
    assert fig.shape == (20, 40 + 3 + 40)
    assert (fig[:, 40:43] == 255).all()
    expected = cv2.resize(a[5:15, 10:30], (40, 20), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(fig[:, :40], expected)


def test_cli_writes_a_figure_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    a = np.zeros((30, 30), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "small.png"), a[:20])
    out = tmp_path / "fig.jpg"
    assert crop_compare.main([str(tmp_path / "a.png")] * 2 + ["--box", "0,0,10,10", "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape[:2] == (16, 37)
    assert crop_compare.main([str(tmp_path / "a.png"), "--box", "25,0,10,10", "--out", str(out)]) == 2
    assert "outside" in capsys.readouterr().err
    assert (
        crop_compare.main([str(tmp_path / "a.png"), str(tmp_path / "small.png"), "--box", "0,0,5,5", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "small.png" in err and "differs" in err and "\n" not in err
    assert crop_compare.main([str(tmp_path / "missing.png"), "--box", "0,0,5,5", "--out", str(out)]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert crop_compare.main([str(tmp_path / "a.png"), "--box", "1,2", "--out", str(out)]) == 2
