"""scripts/upscaled_validation.py (the checkpoint-selection check of issue 13): images already
in its output folder are reused only when they were made with the same checkpoint."""

from __future__ import annotations

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
    args = ["--labels", "candidate", "--pairs", "2", "--scale", "2", "--out", str(out)]
    assert script.main(["--weights", str(a), *args]) == 0
    assert len(list((out / "x1" / "candidate").glob("*.png"))) == 2
    assert len(list((out / "x2" / "candidate").glob("*.png"))) == 2
    capsys.readouterr()
    assert script.main(["--weights", str(a), *args]) == 0  # same checkpoint: reused, same table
    assert script.main(["--weights", str(b), *args]) == 2  # another checkpoint under the same label
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another checkpoint" in err[0]
