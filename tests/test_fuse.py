"""Fusion API and `refinefuse fuse`: colour/modality handling, folders, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from refinefuse.checkpoint import save_checkpoint
from refinefuse.cli import main
from refinefuse.colour import luminance, rgb_to_ycrcb, to_float
from refinefuse.fuse import default_weights, fuse_arrays, fuse_images
from refinefuse.io import read_image, write_image
from refinefuse.models import create_model


def _mean(ir_y, vis_y):
    return (ir_y + vis_y) / 2


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, meta={"note": "untrained, for tests"})


def test_msrs_colour_visible_gives_colour_output(data_dir):
    ir = read_image(data_dir / "msrs/test/ir/00004N.png")
    vis = read_image(data_dir / "msrs/test/vi/00004N.png")
    out = fuse_arrays(ir, vis, _mean)
    assert out.shape == vis.shape and out.dtype == np.uint8
    y_out, crcb_out = rgb_to_ycrcb(out)
    y_exp = (to_float(ir) + luminance(vis)) / 2
    # luminance is the fused Y; chroma is the visible image's (up to uint8 rounding and RGB clipping)
    assert np.mean(np.abs(y_out - y_exp)) < 2 / 255
    assert np.mean(np.abs(crcb_out - rgb_to_ycrcb(vis)[1])) < 2 / 255


def test_tno_grey_stored_as_rgb_gives_grey(data_dir):
    ir = read_image(data_dir / "tno/ir/01.png")
    vis = read_image(data_dir / "tno/vi/01.png")
    out = fuse_arrays(ir, vis, np.maximum)
    assert out.ndim == 2 and out.shape == ir.shape
    np.testing.assert_array_equal(out, np.maximum(ir, vis))


def test_medical_pet_keeps_functional_colour(data_dir):
    pet = read_image(data_dir / "medical/MRI_PET/PET/11.png")
    mri = read_image(data_dir / "medical/MRI_PET/MRI/11.png")
    assert pet.ndim == 3 and mri.ndim == 2
    for mode in ("medical", "auto"):
        out = fuse_arrays(pet, mri, _mean, mode=mode)
        assert out.shape == pet.shape
        assert np.mean(np.abs(rgb_to_ycrcb(out)[1] - rgb_to_ycrcb(pet)[1])) < 2 / 255
    # ir-vis mode never takes colour from the ir slot
    assert fuse_arrays(pet, mri, _mean, mode="ir-vis").ndim == 2


def test_medical_ct_gives_grey(data_dir):
    ct = read_image(data_dir / "medical/MRI_CT/CT/11.png")
    mri = read_image(data_dir / "medical/MRI_CT/MRI/11.png")
    assert fuse_arrays(ct, mri, _mean, mode="medical").ndim == 2


def test_fuse_images_with_model_odd_size():
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    vis = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = fuse_images(ir, vis, model=model, device="cpu")
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8


def test_cli_fuse_file_pair(data_dir, tmp_path, tiny_ckpt):
    out = tmp_path / "fused.png"
    rc = main(["fuse", "--ir", str(data_dir / "msrs/test/ir/00004N.png"), "--vis", str(data_dir / "msrs/test/vi/00004N.png"),
               "--out", str(out), "--weights", str(tiny_ckpt), "--device", "cpu", "--quiet"])
    assert rc == 0
    assert read_image(out).shape == (480, 640, 3)


def _copy_pairs(data_dir, tmp_path, names):
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir()
    vi.mkdir()
    for n in names:
        shutil.copy(data_dir / f"msrs/test/ir/{n}.png", ir)
        shutil.copy(data_dir / f"msrs/test/vi/{n}.png", vi)
    return ir, vi


def test_cli_fuse_folders_and_overwrite(data_dir, tmp_path, capsys):
    ir, vi = _copy_pairs(data_dir, tmp_path, ["00004N", "00008N"])
    out = tmp_path / "out"
    args = ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--method", "max", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00004N.png", "00008N.png"]
    assert main(args) == 2
    assert "output exists (use --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("refinefuse: error: ")
    return err


def test_cli_bad_inputs(data_dir, tmp_path, capsys, tiny_ckpt):
    ir, vi = _copy_pairs(data_dir, tmp_path, ["00004N", "00008N"])
    out = tmp_path / "out"
    base = ["--out", str(out), "--weights", str(tiny_ckpt), "--quiet"]
    # missing file
    assert "missing.png: no such file" in _err(capsys, ["fuse", "--ir", str(tmp_path / "missing.png"), "--vis", str(vi / "00004N.png")] + base)
    # unreadable file
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert "bad.png: not a readable image" in _err(capsys, ["fuse", "--ir", str(bad), "--vis", str(vi / "00004N.png")] + base)
    # size mismatch
    small = tmp_path / "small.png"
    write_image(small, np.zeros((10, 10), np.uint8))
    assert "does not match" in _err(capsys, ["fuse", "--ir", str(small), "--vis", str(vi / "00004N.png")] + base)
    # unpaired names
    (ir / "00008N.png").rename(ir / "zzz.png")
    assert "no image named" in _err(capsys, ["fuse", "--ir", str(ir), "--vis", str(vi)] + base)
    # empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "contains no images" in _err(capsys, ["fuse", "--ir", str(empty), "--vis", str(vi)] + base)
    # output would replace an input
    assert "would overwrite an input" in _err(
        capsys, ["fuse", "--ir", str(ir / "00004N.png"), "--vis", str(vi / "00004N.png"), "--out", str(ir / "00004N.png"), "--method", "max", "--overwrite"])
    # unknown method
    assert "nosuch" in _err(capsys, ["fuse", "--ir", str(ir / "00004N.png"), "--vis", str(vi / "00004N.png"), "--out", str(tmp_path / "o.png"), "--method", "nosuch"])
    # bad checkpoint
    assert "junk.pt" in _err(capsys, ["fuse", "--ir", str(ir / "00004N.png"), "--vis", str(vi / "00004N.png"), "--out", str(tmp_path / "o.png"), "--weights", str(bad.with_name("junk.pt"))])
    # nothing was written by any failing call
    assert not out.exists() and not (tmp_path / "o.png").exists()


def test_mismatch_midway_leaves_only_complete_outputs(data_dir, tmp_path, capsys):
    ir, vi = _copy_pairs(data_dir, tmp_path, ["00004N", "00008N"])
    write_image(ir / "00008N.png", np.zeros((10, 10), np.uint8))
    out = tmp_path / "out"
    assert "00008N.png: size 10x10" in _err(capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--method", "mean", "--quiet"])
    assert [p.name for p in out.iterdir()] == ["00004N.png"]
    assert read_image(out / "00004N.png").shape == (480, 640, 3)


def test_default_weights(data_dir, tmp_path, capsys, monkeypatch):
    argv = ["fuse", "--ir", str(data_dir / "tno/ir/01.png"), "--vis", str(data_dir / "tno/vi/01.png"), "--out", str(tmp_path / "f.png"), "--quiet"]
    assert default_weights() is not None, "the package ships default weights"
    assert main(argv) == 0  # no --weights needed
    assert read_image(tmp_path / "f.png").ndim == 2
    # an installation without them (e.g. a stripped wheel) says what to pass
    monkeypatch.setattr("refinefuse.fuse.default_weights", lambda: None)
    argv[argv.index(str(tmp_path / "f.png"))] = str(tmp_path / "g.png")
    assert "pass --weights" in _err(capsys, argv)
    assert not (tmp_path / "g.png").exists()


def test_demo_bundled_pair(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--weights", str(tiny_ckpt), "--device", "cpu"]) == 0
    fused = read_image(out / "refinefuse.png")
    assert fused.shape == (480, 640, 3)
    assert read_image(out / "overview.png").shape == (480, 1920, 3)
    assert "output exists" in _err(capsys, ["demo", "--out", str(out), "--weights", str(tiny_ckpt)])
