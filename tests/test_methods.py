"""One registry of fusion methods: every registered network by name, its weights, baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinefuse.baselines import list_baselines
from refinefuse.checkpoint import read_checkpoint, save_checkpoint
from refinefuse.cli import main
from refinefuse.errors import InputError
from refinefuse.fuse import load_fuser
from refinefuse.io import read_image, write_image
from refinefuse.methods import SHIPPED_WEIGHTS, default_weights, get_fuser, is_network, list_methods, load_network
from refinefuse.models import create_model, list_models


@pytest.fixture(scope="module")
def l3_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("refinefuse_l3", channels=[8, 8, 16])
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "l3.pt", model)


def _pair(tmp_path, size=(24, 32)):
    rng = np.random.default_rng(0)
    ir, vis = tmp_path / "ir.png", tmp_path / "vis.png"
    write_image(ir, rng.integers(0, 256, size, dtype=np.uint8))
    write_image(vis, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return ir, vis


def test_registry_lists_every_network_and_baseline():
    assert list_methods() == [*list_models(), *list_baselines()]
    assert all(is_network(m) for m in list_models()) and not any(is_network(b) for b in list_baselines())
    assert not is_network("nope")


def test_shipped_weights_are_keyed_by_the_model_they_hold():
    for name, path in SHIPPED_WEIGHTS.items():
        assert read_checkpoint(path)["model"]["name"] == name
    assert default_weights() == default_weights("refinefuse") is not None
    assert default_weights("refinefuse_l3") is None and default_weights("max") is None


def test_variant_by_name(l3_ckpt):
    model, path = load_network("refinefuse_l3", l3_ckpt)
    assert model.model_name == "refinefuse_l3" and path == l3_ckpt
    ir = np.random.default_rng(1).random((20, 28), dtype=np.float32)
    fused = get_fuser("refinefuse_l3", weights=l3_ckpt, device="cpu", backend="torch")(ir, ir[::-1].copy())
    assert fused.shape == ir.shape and np.isfinite(fused).all()
    # fuse.load_fuser is the same function under its old name
    same = load_fuser("refinefuse_l3", weights=l3_ckpt, device="cpu", backend="torch")(ir, ir[::-1].copy())
    assert np.array_equal(fused, same)


def test_mismatch_and_missing_weights_are_one_line_errors(l3_ckpt):
    with pytest.raises(
        InputError, match=r"l3\.pt: holds model 'refinefuse_l3', not 'refinefuse' \(pass --method refinefuse_l3\)"
    ):
        get_fuser("refinefuse", weights=l3_ckpt, device="cpu")
    with pytest.raises(InputError, match="no trained weights ship for method 'refinefuse_no_fim': pass --weights"):
        get_fuser("refinefuse_no_fim", device="cpu")
    with pytest.raises(InputError, match="unknown fusion method 'nope'.*refinefuse_l3.*mst"):
        get_fuser("nope")
    with pytest.raises(InputError, match="network only"):
        get_fuser("max", weights=l3_ckpt)


def test_cli_fuse_with_a_variant(l3_ckpt, tmp_path, capsys):
    ir, vis = _pair(tmp_path)
    out = tmp_path / "fused.png"
    argv = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--quiet", "--device", "cpu"]
    assert main([*argv, "--method", "refinefuse_l3", "--weights", str(l3_ckpt)]) == 0
    assert read_image(out).shape == (24, 32, 3)
    # the default method with that checkpoint: one line naming the file and the method to pass
    assert main([*argv, "--weights", str(l3_ckpt), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(l3_ckpt) in err and "pass --method refinefuse_l3" in err
    # a variant without --weights (none ship for it)
    assert main([*argv, "--method", "refinefuse_l5", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --weights" in err


def test_bench_times_a_variant(l3_ckpt):
    from refinefuse.bench import run_benchmark

    result = run_benchmark(
        ["refinefuse_l3", "max"],
        sizes=((32, 24),),
        mac_sizes=(32,),
        device="cpu",
        repeats=1,
        warmup=0,
        weights=l3_ckpt,
        progress=False,
    )
    net = result["rows"][0]
    assert net["method"] == "refinefuse_l3" and net["params"] > 0 and net["file_ms"]["32x24"] > 0
    with pytest.raises(InputError, match="holds model 'refinefuse_l3'"):
        run_benchmark(
            ["refinefuse"],
            sizes=((32, 24),),
            mac_sizes=(32,),
            device="cpu",
            repeats=1,
            warmup=0,
            weights=l3_ckpt,
            progress=False,
        )
    with pytest.raises(InputError, match="unknown fusion method 'max-onnx'"):
        run_benchmark(["max-onnx"], progress=False)
