"""scripts/vif_by_source.py: the paper's VIF split into its two sources' halves."""

from __future__ import annotations

import numpy as np
import pytest
from script_loader import load_script

from refinefuse.io import pair_folders, read_image, write_image
from refinefuse.metrics import as_grey, evaluate


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/vif_by_source.py")


def _textures(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 120, (64, 64))
    b = rng.uniform(0, 120, (64, 64))
    a[:, :32] += 100  # a leads on the left half
    return a, b


def test_max_keeps_the_brighter_source_and_a_copy_keeps_its_own_half(script):
    a, b = _textures()
    as_max = script.source_split(np.maximum(a, b), a, b, margin=10)
    assert as_max["kept_a"] == 0 and as_max["kept_b"] == 0
    as_a = script.source_split(a.copy(), a, b, margin=10)
    assert as_a["vif_a"] == pytest.approx(1.0)
    assert as_a["vif_b"] < 0.5
    assert as_a["kept_a"] == 0 and as_a["kept_b"] < -10  # where b leads, a copy of a is darker


def test_halves_add_up_to_the_metric_on_real_pairs(script, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFINEFUSE_DATA_ROOT", str(data_dir.parent))
    ct_mri = data_dir / "medical" / "MRI_CT"
    pairs = pair_folders(ct_mri / "CT", ct_mri / "MRI")
    vifs = []
    for pair in pairs:
        a, b = as_grey(read_image(pair.ir)), as_grey(read_image(pair.vis))
        fused = np.maximum(a, b).astype(np.uint8)
        write_image(tmp_path / "mri_ct" / "max" / f"{pair.name}.png", fused)
        vifs.append(evaluate(fused, a, b, metrics=("VIF",))["VIF"])
    assert script.main(["--dataset", "mri_ct", "--results", str(tmp_path), "--methods", "max"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| max |"))
    vif_ct, vif_mri, vif, kept_ct, kept_mri = (float(c) for c in row.strip("|").split("|")[1:])
    assert vif == pytest.approx(float(np.mean(vifs)), abs=1e-4)
    assert vif_ct + vif_mri == pytest.approx(vif, abs=2e-4)
    assert kept_ct == 0 and kept_mri == 0


def test_missing_fused_image_is_one_line(script, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFINEFUSE_DATA_ROOT", str(data_dir.parent))
    assert script.main(["--dataset", "mri_ct", "--results", str(tmp_path), "--methods", "max"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no fused image" in err and "mri_ct" in err
