"""scripts/release_weights.py: a two-stage run (the second started with ``init``) gives one
small release checkpoint and a model card that lists both stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_train import _config

from refinefuse.checkpoint import read_checkpoint
from refinefuse.losses import EXTRA_TERMS
from refinefuse.training import train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "release_weights.py"


def test_card_follows_the_init_chain(data_dir, tmp_path):
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    train(_config(data_dir, first, epochs=2, loss="B", lam=0.0))
    train(_config(data_dir, second, epochs=1, init=str(first / "last.pt")))
    notes = tmp_path / "notes.md"
    notes.write_text("Why: a test.")
    out = tmp_path / "weights"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--run",
            str(second),
            "--checkpoint",
            "last.pt",
            "--notes",
            str(notes),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    state = read_checkpoint(out / "refinefuse_msrs.safetensors")
    meta = state["meta"]
    assert meta["stage_epochs"] == [2, 1] and meta["epochs"] == 3 and len(meta["commands"]) == 2
    assert "optimizer" not in state
    card = (out / "MODEL_CARD.md").read_text()
    assert "| epochs | 3 in 2 stage(s): 2 + 1" in card
    assert "### Stage 1: 2 epochs" in card and "### Stage 2: 1 epochs" in card
    assert "loss `B` (max-intensity, Table 8), lambda 0.0" in card and "paper loss `full`" in card
    assert "## Why this schedule\n\nWhy: a test." in card
    # each stage names its own data folder and masks; the header names the last stage's
    assert len(re.findall(r"- data: `\S*msrs/train128` \(\d+ training pairs, MSRS boxes_ir", card)) == 2
    assert re.search(r"\| data \| `\S*msrs/train128` \(\d+ training pairs", card)


def test_chain_from_an_earlier_release_counts_its_stages(data_dir, tmp_path):
    """Stage 2 starts from a released file (no run folder): the card keeps the release's
    stage tables (--previous-card) and counts its epochs and commands."""
    first = tmp_path / "stage1"
    train(_config(data_dir, first, epochs=2))
    v1 = tmp_path / "v1"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(first), "--checkpoint", "last.pt", "--out", str(v1)],
        check=True,
        capture_output=True,
    )
    second = tmp_path / "stage2"
    train(_config(data_dir, second, epochs=1, init=str(v1 / "refinefuse_msrs.safetensors")))
    out = tmp_path / "v2"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--run",
            str(second),
            "--checkpoint",
            "last.pt",
            "--previous-card",
            str(v1 / "MODEL_CARD.md"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    meta = read_checkpoint(out / "refinefuse_msrs.safetensors")["meta"]
    assert meta["stage_epochs"] == [2, 1] and meta["epochs"] == 3 and len(meta["commands"]) == 2
    card = (out / "MODEL_CARD.md").read_text()
    assert "| epochs | 3 in 2 stage(s): 2 + 1" in card
    assert card.count("### Stage 1: 2 epochs") == 1 and "### Stage 2: 1 epochs" in card
    assert "| 2 | " in card.split("### Stage 2")[0]  # stage 1's per-epoch table, quoted from the earlier card


def test_schedule_names_every_loss_term_beyond_the_papers():
    from script_loader import load_script

    release = load_script("scripts/release_weights.py")
    cfg = {"crop": 96, "loss": "full", "optimizer": "adam", "lr": 1e-4, "batch_size": 8, "min_lr": 1e-5}
    assert "2 - SCD" not in release._schedule(cfg) and "flat-region" not in release._schedule(cfg)
    text = release._schedule({**cfg, "flat_weight": 2.0, "scd_weight": 0.1, "halo_weight": 10.0})
    assert "flat-region texture penalty, weight 2.0" in text and "2 - SCD term, weight 0.1" in text
    assert "out-of-range (halo) term, weight 10.0" in text and "halo" not in release._schedule(cfg)
    assert list(release.TERM_DESCRIPTIONS) == list(EXTRA_TERMS)  # a new term needs its card name
    text = release._schedule({**cfg, "max_int_weight": 0.5, "vif_weight": 0.3, "qabf_weight": 1.0})
    assert "max(I, V) intensity term (Table 8's loss B), weight 0.5; 2 - VIF term, weight 0.3" in text
    assert "1 - Qabf term, weight 1.0" in text
    assert "EMA" not in text and "moving average of the weights (EMA, decay 0.998)" in release._schedule(
        {**cfg, "ema_decay": 0.998}
    )


def test_schedule_says_whole_images_only_when_the_crop_covers_them():
    from script_loader import load_script

    release = load_script("scripts/release_weights.py")
    cfg = {"loss": "full", "optimizer": "adam", "lr": 1e-4, "batch_size": 8, "min_lr": 1e-5}
    assert "whole images" in release._schedule({**cfg, "crop": None})
    train128 = {**cfg, "data": "../shared/data/msrs/train128", "crop": 128}
    assert "whole of the 128x128 images" in release._schedule(train128)
    # resized before cropping, or full-resolution pairs: a 128 px crop is part of an image
    assert "random 128x128 crops of the 128x128 images" in release._schedule({**train128, "rescale": [1, 4]})
    assert "random 128x128 crops" in release._schedule({**cfg, "data": "~/data/mix_ho", "crop": 128})
