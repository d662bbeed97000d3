"""scripts/shipped_weights_checks.py: the measurements the shipped-weights tests quote."""

from __future__ import annotations

import re
import sys

from script_loader import load_script


def test_prints_target_share_flat_pairs_and_mri_pet_background(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("REFINEFUSE_DATA_ROOT", str(data_dir.parent))
    script = load_script("scripts/shipped_weights_checks.py")
    monkeypatch.setattr(script, "NIGHT_PAIRS", ("00004N",))  # one night pair, no daytime pair
    monkeypatch.setattr(script, "DAY_PAIRS", ())
    real_pairs = script.pair_folders
    monkeypatch.setattr(script, "pair_folders", lambda *folders: real_pairs(*folders)[:2])  # two MRI-PET pairs
    monkeypatch.setattr(sys, "argv", ["shipped_weights_checks.py"])
    script.main()
    out = capsys.readouterr().out
    share = float(re.search(r"infrared target share \(night pairs\): ([0-9.]+)", out).group(1))
    assert 0.5 < share <= 1.5  # most of the target contrast kept, as tests/test_shipped_weights.py asserts
    assert "flat 255: 100.00% exact" in out or re.search(r"flat 255: 99\.\d\d% exact", out)
    background = float(re.search(r"MRI-PET, both sources 0: ([0-9.]+)% exactly 0", out).group(1))
    assert 98.0 <= background <= 100.0
