"""scripts/upscaled_validation.py (the checkpoint-selection check of issue 13): images already
in its output folder are reused only when they were made with the same checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from refinefuse.checkpoint import save_checkpoint
from refinefuse.models import create_model


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/upscaled_validation.py")


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(path, create_model("refinefuse", channels=[8, 8, 16, 16]).eval())


def test_same_label_other_checkpoint_is_refused(script, shared_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFINEFUSE_DATA_ROOT", str(shared_root))
    monkeypatch.setenv("REFINEFUSE_CACHE", str(tmp_path / "cache"))
    a, b = _tiny_checkpoint(tmp_path / "a.pt", 0), _tiny_checkpoint(tmp_path / "b.pt", 1)
    out = tmp_path / "val"
    args = ["--labels", "candidate", "--pairs", "2", "--scale", "2", "1.5", "--out", str(out)]
    assert script.main(["--weights", str(a), *args]) == 0
    for scale in ("x1", "x2", "x1.5"):
        assert len(list((out / scale / "candidate").glob("*.png"))) == 2
    means = json.loads((out / "means.json").read_text())
    assert sorted(means) == ["x1", "x1.5", "x2"]
    assert set(means["x2"]) == {"candidate", "max", "mean"} and "FA" in means["x2"]["candidate"]
    assert means["x2"]["candidate"]["VIF"] != means["x1"]["candidate"]["VIF"]
    capsys.readouterr()
    assert script.main(["--weights", str(a), *args]) == 0  # same checkpoint: reused, same table
    assert script.main(["--weights", str(b), *args]) == 2  # another checkpoint under the same label
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another checkpoint" in err[0]
