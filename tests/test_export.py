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
from refinefuse.models import create_model  # noqa: E402
from refinefuse.models.inference import fuse_tensor  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("refinefuse", channels=[8, 8, 16, 16]).eval()


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
