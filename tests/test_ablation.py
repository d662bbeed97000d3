"""Ablation study (paper Tables 8-10, Fig. 11): the shallow Table 9 variants, ``refinefuse ablate``
end to end and resumed, and ``refinefuse features``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from refinefuse import ablation
from refinefuse.ablation import FULL, TABLES, VARIANTS, ablate, parse_tables, plan_runs
from refinefuse.cli import main
from refinefuse.errors import InputError
from refinefuse.features import PANELS, capture_features, reduce_map
from refinefuse.io import read_image, write_image
from refinefuse.models import RefineFuse, create_model, list_models
from refinefuse.models.blocks import ConcatFuse, ProfoundInteraction, SuperficialInteraction
from refinefuse.published import published_ablation

TINY = {"channels": [8, 8, 8, 8, 8], "head_channels": [8, 8, 4]}
NEW_VARIANTS = ["refinefuse_l1_cat", "refinefuse_l1", "refinefuse_l2", "refinefuse_l2_psim"]
TINY_SCHEDULE = """\
crop: 32
max_pairs: 6
val_pairs: 0
epochs: 1
batch_size: 3
optimizer: adam
amp: false
workers: 0
threads: 1
keep_last: 0
tensorboard: false
progress: false
val_metrics: []
model_overrides: {channels: [8, 8, 8, 8, 8], head_channels: [8, 8, 4]}
"""


# ----------------------------------------------------------------------------- variants
@pytest.mark.parametrize("name", NEW_VARIANTS)
def test_new_variants_build_run_and_round_trip(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY).eval()
    ir, vis = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = model(ir, vis)
        odd = model(ir[:, :, :29, :31], vis[:, :, :29, :31])
    assert out.shape == (2, 1, 32, 32) and odd.shape == (2, 1, 29, 31)
    assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    again = create_model(name, **model.config).eval()  # the checkpoint format's rebuild
    assert again.config == model.config and again.model_name == name
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(again(ir, vis), out)


@pytest.mark.parametrize("name", ["refinefuse_l1", "refinefuse_l2_psim"])
def test_new_variants_export_to_onnx(name, tmp_path):
    from refinefuse.export import compare_onnx, export_onnx, onnx_available

    if not onnx_available():
        pytest.skip("onnx extra not installed")
    model = create_model(name, **TINY).eval()
    path = export_onnx(model, tmp_path / "m.onnx", height=32, width=32)
    rng = np.random.default_rng(0)
    ir, vis = rng.random((29, 37), dtype=np.float32), rng.random((29, 37), dtype=np.float32)
    assert compare_onnx(model, path, ir, vis) < 1e-4  # what reproduce's ONNX Runtime path fuses with


def test_new_variant_structure():
    kinds = {name: [type(f) for f in create_model(name, **TINY).fusions] for name in NEW_VARIANTS}
    assert kinds["refinefuse_l1_cat"] == [ConcatFuse]  # Table 9 I
    assert kinds["refinefuse_l1"] == [SuperficialInteraction]  # II
    assert kinds["refinefuse_l2"] == [SuperficialInteraction, SuperficialInteraction]  # III
    assert kinds["refinefuse_l2_psim"] == [SuperficialInteraction, ProfoundInteraction]  # IV: PSIM at level 2
    for name in NEW_VARIANTS:
        model = create_model(name, **TINY)
        assert model.interaction is None and model.config["fim"] is False and len(model.decoders) == model.levels - 1
    iv = create_model("refinefuse_l2_psim")
    assert iv.config["psim_from"] == 2 and iv.config["psim_pool"] == [8] and iv.stride == 2
    assert create_model("refinefuse_l1").stride == 1
    # the paper's models keep their config keys (old checkpoints round-trip) and Table 9 V exists
    assert "psim_from" not in create_model("refinefuse").config and "refinefuse_no_fim" in list_models()
    with pytest.raises(ValueError, match="FIM"):
        RefineFuse(levels=2)
    with pytest.raises(ValueError, match="psim_from"):
        RefineFuse(levels=3, psim_from=1)
    with pytest.raises(ValueError, match="levels"):
        RefineFuse(levels=0, fim=False)


# ----------------------------------------------------------------------------- plan / published
def test_plan_and_tables():
    assert parse_tables("all") == [8, 9, 10] and parse_tables("10,8") == [8, 10] and parse_tables(9) == [9]
    with pytest.raises(InputError, match="unknown ablation table"):
        parse_tables("7")
    runs = plan_runs([8, 9, 10], seeds=3, base_seed=5)
    names = [r.name for r in runs]
    assert names.count("refinefuse-seed5") == 1 and "refinefuse-seed7" in names and len(names) == 10 + 3
    assert all(r.seed == 5 for r in runs if r.variant.key != FULL)
    assert {VARIANTS[row.variant].model for row in TABLES[9][1]} == {
        *NEW_VARIANTS,
        "refinefuse_no_fim",
        "refinefuse",
    }
    assert [VARIANTS[row.variant].loss for row in TABLES[8][1]] == ["A", "B", "C", "full"]
    assert [VARIANTS[row.variant].model for row in TABLES[10][1]] == ["refinefuse_l3", "refinefuse_l5", "refinefuse"]
    with pytest.raises(InputError, match="--seeds"):
        plan_runs([9], seeds=0)


def test_published_ablation_tables(shared_root):
    columns, rows = published_ablation(8, shared_root)
    assert columns == ["VIF", "AG", "SCD", "Qabf", "EN", "SF", "SSIM"]
    assert rows["Setting C"]["VIF"] == 0.4998 and rows["Ours"]["SF"] == 11.4509
    columns, rows = published_ablation(9, shared_root)
    assert list(rows) == ["I", "II", "III", "IV", "V", "Ours"]
    assert rows["IV"] == dict(zip(columns, [1.02, 3.82, 1.52, 0.72, 6.59, 11.74, 0.91]))
    columns, rows = published_ablation(10, shared_root)
    assert columns[-1] == "time_ms" and rows["Setting B"]["time_ms"] == 8.950 and rows["Ours"]["EN"] == 6.601
    with pytest.raises(InputError):
        published_ablation(11, shared_root)


# ----------------------------------------------------------------------------- ablate
def test_table_reports_seed_spread(shared_root):
    """With several seeds the full model's row is mean ± sample std; missing rows say so."""
    state = {
        "schedule": {"optimizer": "adam", "lr": 1e-3, "epochs": 1, "batch_size": 8, "crop": 64, "lam": 5.0}
        | {"seed": 0, "data": "train128"},
        "seeds": [0, 1],
        "max_pairs": 2,
        "bench_repeats": 1,
        "planned_variants": {FULL, "l3"},
        "runs": {f"refinefuse-seed{k}": {"run": f"refinefuse-seed{k}", "variant": FULL, "seed": k} for k in (0, 1)},
        "evals": {
            (f"refinefuse-seed{k}", "msrs"): {"n_pairs": 2, "n_total": 361, "means": {"refinefuse": {"VIF": v}}}
            for k, v in ((0, 0.5), (1, 0.7))
        },
        "size": {"refinefuse": {"params": 2.2e6, "macs_256": 12.7e9, "cpu_ms": 600.0}},
        "floor": {"msrs": {"max": {"VIF": 1.02}}},
    }
    md, data = ablation._render_table(10, state, ["msrs"], shared_root)
    assert "| Ours (4 levels: 1, 1/2, 1/4, 1/8) | 0.6000 ± 0.1414 |" in md and "| 2.20 | 12.70 | 600.0 |" in md
    assert "| Setting A (3 levels: 1, 1/2, 1/4) | not run yet |" in md and "over 2 seeds (0, 1)" in md
    assert "| Ours (4 levels: 1, 1/2, 1/4, 1/8) (published) | 1.055 |" in md and "6.633 (GPU) |" in md
    assert not data["complete"] and data["rows"][0]["per_seed"] == [{"VIF": 0.5}, {"VIF": 0.7}]

    # three seeds planned, one finished (a partial ablation): the caption does not claim a spread
    state["seeds"] = [0, 1, 2]
    del state["runs"]["refinefuse-seed1"], state["evals"][("refinefuse-seed1", "msrs")]
    md, _ = ablation._render_table(10, state, ["msrs"], shared_root)
    assert "3 seeds of the full model are planned (0, 1, 2), 1 finished so far" in md and " ± " not in md


