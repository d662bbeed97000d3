"""Efficiency benchmark: runs end to end on tiny sizes with a tiny network; report layout."""

from __future__ import annotations

import json
import math

import pytest
import torch

from refinefuse.bench import efficiency_table, run_benchmark
from refinefuse.checkpoint import save_checkpoint
from refinefuse.cli import main
from refinefuse.errors import InputError
from refinefuse.models import create_model
from refinefuse.models.complexity import count_macs, count_params

TINY = {"channels": [8, 8, 8, 8]}
THREADS_BEFORE = torch.get_num_threads()


@pytest.fixture(scope="module")
def tiny_result():
    return run_benchmark(
        ["refinefuse", "mean", "gff"],
        sizes=((64, 48), (72, 40)),
        mac_sizes=(64, 32),
        device="cpu",
        threads=1,
        repeats=2,
        warmup=1,
        model_overrides=TINY,
        progress=False,
    )


def test_rows_and_values(tiny_result):
    rows = {r["method"]: r for r in tiny_result["rows"]}
    assert list(rows) == ["refinefuse", "mean", "gff"]
    model = create_model("refinefuse", **TINY)
    net = rows["refinefuse"]
    assert net["params"] == count_params(model)
    assert net["macs"] == {"64": count_macs(model, 64, 64), "32": count_macs(model, 32, 32)}
    assert net["macs"]["64"] > net["macs"]["32"] > 0
    for name, row in rows.items():
        for kind in ("forward", "file"):
            medians = row[f"{kind}_ms"]
            assert set(medians) == {"64x48", "72x40"}
            for key, value in medians.items():
                runs = row["times_ms"][kind][key]
                assert len(runs) == 2 and all(t > 0 and math.isfinite(t) for t in runs)
                assert min(runs) <= value <= max(runs)
        if name != "refinefuse":
            assert row["params"] is None and set(row["macs"].values()) == {None}
    assert any("randomly initialised" in n for n in tiny_result["notes"])
    assert tiny_result["settings"]["threads"] == 1
    assert torch.get_num_threads() == THREADS_BEFORE  # restored after the run
    assert json.loads(json.dumps(tiny_result)) == tiny_result  # JSON-able as is


def test_efficiency_table(tiny_result):
    table = efficiency_table(tiny_result)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == [
        "Method",
        "Params (M)",
        "MACs 64x64 (G)",
        "MACs 32x32 (G)",
        "Forward 64x48 (ms)",
        "Forward 72x40 (ms)",
        "File 64x48 (ms)",
        "File 72x40 (ms)",
    ]
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [b.split("|")[1].strip() for b in body] == ["refinefuse", "mean", "gff"]
    mean_cells = [c.strip() for c in body[1].strip("|").split("|")]
    assert mean_cells[1:4] == ["-", "-", "-"] and all(float(c) >= 0 for c in mean_cells[4:])
    net_cells = [c.strip() for c in body[0].strip("|").split("|")]
    assert float(net_cells[1]) == pytest.approx(tiny_result["rows"][0]["params"] / 1e6, abs=0.005)


def test_checkpoint_weights_and_batch(tmp_path):
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model)
    result = run_benchmark(
        ["refinefuse"],
        sizes=((40, 32),),
        mac_sizes=(32,),
        device="cpu",
        batch_size=2,
        repeats=1,
        warmup=0,
        weights=ckpt,
        progress=False,
    )
    assert result["rows"][0]["params"] == count_params(model)
    assert any(str(ckpt) in n for n in result["notes"])
    assert result["settings"]["batch_size"] == 2


def test_onnx_row_matches_network_size():
    pytest.importorskip("onnxruntime")
    result = run_benchmark(
        ["refinefuse", "refinefuse-onnx"],
        sizes=((40, 32),),
        mac_sizes=(32,),
        device="cpu",
        batch_size=2,
        repeats=1,
        warmup=0,
        model_overrides=TINY,
        progress=False,
    )
    net, ort_row = result["rows"]
    assert ort_row["method"] == "refinefuse-onnx"
    assert ort_row["params"] == net["params"] and ort_row["macs"] == net["macs"]
    assert ort_row["forward_ms"]["40x32"] > 0 and ort_row["file_ms"]["40x32"] > 0
    assert any("ONNX Runtime" in n for n in result["notes"])
    with pytest.raises(InputError, match="fp32"):
        run_benchmark(["refinefuse-onnx"], precision="bf16", device="cpu", model_overrides=TINY, progress=False)


def test_bf16_on_cpu_runs():
    result = run_benchmark(
        ["refinefuse"],
        sizes=((32, 32),),
        mac_sizes=(32,),
        device="cpu",
        precision="bf16",
        repeats=1,
        warmup=0,
        model_overrides=TINY,
        progress=False,
    )
    assert result["settings"]["precision"] == "bf16" and result["rows"][0]["forward_ms"]["32x32"] > 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"methods": ["nope"]}, "unknown fusion method"),
        ({"precision": "fp16", "device": "cpu"}, "fp16"),
        ({"repeats": 0}, "repeats"),
        ({"sizes": ((0, 10),)}, "positive"),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(InputError, match=words):
        run_benchmark(**{"mac_sizes": (32,), "model_overrides": TINY, "progress": False, **kwargs})


def test_cli_quick_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bench" / "result.json"
    rc = main(
        [
            "bench",
            "--quick",
            "--channels",
            "8",
            "8",
            "8",
            "8",
            "--methods",
            "refinefuse,max",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["rows"]] == ["refinefuse", "max"]
    assert data["settings"]["sizes"] == ["128x96"] and data["settings"]["repeats"] == 1
    assert out.with_suffix(".md").read_text() == printed
    assert "| refinefuse |" in printed and "| max |" in printed


def test_cli_missing_weights_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    rc = main(["bench", "--quick", "--methods", "refinefuse", "--weights", str(missing), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and str(missing) in err and err.startswith("refinefuse: error:")


def test_cli_bad_size(capsys):
    assert main(["bench", "--sizes", "640by480", "--quiet"]) == 2
    assert "640by480" in capsys.readouterr().err
