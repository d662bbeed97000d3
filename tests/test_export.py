"""ONNX export: onnxruntime output matches PyTorch; ONNX grey fuser inside fuse_arrays; CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from refinefuse.checkpoint import save_checkpoint  # noqa: E402
from refinefuse.cli import main  # noqa: E402
from refinefuse.colour import luminance  # noqa: E402
from refinefuse.errors import InputError  # noqa: E402
from refinefuse.export import OnnxFuser, compare_onnx, export_onnx, onnx_fuser  # noqa: E402
from refinefuse.fuse import fuse_arrays, network_fuser  # noqa: E402
from refinefuse.io import read_image  # noqa: E402
from refinefuse.models.inference import fuse_tensor  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx", height=45, width=60)


def _torch(model, ir, vis):
    return fuse_tensor(model, torch.from_numpy(ir), torch.from_numpy(vis)).numpy()


@pytest.mark.parametrize("shape", [(48, 64), (37, 53), (2, 1, 24, 40), (3, 5)])
def test_onnxruntime_matches_torch(tiny, tiny_onnx, shape):
    rng = np.random.default_rng(sum(shape))
    ir, vis = (rng.random(shape, dtype=np.float32) for _ in range(2))
    fused = onnx_fuser(tiny_onnx, threads=1)(ir, vis)
    assert fused.shape == ir.shape
    assert np.abs(fused - _torch(tiny, ir, vis)).max() < TOL


def test_file_is_atomic_and_has_metadata(tiny, tiny_onnx):
    assert [p.name for p in tiny_onnx.parent.iterdir()] == ["tiny.onnx"]  # no temp file left behind
    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert meta["refinefuse_stride"] == str(tiny.stride) == "8"
    assert OnnxFuser(tiny_onnx).stride == 8
    names = [i.name for i in onnx.load(str(tiny_onnx)).graph.input]
    assert names == ["ir", "vis"]


def test_fuse_arrays_on_real_pair_crop(tiny, tiny_onnx, data_dir):
    folder = data_dir / "msrs" / "test"
    ir = read_image(folder / "ir" / "00004N.png")[100:190, 200:301]
    vis = read_image(folder / "vi" / "00004N.png")[100:190, 200:301]
    assert vis.ndim == 3
    via_onnx = fuse_arrays(ir, vis, onnx_fuser(tiny_onnx))
    via_torch = fuse_arrays(ir, vis, network_fuser(tiny, device="cpu"))
    assert via_onnx.shape == (90, 101, 3) and via_onnx.dtype == np.uint8
    assert np.abs(via_onnx.astype(int) - via_torch.astype(int)).max() <= 1  # rounding of a <1e-4 difference
    assert compare_onnx(tiny, tiny_onnx, luminance(ir), luminance(vis)) < TOL


def test_missing_or_bad_onnx_file(tmp_path):
    with pytest.raises(InputError, match="no such ONNX file"):
        onnx_fuser(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(InputError, match="bad.onnx"):
        onnx_fuser(bad)


def test_cli_export_onnx(tiny, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", tiny)
    out = tmp_path / "model.onnx"
    argv = ["export-onnx", "--out", str(out), "--weights", str(ckpt), "--height", "64", "--width", "80"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    diff = float(printed.rsplit(":", 1)[1])
    assert out.is_file() and diff < TOL
    assert main(argv) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_cli_export_missing_weights_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["export-onnx", "--out", str(tmp_path / "m.onnx"), "--weights", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ default CPU backend
@pytest.fixture(scope="module")
def tiny_ckpt(tiny, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny)


def _pair(h=45, w=61, seed=3):
    rng = np.random.default_rng(seed)
    return rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)


def test_auto_backend_uses_cached_onnx_on_cpu(tiny_ckpt, tmp_path, monkeypatch):
    from refinefuse.fuse import load_fuser

    monkeypatch.setenv("REFINEFUSE_CACHE", str(tmp_path))
    ir, vis = _pair()
    reference = load_fuser(weights=tiny_ckpt, device="cpu", backend="torch")(ir, vis)
    fused = load_fuser(weights=tiny_ckpt, device="cpu")(ir, vis)
    assert np.abs(fused - reference).max() < TOL
    cached = list(tmp_path.glob("tiny-*.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    # a second load reuses the export; the runtime really is ONNX Runtime
    monkeypatch.setattr("refinefuse.export.export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    calls = []
    original = OnnxFuser.run
    monkeypatch.setattr(OnnxFuser, "run", lambda self, a, b: calls.append(1) or original(self, a, b))
    again = load_fuser(weights=tiny_ckpt, device="cpu", backend="onnx")(ir, vis)
    assert calls and np.array_equal(again, fused) and cached[0].stat().st_mtime_ns == stamp


def test_damaged_cached_export_is_rebuilt_not_warned_about(tiny, tiny_ckpt, tmp_path):
    import warnings

    from refinefuse.export import cached_export
    from refinefuse.fuse import load_fuser

    path = cached_export(tiny, tiny_ckpt, cache=tmp_path)
    stamp = path.with_name(path.name + ".sha256")
    assert stamp.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [path.name, stamp.name]
    ir, vis = _pair()
    reference = _torch(tiny, ir, vis)
    path.write_bytes(b"\x00garbage\xff" * 100)  # damaged in place: same name, so the old code kept it
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        onnx_fuser(path)
    assert cached_export(tiny, tiny_ckpt, cache=tmp_path) == path
    assert np.abs(onnx_fuser(path)(ir, vis) - reference).max() < TOL
    # truncated, or left by a version without the stamp: rebuilt as well
    path.write_bytes(path.read_bytes()[:1000])
    assert np.abs(onnx_fuser(cached_export(tiny, tiny_ckpt, cache=tmp_path))(ir, vis) - reference).max() < TOL
    stamp.unlink()
    stamp_free = cached_export(tiny, tiny_ckpt, cache=tmp_path)
    assert stamp.is_file() and np.abs(onnx_fuser(stamp_free)(ir, vis) - reference).max() < TOL
    # through load_fuser (the default CPU backend): no warning, no PyTorch fallback
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFINEFUSE_CACHE", str(tmp_path))
        first = load_fuser(weights=tiny_ckpt, device="cpu", backend="onnx")(ir, vis)
        cached = list(tmp_path.glob("tiny-*.onnx"))
        assert len(cached) == 1
        cached[0].write_bytes(b"garbage")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = load_fuser(weights=tiny_ckpt, device="cpu")(ir, vis)
    assert np.array_equal(again, first)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporaries left


def test_large_images_are_tiled_through_onnx_runtime(tiny_ckpt, monkeypatch):
    """Above the tiling threshold the ONNX session runs tile by tile (no PyTorch fallback)."""
    from refinefuse.fuse import load_fuser

    monkeypatch.setattr("refinefuse.models.inference.DEFAULT_MAX_PIXELS", 72 * 72)
    fuser = load_fuser(weights=tiny_ckpt, device="cpu", backend="onnx")
    monkeypatch.setattr("refinefuse.models.inference.fuse_tensor", lambda *a, **k: pytest.fail("PyTorch used"))
    calls = []
    run = OnnxFuser.run
    monkeypatch.setattr(OnnxFuser, "run", lambda self, a, b: calls.append(a.shape) or run(self, a, b))
    ir, vis = _pair(100, 130)
    assert ir.size > 72 * 72
    assert fuser(ir, vis).shape == ir.shape
    assert len(calls) > 1 and all(shape[-2:] == (72, 72) for shape in calls)


def test_auto_backend_falls_back_to_torch_when_export_fails(tiny_ckpt, monkeypatch):
    from refinefuse.fuse import load_fuser

    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr("refinefuse.export.cached_export", broken)
    ir, vis = _pair()
    with pytest.warns(UserWarning, match="exporter broke"):
        fuser = load_fuser(weights=tiny_ckpt, device="cpu")
    reference = load_fuser(weights=tiny_ckpt, device="cpu", backend="torch")(ir, vis)
    assert np.array_equal(fuser(ir, vis), reference)


def test_backend_errors(tiny_ckpt):
    from refinefuse.fuse import load_fuser

    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        load_fuser(weights=tiny_ckpt, backend="tensorrt")
    with pytest.raises(InputError, match="network only"):
        load_fuser("max", backend="onnx")


def test_cli_backend_torch_and_onnx_agree(tiny_ckpt, tmp_path):
    ir, vis = (str(p) for p in (tmp_path / "ir.png", tmp_path / "vis.png"))
    a, b = _pair(64, 80)
    from refinefuse.io import write_image

    write_image(ir, (a * 255).astype(np.uint8))
    write_image(vis, (b * 255).astype(np.uint8))
    for backend in ("torch", "onnx"):
        assert (
            main(
                [
                    "fuse",
                    "--ir",
                    ir,
                    "--vis",
                    vis,
                    "--out",
                    str(tmp_path / f"{backend}.png"),
                    "--weights",
                    str(tiny_ckpt),
                    "--device",
                    "cpu",
                    "--backend",
                    backend,
                    "--quiet",
                ]
            )
            == 0
        )
    diff = np.abs(read_image(tmp_path / "torch.png").astype(int) - read_image(tmp_path / "onnx.png").astype(int))
    assert diff.max() <= 1