def test_ablate_table9_end_to_end_and_resume(tmp_path, shared_root, data_dir, monkeypatch):
    monkeypatch.setattr(ablation, "TIME_SIZE", (64, 48))  # the timing step, small (the real one is 640x480)
    schedule = tmp_path / "tiny.yaml"
    schedule.write_text(TINY_SCHEDULE)
    out = tmp_path / "abl"
    args = ["ablate", "--table", "9", "--out", str(out), "--schedule", str(schedule)]
    args += ["--data", str(data_dir / "msrs/train128"), "--data-root", str(shared_root)]
    args += [
        "--variants",
        "l1_cat,refinefuse",
        "--max-pairs",
        "2",
        "--bench-repeats",
        "1",
        "--workers",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]
    assert main(args) == 0

    md = (out / "table9.md").read_text()
    assert "| I (1 level, concat + conv) | -/-/- | " in md and "| Ours (4 levels) | ✓/✓/✓ | " in md
    assert "| IV (2 levels) (published) | ✓/✓/- | 1.02 | 3.82 |" in md and "max (pixel rule)" in md
    assert "### MSRS test (2 of 361 pairs)" in md and "### TNO (2 of 42 pairs)" in md
    table = json.loads((out / "table9.json").read_text())
    assert table["complete"] and table["published"]["rows"]["Ours"]["VIF"] == 1.06
    measured = {(r["label"], r["dataset"]): r for r in table["rows"]}
    assert set(measured) == {
        (label, d) for label in ("I (1 level, concat + conv)", "Ours (4 levels)") for d in ("msrs", "tno")
    }
    row = measured[("Ours (4 levels)", "msrs")]
    assert row["runs"] == ["refinefuse-seed0"] and row["size"]["params"] > 0 and row["size"]["cpu_ms"] > 0
    assert 0 < row["mean"]["VIF"] < 2 and row["std"] is None
    assert sorted(p.name for p in (out / "eval/refinefuse-seed0/msrs").iterdir() if p.is_dir()) == ["refinefuse"]
    assert {p.name for p in (out / "eval/floor/tno").iterdir() if p.is_dir()} == {"max", "mean"}  # once, not per run
    runs = {p.name: p for p in (out / "runs").iterdir()}
    assert set(runs) == {"l1_cat-seed0", "refinefuse-seed0"}
    stamps = {p: p.stat().st_mtime_ns for run in runs.values() for p in run.iterdir() if p.suffix in (".pt", ".json")}
    stamps.update({p: p.stat().st_mtime_ns for p in (out / "eval").rglob("ablation_eval.json")})

    # the same call without --resume refuses to overwrite; with another schedule, --resume refuses to mix
    assert main(args) == 2
    assert main(["ablate", "--table", "7", "--out", str(out)]) == 2
    schedule.write_text(TINY_SCHEDULE.replace("epochs: 1", "epochs: 2"))
    with pytest.raises(InputError, match="another schedule"):
        ablate(9, out, schedule=schedule, data=data_dir / "msrs/train128", resume=True, variants=["l1_cat"])
    schedule.write_text(TINY_SCHEDULE)

    # --resume after a finished ablate: nothing is trained, evaluated or timed again
    (out / "runs/l1_cat-seed0/ablation_run.json").unlink()  # as if killed after its last epoch
    res = ablate(
        9,
        out,
        schedule=schedule,
        data=data_dir / "msrs/train128",
        data_root_dir=shared_root,
        resume=True,
        max_pairs=2,
        variants=["l1_cat", "refinefuse"],
        bench_repeats=1,
        workers=1,
        progress=False,
        log=lambda msg: None,
    )
    assert {k: v["status"] for k, v in res["runs"].items()} == {"l1_cat-seed0": "resumed", "refinefuse-seed0": "reused"}
    assert {v["status"] for v in res["evals"].values()} == {"reused"} and len(res["evals"]) == 2 * 3
    assert {v["status"] for v in res["size"].values()} == {"reused"}
    for path, stamp in stamps.items():
        if path.name != "ablation_run.json":
            assert path.stat().st_mtime_ns == stamp, path  # checkpoints and evaluations untouched
    assert (out / "runs/l1_cat-seed0/ablation_run.json").is_file()
    assert json.loads((out / "table9.json").read_text())["rows"] == table["rows"]

    # --tables-only over all of Table 9: the finished rows as they are, the others "not run yet", nothing trained
    def no_training(*_a, **_k):
        raise AssertionError("--tables-only trained or evaluated something")

    monkeypatch.setattr("refinefuse.training.train", no_training)
    monkeypatch.setattr("refinefuse.reproduce.reproduce", no_training)
    assert main([a for a in args if a not in ("--variants", "l1_cat,refinefuse")] + ["--tables-only"]) == 0
    md = (out / "table9.md").read_text()
    assert "| II (1 level) | ✓/-/- | not run yet |" in md and "| III (2 levels) | ✓/-/- | not run yet |" in md
    only = json.loads((out / "table9.json").read_text())
    assert not only["complete"] and only["rows"] == table["rows"]
    assert not (out / "runs/l1_sfim-seed0").exists()


