"""Checkpoint save/load round-trip on CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from refinefuse.checkpoint import (
    UnfinishedRunWarning,
    load_model,
    read_checkpoint,
    release_checkpoint,
    save_checkpoint,
)
from refinefuse.errors import InputError
from refinefuse.models import create_model

SMALL = dict(channels=[8, 8, 16, 16])


def test_roundtrip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_model("refinefuse", **SMALL).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, meta={"note": "test"})
    loaded = load_model(path, map_location="cpu")
    assert loaded.meta == {"note": "test"}
    assert loaded.config == model.config
    ir, vis = torch.rand(1, 1, 24, 40), torch.rand(1, 1, 24, 40)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(ir, vis), model(ir, vis), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


@pytest.mark.parametrize("variant", ["refinefuse_l3", "refinefuse_no_psim"])
def test_variant_roundtrip(tmp_path, variant):
    model = create_model(variant, **SMALL)
    loaded = load_model(save_checkpoint(tmp_path / "v.pt", model))
    assert loaded.config == model.config
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


def test_bad_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(InputError, match="junk.pt: not a readable checkpoint"):
        read_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": 1}, plain)
    with pytest.raises(InputError, match="plain.pt: not a refinefuse checkpoint"):
        load_model(plain)
    with pytest.raises(InputError, match="absent.pt: no such checkpoint"):
        load_model(tmp_path / "absent.pt")


def test_release_checkpoint_half_precision(tmp_path):
    torch.manual_seed(0)
    model = create_model("refinefuse", **SMALL)
    full = save_checkpoint(tmp_path / "train.pt", model, meta={"epochs": 3}, optimizer={"dummy": torch.zeros(1000)})
    slim = release_checkpoint(full, tmp_path / "release.pt", meta={"data": "x"})
    state = read_checkpoint(slim)
    assert "optimizer" not in state and state["meta"] == {"epochs": 3, "data": "x"}
    assert all(v.dtype == torch.float16 for v in state["state_dict"].values() if v.is_floating_point())
    loaded = load_model(slim)
    assert next(loaded.parameters()).dtype == torch.float32
    ir, vis = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        assert (loaded(ir, vis) - model.eval()(ir, vis)).abs().max() < 1e-2
    # releasing the same checkpoint again writes the same bytes (no temp-file name inside)
    again = release_checkpoint(full, tmp_path / "again" / "release.pt", meta={"data": "x"})
    assert again.read_bytes() == slim.read_bytes()


def test_checkpoint_of_an_unfinished_run_warns(tmp_path):
    """``last.pt`` is rewritten every epoch: reading it mid-run must not pass for the run's result."""
    model = create_model("refinefuse", **SMALL)
    mid = save_checkpoint(tmp_path / "mid" / "last.pt", model, epoch=5, train_config={"epochs": 6})
    with pytest.warns(UnfinishedRunWarning, match=r"last\.pt: checkpoint from epoch 5 of 6"):
        load_model(mid)
    done = save_checkpoint(tmp_path / "done" / "last.pt", model, epoch=6, train_config={"epochs": 6})
    best = save_checkpoint(tmp_path / "done" / "best.pt", model, epoch=4, train_config={"epochs": 6})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedRunWarning)
        load_model(done)
        load_model(best)  # an earlier epoch by design
        load_model(save_checkpoint(tmp_path / "plain.pt", model))  # no training state: nothing to say
