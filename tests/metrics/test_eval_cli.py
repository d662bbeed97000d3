"""``refinefuse eval`` / ``refinefuse plot`` on real MSRS and Harvard medical pairs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from refinefuse.cli import main
from refinefuse.colour import luminance, rgb_to_ycrcb, to_uint8, ycrcb_to_rgb
from refinefuse.io import read_image, write_image
from refinefuse.metrics import evaluate, evaluate_folders

MSRS_PAIRS = ("00004N", "00537D", "01340N")


def _copy_sources(src_ir: Path, src_vis: Path, names, dest: Path) -> tuple[Path, Path]:
    ir, vis = dest / "ir", dest / "vis"
    ir.mkdir(parents=True)
    vis.mkdir(parents=True)
    for n in names:
        shutil.copy(src_ir / f"{n}.png", ir)
        shutil.copy(src_vis / f"{n}.png", vis)
    return ir, vis


def _fuse_folder(ir: Path, vis: Path, out: Path, rule) -> Path:
    """Simple deterministic fusion of the luminances, colour restored from the vis image."""
    out.mkdir(parents=True)
    for path in sorted(ir.iterdir()):
        a, b = read_image(path), read_image(vis / path.name)
        y = rule(luminance(a), luminance(b))
        if b.ndim == 3:
            write_image(out / path.name, to_uint8(ycrcb_to_rgb(y, rgb_to_ycrcb(b)[1])))
        else:
            write_image(out / path.name, to_uint8(y))
    return out


@pytest.fixture(scope="module")
def msrs(data_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("msrs")
    ir, vis = _copy_sources(data_dir / "msrs/test/ir", data_dir / "msrs/test/vi", MSRS_PAIRS, root)
    return {
        "ir": ir,
        "vis": vis,
        "max": _fuse_folder(ir, vis, root / "max", np.maximum),
        "mean": _fuse_folder(ir, vis, root / "avg", lambda a, b: (a + b) / 2),
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_two_methods_tables_json_csv_and_plot(msrs, tmp_path, capsys) -> None:
    out = tmp_path / "res" / "results.csv"
    code = main(
        [
            "eval",
            "--fused",
            str(msrs["max"]),
            "--fused",
            f"average={msrs['mean']}",
            "--ir",
            str(msrs["ir"]),
            "--vis",
            str(msrs["vis"]),
            "--out",
            str(out),
            "--plot",
            "--workers",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # per-image CSV: one row per method and image, full precision
    rows = _read_csv(out)
    assert [(r["method"], r["image"]) for r in rows] == [(m, n) for m in ("max", "average") for n in MSRS_PAIRS]
    assert list(rows[0]) == ["method", "image", "VIF", "AG", "SCD", "Qabf", "SF", "EN", "SSIM"]
    # values are those of evaluate() on the same files (colour fused image -> grey like the sources)
    want = evaluate(
        read_image(msrs["max"] / "00537D.png"),
        read_image(msrs["ir"] / "00537D.png"),
        read_image(msrs["vis"] / "00537D.png"),
    )
    got = next(r for r in rows if r["method"] == "max" and r["image"] == "00537D")
    assert {k: float(got[k]) for k in want} == want
    # JSON summary: means of the CSV
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["profile"] == "paper" and summary["metrics"] == list(want)
    for method in ("max", "average"):
        vif = [float(r["VIF"]) for r in rows if r["method"] == method]
        assert summary["methods"][method]["mean"]["VIF"] == pytest.approx(np.mean(vif), rel=1e-12)
        assert summary["methods"][method]["n_images"] == 3
    # Markdown: one row per method, best bold, second underlined, in every column
    md = out.with_suffix(".md").read_text()
    assert md in captured.out
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Method | VIF ↑ | AG ↑ | SCD ↑ | Qabf ↑ | SF ↑ | EN ↑ | SSIM ↑ |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["max", "average"]
    assert md.count("**") == 2 * 7 and md.count("<u>") == 7
    means = {m: summary["methods"][m]["mean"] for m in ("max", "average")}
    best_ag = max(means, key=lambda m: means[m]["AG"])
    assert f"**{means[best_ag]['AG']:.4f}**" in md
    # bar chart
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_image(png).shape[0] > 100
    # plot subcommand from the JSON summary
    assert (
        main(["plot", str(out.with_suffix(".json")), "-o", str(tmp_path / "chart.png"), "--metrics", "VIF,SSIM"]) == 0
    )
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_process_pool_gives_the_same_numbers(msrs) -> None:
    dirs = {"max": msrs["max"], "avg": msrs["mean"]}
    serial = evaluate_folders(dirs, msrs["ir"], msrs["vis"], workers=1, progress=False)
    pooled = evaluate_folders(dirs, msrs["ir"], msrs["vis"], workers=2, progress=False)
    assert pooled.scores == serial.scores


def test_medical_pair_with_colour_pet(data_dir: Path, tmp_path, capsys) -> None:
    ir, vis = _copy_sources(data_dir / "medical/MRI_PET/PET", data_dir / "medical/MRI_PET/MRI", ["11"], tmp_path)
    # functional image is colour: fuse MRI with its Y channel and keep its chroma (DESIGN.md Sect. 2)
    fused = tmp_path / "fused"
    fused.mkdir()
    pet, mri = read_image(ir / "11.png"), read_image(vis / "11.png")
    assert pet.ndim == 3 and mri.ndim == 2
    y, crcb = rgb_to_ycrcb(pet)
    write_image(fused / "11.png", to_uint8(ycrcb_to_rgb(np.maximum(y, luminance(mri)), crcb)))
    out = tmp_path / "med.csv"
    assert (
        main(
            [
                "eval",
                "--fused",
                f"max={fused}",
                "--ir",
                str(ir),
                "--vis",
                str(vis),
                "--out",
                str(out),
                "--profile",
                "tang",
                "--metrics",
                "VIF,Qabf,Nabf,MI",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    row = _read_csv(out)[0]
    want = evaluate(read_image(fused / "11.png"), pet, mri, metrics=["VIF", "Qabf", "Nabf", "MI"], profile="tang")
    assert {k: float(row[k]) for k in want} == want
    assert "Nabf ↓" in capsys.readouterr().out


def test_missing_fused_image_names_the_file(msrs, tmp_path, capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(msrs["max"], partial)
    (partial / "00537D.png").unlink()
    args = ["eval", "--fused", str(partial), "--ir", str(msrs["ir"]), "--vis", str(msrs["vis"]), "--workers", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("refinefuse: error: ") and str(partial / "00537D") in err and "--skip-missing" in err

    out = tmp_path / "skip.csv"
    assert main(args + ["--skip-missing", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 pair(s)" in err and "00537D" in err and "skipped 1 missing fused image(s) in total" in err
    assert [r["image"] for r in _read_csv(out)] == ["00004N", "01340N"]
    assert json.loads(out.with_suffix(".json").read_text())["methods"]["partial"]["skipped"] == ["00537D"]


def test_size_mismatch_and_unreadable_file(msrs, tmp_path, capsys) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(msrs["max"], bad)
    write_image(bad / "01340N.png", read_image(bad / "01340N.png")[:-8])
    args = [
        "eval",
        "--fused",
        str(bad),
        "--ir",
        str(msrs["ir"]),
        "--vis",
        str(msrs["vis"]),
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad / '01340N.png'}: size 640x472 differs from its sources" in err

    (bad / "01340N.png").write_bytes(b"not an image")
    assert main(args) == 2
    assert f"{bad / '01340N.png'}: not a readable image" in capsys.readouterr().err


def test_bad_options(msrs, tmp_path, capsys) -> None:
    base = ["eval", "--ir", str(msrs["ir"]), "--vis", str(msrs["vis"]), "--workers", "1", "--quiet"]
    assert main(base + ["--fused", str(msrs["max"]), "--metrics", "VIF,FOO"]) == 2
    assert "metric 'FOO' is not in profile 'paper'" in capsys.readouterr().err
    assert main(base + ["--fused", str(msrs["max"]), "--fused", str(msrs["max"])]) == 2
    assert "a second method named 'max'" in capsys.readouterr().err
    assert main(base + ["--fused", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_image_too_small_for_vif_names_the_file(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    for sub in ("ir", "vis", "fused"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "tiny.png", rng.integers(0, 256, (30, 30), dtype=np.uint8))
    args = [
        "eval",
        "--fused",
        str(tmp_path / "fused"),
        "--ir",
        str(tmp_path / "ir"),
        "--vis",
        str(tmp_path / "vis"),
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(args) == 2
    assert f"{tmp_path / 'fused' / 'tiny.png'}: VIF needs images of at least 41x41 pixels" in capsys.readouterr().err
    assert main(args + ["--metrics", "SSIM,Qabf,EN"]) == 0