# ----------------------------------------------------------------------------- features (Fig. 11)
def test_capture_features_and_reduce():
    torch.manual_seed(0)
    model = create_model("refinefuse", **TINY)
    ir, vis = torch.rand(1, 1, 37, 45), torch.rand(1, 1, 37, 45)
    fused, maps = capture_features(model, ir, vis)
    assert set(maps) == set(PANELS) and fused.shape == (1, 1, 37, 45)
    assert maps["F1_ir"].shape == (8, 37, 45) and maps["F3_fused"].shape == (8, 10, 12)
    assert maps["SFIM"].shape[-2:] == maps["FIM"].shape[-2:] == (19, 23) and maps["PSIM"].shape[-2:] == (5, 6)
    x = torch.randn(8, 10, 12) + torch.linspace(0, 5, 12)  # one direction dominates
    pc = reduce_map(x, "pca")
    assert pc.shape == (10, 12) and np.corrcoef(pc.ravel(), reduce_map(x, "mean").ravel())[0, 1] > 0
    _, shallow = capture_features(create_model("refinefuse_l2", **TINY), ir, vis)
    assert set(shallow) == {"F1_ir", "F1_vis", "F1_fused", "SFIM"}  # no level 3, PSIM or FIM


def test_features_cli_writes_png(tmp_path, data_dir, capsys):
    ir = read_image(data_dir / "msrs/test/ir/00828N.png")[200:296, 300:428]
    vis = read_image(data_dir / "msrs/test/vi/00828N.png")[200:296, 300:428]
    write_image(tmp_path / "ir.png", ir)
    write_image(tmp_path / "vis.png", vis)
    fig = tmp_path / "fig11.png"
    assert (
        main(["features", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"), "--out", str(fig)]) == 0
    )
    img = read_image(fig)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300 and img.std() > 10
    assert (
        main(["features", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"), "--out", "x.jpg"]) == 2
    )
    assert "PNG" in capsys.readouterr().err
