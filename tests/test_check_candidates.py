"""scripts/check_candidates.py: a selection rule's bounds applied to candidate metric tables."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/check_candidates.py")


def _table(path, **measured):
    path.write_text(json.dumps({"measured": {"refinefuse": measured, "max": {"VIF": 9.0, "FA": 0.002}}}))
    return path


def test_bounds_relative_to_the_reference_and_to_another_entry(script, tmp_path, capsys):
    ref = _table(tmp_path / "ref.json", VIF=0.60, FA=0.0010, HA=2.0)
    good = _table(tmp_path / "good.json", VIF=0.595, FA=0.0012, HA=1.0)  # VIF 0.992x, FA 1.2x, HA 0.5x
    bad = _table(tmp_path / "bad.json", VIF=0.59, FA=0.0013, HA=1.0)  # VIF 0.983x, FA 1.3x
    bounds = ["--bound", "VIF>=0.99", "--bound", "FA<=1.25", "--bound", "HA<=0.8"]
    args = ["--reference", f"ref={ref}", "--candidate", f"good={good}", "--candidate", f"bad={bad}", *bounds]
    assert script.main(args) == 0  # one candidate is eligible
    out = capsys.readouterr().out
    assert "good: eligible" in out
    assert "bad: not eligible (VIF 0.590000 vs >= 0.594000; FA 0.001300 vs <= 0.001250)" in out
    assert script.main(["--reference", f"ref={ref}", "--candidate", f"bad={bad}", *bounds]) == 1
    # a key path into another layout (upscaled_validation's means.json) and a bound against the max row
    means = tmp_path / "means.json"
    means.write_text(json.dumps({"x1": {"stage": {"FA": 0.001}, "cand": {"FA": 0.003}, "max": {"FA": 0.0024}}}))
    args = ["--reference", f"stage={means}#x1/stage", "--candidate", f"cand={means}#x1/cand"]
    assert script.main([*args, "--other", f"max={means}#x1/max", "--bound", "FA<=1.0@max"]) == 1
    assert "cand: not eligible (FA 0.003000 vs <= 0.002400)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry", "bound", "message"),
    [
        ("{missing}", "VIF>=0.99", "missing.json: cannot read"),
        ("{notjson}", "VIF>=0.99", "notjson.json: not JSON"),
        ("{ref}#measured/lp", "VIF>=0.99", "no key 'lp' on the path 'measured/lp'"),
        ("{ref}", "VIF=>0.99", "bound 'VIF=>0.99': expected METRIC>=FACTOR"),
        ("{ref}", "SCD>=0.98", "candidate c has no 'SCD' (has FA, HA, VIF)"),
        ("{ref}", "VIF>=1@max", "no --other entry labelled 'max'"),
    ],
)
def test_bad_input_is_one_line(script, tmp_path, capsys, entry, bound, message):
    ref = _table(tmp_path / "ref.json", VIF=0.6, FA=0.001, HA=2.0)
    (tmp_path / "notjson.json").write_text("{oops")
    paths = {"ref": ref, "missing": tmp_path / "missing.json", "notjson": tmp_path / "notjson.json"}
    args = ["--reference", f"r={ref}", "--candidate", "c=" + entry.format(**paths), "--bound", bound]
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("check_candidates: ")
