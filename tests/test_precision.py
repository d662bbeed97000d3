"""Network precisions (issue 16): int8 through ONNX Runtime (static quantisation calibrated on
msrs/train128), bf16 through PyTorch autocast, tiled ONNX inference for large images, and the
overlapped read/fuse/write pipeline of folder fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from refinefuse.checkpoint import save_checkpoint  # noqa: E402
from refinefuse.cli import main  # noqa: E402
from refinefuse.errors import InputError  # noqa: E402
from refinefuse.export import (  # noqa: E402
    OnnxFuser,
    cached_int8_export,
    calibration_pairs,
    export_onnx,
    quantize_int8,
)
from refinefuse.io import pair_folders, read_image  # noqa: E402
from refinefuse.methods import get_fuser, network_fuser  # noqa: E402
from refinefuse.models.inference import fuse_tensor  # noqa: E402


@pytest.fixture(scope="module")
def tiny_fp32(tiny, tmp_path_factory):
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx", height=64, width=64)


@pytest.fixture(scope="module")
def calibration(shared_root):
    return calibration_pairs(8, shared_root)


@pytest.fixture(scope="module")
def tiny_int8(tiny_fp32, calibration, tmp_path_factory):
    return quantize_int8(tiny_fp32, tmp_path_factory.mktemp("int8") / "tiny-int8.onnx", calibration)


def _real_crop(data_dir, size=(96, 128)):
    pair = pair_folders(data_dir / "msrs" / "test" / "ir", data_dir / "msrs" / "test" / "vi")[0]
    from refinefuse.colour import luminance

    h, w = size
    return (luminance(read_image(pair.ir))[:h, :w], luminance(read_image(pair.vis))[:h, :w])


def test_calibration_set_is_train128_only(calibration, shared_root):
    assert len(calibration) == 8
    assert all(ir.shape == vis.shape == (128, 128) and ir.dtype == np.float32 for ir, vis in calibration)
    with pytest.raises(InputError, match="int8 calibration needs msrs/train128"):
        calibration_pairs(4, shared_root / "nowhere")


def test_int8_model_is_quantised_except_the_output_tail(tiny_fp32, tiny_int8):
    fp32 = onnx.load(str(tiny_fp32))
    weights = {t.name: list(t.dims) for t in fp32.graph.initializer}
    grouped = [
        weights[n.input[1]]
        for n in fp32.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    # SFIM's depthwise convs, and no conv with more than one input channel per group: ONNX
    # Runtime's int8 kernel for those is slower than fp32 (docs/efficiency.md)
    assert grouped and all(shape[1] == 1 for shape in grouped)
    model = onnx.load(str(tiny_int8))
    ops = [n.op_type for n in model.graph.node]
    assert "QLinearConv" in ops
    float_convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(float_convs) == 2  # the tail's two convs only: the depthwise convs are int8 too
    assert ops[-1] != "DequantizeLinear" and "Tanh" in ops  # the output tail stays float
    last_convs = [n.op_type for n in model.graph.node if n.op_type in ("Conv", "QLinearConv")][-2:]
    assert last_convs == ["Conv", "Conv"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["refinefuse_precision"] == "int8" and meta["refinefuse_stride"] == "8"
    assert [p.name for p in tiny_int8.parent.iterdir()] == ["tiny-int8.onnx"]  # no temporary left
    assert OnnxFuser(tiny_int8).precision == "int8"


def test_int8_output_is_close_to_fp32(tiny_fp32, tiny_int8, data_dir):
    ir, vis = _real_crop(data_dir)
    ref = OnnxFuser(tiny_fp32, threads=1)(ir, vis)
    out = OnnxFuser(tiny_int8, threads=1)(ir, vis)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    diff = np.abs(out - ref)
    assert diff.mean() < 0.02 and diff.max() < 0.25  # a random-init tiny net: quantisation error, not garbage
    assert diff.max() > 0  # it really is another model


def test_cached_int8_export_is_built_once(tiny, tmp_path, shared_root, monkeypatch):
    weights = save_checkpoint(tmp_path / "tiny.pt", tiny)
    path = cached_int8_export(tiny, weights, cache=tmp_path / "cache", n_calibration=4, data_root=shared_root)
    assert path.name.endswith("-c4.onnx") and "-int8-" in path.name and path.with_name(path.name + ".sha256").is_file()
    mtime = path.stat().st_mtime_ns

    def no_calibration(*_a, **_k):
        raise AssertionError("rebuilt a cached int8 model")

    monkeypatch.setattr("refinefuse.export.calibration_pairs", no_calibration)
    again = cached_int8_export(tiny, weights, cache=tmp_path / "cache", n_calibration=4, data_root=shared_root)
    assert again == path and path.stat().st_mtime_ns == mtime


def test_onnx_tiles_like_pytorch(tiny, tiny_fp32):
    """Above the tiling threshold the ONNX session is run on the same tiles as PyTorch."""
    rng = np.random.default_rng(3)
    ir, vis = (rng.random((150, 170), dtype=np.float32) for _ in range(2))
    limit = 96 * 96  # 96-px tiles overlapping by 64: 12 tiles
    onnx_out = OnnxFuser(tiny_fp32, threads=1).run_tiled(ir[None, None], vis[None, None], max_pixels=limit)[0, 0]
    torch_out = fuse_tensor(tiny, torch.from_numpy(ir), torch.from_numpy(vis), max_pixels=limit).numpy()
    whole = OnnxFuser(tiny_fp32, threads=1).run(ir[None, None], vis[None, None])[0, 0]
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    assert np.abs(onnx_out - whole).max() > 1e-4  # it did tile (PSIM attention sees less per tile)


def test_bf16_runs_close_to_fp32(tiny, data_dir):
    ir, vis = _real_crop(data_dir)
    ref = network_fuser(tiny, "cpu")(ir, vis)
    out = network_fuser(tiny, "cpu", precision="bf16")(ir, vis)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"name": "max", "precision": "int8"}, "--precision applies to the network only"),
        ({"precision": "int8", "backend": "torch"}, "--precision int8 runs through ONNX Runtime on the CPU"),
        ({"precision": "bf16", "backend": "onnx"}, "--precision bf16 runs through PyTorch"),
    ],
)
def test_precision_errors(kwargs, message):
    kwargs = {"name": "refinefuse", **kwargs}
    with pytest.raises(InputError, match=message):
        get_fuser(kwargs.pop("name"), device="cpu", **kwargs)


def test_fuse_cli_int8_on_a_folder(data_dir, tmp_path, capsys):
    """The shipped weights at int8 on two MRI-PET pairs: written, colour kept, close to fp32."""
    src = data_dir / "medical" / "MRI_PET"
    ir_dir, vis_dir = tmp_path / "pet", tmp_path / "mri"
    ir_dir.mkdir(), vis_dir.mkdir()
    for name in sorted(p.name for p in (src / "PET").iterdir())[:2]:
        (ir_dir / name).write_bytes((src / "PET" / name).read_bytes())
        (vis_dir / name).write_bytes((src / "MRI" / name).read_bytes())
    for precision in ("int8", "fp32"):
        args = ["fuse", "--mode", "medical", "--precision", precision, "--quiet"]
        assert main([*args, "--ir", str(ir_dir), "--vis", str(vis_dir), "--out", str(tmp_path / precision)]) == 0
    names = sorted(p.name for p in (tmp_path / "int8").iterdir())
    assert names == sorted(p.name for p in ir_dir.iterdir())
    for name in names:
        a, b = read_image(tmp_path / "int8" / name), read_image(tmp_path / "fp32" / name)
        assert a.shape == b.shape and a.ndim == 3  # colour PET keeps its colour
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8


def test_onnx_memory_arena_is_off_by_default(tiny_fp32):
    """ONNX Runtime's arena made folder fusion grow to 3.8 GiB (docs/efficiency.md)."""
    assert OnnxFuser(tiny_fp32).session.get_session_options().enable_cpu_mem_arena is False
    assert OnnxFuser(tiny_fp32, arena=True).session.get_session_options().enable_cpu_mem_arena is True


def test_bench_int8_row_and_folder_throughput(shared_root, capsys):
    from refinefuse.bench import folder_throughput, run_benchmark

    result = run_benchmark(
        ["refinefuse-onnx", "refinefuse-int8"],
        sizes=((40, 32),),
        mac_sizes=(32,),
        device="cpu",
        repeats=1,
        warmup=0,
        model_overrides={"channels": [8, 8, 16, 16]},
        progress=False,
    )
    fp32_row, int8_row = result["rows"]
    assert int8_row["method"] == "refinefuse-int8" and int8_row["params"] == fp32_row["params"]
    assert int8_row["forward_ms"]["40x32"] > 0
    assert any("static int8" in n for n in result["notes"])
    tp = folder_throughput("mri_pet", max_pairs=3, threads=1, data_root_dir=shared_root)
    assert tp["pairs"] == 3 and tp["pairs_per_s"] > 0
    assert main(["bench", "--quick", "--methods", "max", "--folder", "mri_pet", "--folder-pairs", "2", "--quiet"]) == 0
    assert "Folder fusion (mri_pet, 2 pairs, refinefuse fp32" in capsys.readouterr().out
