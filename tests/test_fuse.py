"""Fusion API and `refinefuse fuse`: colour/modality handling, folders, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from refinefuse.checkpoint import save_checkpoint
from refinefuse.cli import main
from refinefuse.colour import luminance, rgb_to_ycrcb, to_float
from refinefuse.errors import InputError
from refinefuse.fuse import default_weights, fuse_arrays, fuse_images, fuse_paths, plan_jobs, resolve_device
from refinefuse.io import TEMP_PREFIX, read_image, write_image
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
    rc = main(
        [
            "fuse",
            "--ir",
            str(data_dir / "msrs/test/ir/00004N.png"),
            "--vis",
            str(data_dir / "msrs/test/vi/00004N.png"),
            "--out",
            str(out),
            "--weights",
            str(tiny_ckpt),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
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
    assert "missing.png: no such file" in _err(
        capsys, ["fuse", "--ir", str(tmp_path / "missing.png"), "--vis", str(vi / "00004N.png")] + base
    )
    # unreadable file
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert "bad.png: not a readable image" in _err(
        capsys, ["fuse", "--ir", str(bad), "--vis", str(vi / "00004N.png")] + base
    )
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
        capsys,
        [
            "fuse",
            "--ir",
            str(ir / "00004N.png"),
            "--vis",
            str(vi / "00004N.png"),
            "--out",
            str(ir / "00004N.png"),
            "--method",
            "max",
            "--overwrite",
        ],
    )
    # unknown method
    assert "nosuch" in _err(
        capsys,
        [
            "fuse",
            "--ir",
            str(ir / "00004N.png"),
            "--vis",
            str(vi / "00004N.png"),
            "--out",
            str(tmp_path / "o.png"),
            "--method",
            "nosuch",
        ],
    )
    # bad checkpoint
    assert "junk.pt" in _err(
        capsys,
        [
            "fuse",
            "--ir",
            str(ir / "00004N.png"),
            "--vis",
            str(vi / "00004N.png"),
            "--out",
            str(tmp_path / "o.png"),
            "--weights",
            str(bad.with_name("junk.pt")),
        ],
    )
    # nothing was written by any failing call
    assert not out.exists() and not (tmp_path / "o.png").exists()


def test_mismatch_midway_leaves_only_complete_outputs(data_dir, tmp_path, capsys):
    ir, vi = _copy_pairs(data_dir, tmp_path, ["00004N", "00008N"])
    write_image(ir / "00008N.png", np.zeros((10, 10), np.uint8))
    out = tmp_path / "out"
    assert "00008N.png: size 10x10" in _err(
        capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--method", "mean", "--quiet"]
    )
    assert [p.name for p in out.iterdir()] == ["00004N.png"]
    assert read_image(out / "00004N.png").shape == (480, 640, 3)


def test_default_weights(data_dir, tmp_path, capsys, monkeypatch):
    argv = [
        "fuse",
        "--ir",
        str(data_dir / "tno/ir/01.png"),
        "--vis",
        str(data_dir / "tno/vi/01.png"),
        "--out",
        str(tmp_path / "f.png"),
        "--quiet",
    ]
    assert default_weights() is not None, "the package ships default weights"
    assert main(argv) == 0  # no --weights needed
    assert read_image(tmp_path / "f.png").ndim == 2
    # an installation without them (e.g. a stripped wheel) says what to pass
    monkeypatch.setattr("refinefuse.methods.SHIPPED_WEIGHTS", {})
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


# ------------------------------------------------------------------- issue 11: resuming, races, bad device, NaN
def _synthetic_pairs(tmp_path, names=("a", "b", "c"), size=(12, 16)):
    rng = np.random.default_rng(0)
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    for n in names:
        write_image(ir / f"{n}.png", rng.integers(0, 256, size, dtype=np.uint8))
        write_image(vi / f"{n}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return ir, vi


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not load")


def test_skip_existing_fuses_missing_and_undecodable_only(tmp_path, capsys):
    ir, vi = _synthetic_pairs(tmp_path)
    out = tmp_path / "out"
    args = ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--method", "max", "--quiet"]
    assert main(args) == 0
    good = out / "a.png"
    before = good.stat()
    (out / "b.png").unlink()  # missing
    (out / "c.png").write_bytes(b"\x89PNG half")  # does not decode: counts as not done
    jobs = plan_jobs(ir, vi, out, skip_existing=True)
    assert [(j.pair.name, j.replace) for j in jobs] == [("b", False), ("c", True)]
    capsys.readouterr()
    assert main(args + ["--skip-existing"]) == 0
    assert capsys.readouterr().err.strip() == "refinefuse: 1 of 3 outputs already exist; fusing 2"
    assert good.stat().st_mtime_ns == before.st_mtime_ns and good.stat().st_ino == before.st_ino  # untouched
    for n in "abc":
        assert read_image(out / f"{n}.png").shape == (12, 16, 3)
    # everything done: nothing to fuse, still exit 0
    assert main(args + ["--skip-existing"]) == 0
    assert capsys.readouterr().err.strip() == "refinefuse: 3 of 3 outputs already exist; fusing 0"
    assert fuse_paths(ir, vi, out, method="max", skip_existing=True, progress=False) == []


def test_skip_existing_with_overwrite_is_an_error(tmp_path, capsys):
    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    err = _err(
        capsys,
        [
            "fuse",
            "--ir",
            str(ir),
            "--vis",
            str(vi),
            "--out",
            str(tmp_path / "out"),
            "--method",
            "max",
            "--skip-existing",
            "--overwrite",
        ],
    )
    assert "--skip-existing and --overwrite" in err
    assert not (tmp_path / "out").exists()


def test_folder_fusion_removes_stale_temps(tmp_path):
    import os
    import time

    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"{TEMP_PREFIX}a.png.abc123.tmp"  # left by a killed run
    stale.write_bytes(b"partial")
    then = time.time() - 3600
    os.utime(stale, (then, then))
    other = out / ".notes.tmp"  # not ours: kept
    other.write_bytes(b"x")
    fuse_paths(ir, vi, out, method="max", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".notes.tmp", "a.png"]


def test_output_created_during_run_is_not_replaced(tmp_path, monkeypatch, capsys):
    ir, vi = _synthetic_pairs(tmp_path, names=("a", "b"))
    out = tmp_path / "out"

    calls = []

    def racing_fuser(ir_y, vis_y):  # a second run writes b.png while we fuse it (our second pair)
        calls.append(1)
        if len(calls) == 2:
            out.mkdir(exist_ok=True)
            (out / "b.png").write_bytes(b"theirs")
        return np.maximum(ir_y, vis_y)

    monkeypatch.setattr("refinefuse.fuse.get_fuser", lambda *a, **k: racing_fuser)
    err = _err(capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--quiet"])
    assert err.endswith("b.png: output exists (use --overwrite to replace it)")
    assert (out / "b.png").read_bytes() == b"theirs"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporary left
    # with --overwrite the same race replaces it, as asked
    (out / "a.png").unlink()
    calls.clear()
    assert main(["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert read_image(out / "b.png").shape == (12, 16, 3)


def test_output_folder_not_writable(tmp_path, monkeypatch, capsys):
    import errno
    import os

    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    monkeypatch.setattr("refinefuse.fuse.get_fuser", _no_model)
    # a folder that cannot be created (a file is in the way)
    (tmp_path / "file").write_bytes(b"x")
    err = _err(capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(tmp_path / "file" / "out"), "--quiet"])
    assert "cannot create the output folder" in err
    # a folder where files cannot be created
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:  # root writes anyway
        locked.chmod(0o500)
        try:
            assert "output folder is not writable" in _err(
                capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(locked), "--quiet"]
            )
        finally:
            locked.chmod(0o700)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("refinefuse.fuse.tempfile.NamedTemporaryFile", denied)
    err = _err(capsys, ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(locked), "--quiet"])
    assert err.endswith("locked: output folder is not writable (Permission denied)")
    # a missing folder is created for the test and removed again (nothing left by a failing run)
    with pytest.raises(InputError, match="not writable"):
        plan_jobs(ir, vi, tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert len(plan_jobs(ir, vi, tmp_path / "new" / "deeper")) == 1
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "device", ["tpu", "garbage", "", "cuda:-1", "meta", "cuda:7" if not torch.cuda.is_available() else "cuda:999"]
)
def test_bad_device_is_input_error(device):
    with pytest.raises(InputError, match="--device"):
        resolve_device(device)


def test_good_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_cli_bad_device_one_line(tmp_path, capsys, tiny_ckpt, monkeypatch):
    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    base = ["fuse", "--ir", str(ir / "a.png"), "--vis", str(vi / "a.png"), "--out", str(tmp_path / "o.png"), "--quiet"]
    assert "unknown device 'tpu'" in _err(capsys, base + ["--method", "max", "--device", "tpu"])
    monkeypatch.setattr("refinefuse.fuse.get_fuser", _no_model)  # rejected before the network loads
    assert "garbage" in _err(capsys, base + ["--weights", str(tiny_ckpt), "--device", "garbage"])
    if not torch.cuda.is_available():
        assert "no CUDA device" in _err(capsys, base + ["--weights", str(tiny_ckpt), "--device", "cuda:7"])
    monkeypatch.undo()
    assert "unknown device 'tpu'" in _err(
        capsys, ["demo", "--out", str(tmp_path / "d"), "--method", "max", "--device", "tpu"]
    )
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_network_output(tmp_path, monkeypatch, capsys, bad):
    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    monkeypatch.setattr("refinefuse.fuse.get_fuser", lambda *a, **k: lambda x, y: np.full_like(x, bad))
    out = tmp_path / "out"
    with pytest.raises(
        InputError, match=r"a\.png: the network gave non-finite output \(NaN/inf\); the weights may be corrupt"
    ):
        fuse_paths(ir, vi, out, progress=False)
    assert not out.exists() or list(out.iterdir()) == []
    err = _err(
        capsys, ["fuse", "--ir", str(ir / "a.png"), "--vis", str(vi / "a.png"), "--out", str(tmp_path / "f.png")]
    )
    assert str(ir / "a.png") in err and "non-finite" in err
    assert not (tmp_path / "f.png").exists()
    with pytest.raises(InputError, match="non-finite"):
        fuse_arrays(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), lambda x, y: np.full_like(x, bad))


def test_cli_truncated_png_one_stderr_line(tmp_path):
    import subprocess
    import sys

    import cv2

    ir, vi = _synthetic_pairs(tmp_path, names=("a",))
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    # same size as the partner would not matter: reading fails first
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "refinefuse",
            "fuse",
            "--ir",
            str(cut),
            "--vis",
            str(vi / "a.png"),
            "--out",
            str(tmp_path / "f.png"),
            "--method",
            "max",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"refinefuse: error: {cut}: not a readable image"]
    assert not (tmp_path / "f.png").exists()
