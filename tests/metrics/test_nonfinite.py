"""Means never hide NaN / inf (issue 11, Sect. 3): finite-only means with a count per
metric, warnings naming the images, constant (flat) images flagged, bad ``eval`` numbers
rejected in one line. Synthetic images, so every case is exact and fast."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from refinefuse.cli import main
from refinefuse.errors import InputError
from refinefuse.io import write_image
from refinefuse.metrics import EvalResults, evaluate, evaluate_folders, markdown_table, summary
from refinefuse.metrics.evaluate import MetricWarning, name_list

NAMES = ("p1", "p2", "p3")


def _scene(seed: int, shape=(64, 72)) -> tuple[np.ndarray, np.ndarray]:
    """A textured ir / vis pair of uint8 images (large enough for VIF's 41x41 minimum)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    a = 120 + 80 * np.sin(x / 7.0 + seed) * np.cos(y / 9.0) + rng.normal(0, 6, shape)
    b = 90 + 60 * np.cos((x + y) / 11.0) + 40 * (x > shape[1] // 2) + rng.normal(0, 6, shape)
    return tuple(np.clip(np.round(im), 0, 255).astype(np.uint8) for im in (a, b))


def _folders(root: Path, fused_for) -> dict[str, Path]:
    """ir/, vis/ and fused/ folders of the pairs ``NAMES``; ``fused_for(name, a, b)`` gives the fused image."""
    dirs = {k: root / k for k in ("ir", "vis", "fused")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        a, b = _scene(i)
        write_image(dirs["ir"] / f"{name}.png", a)
        write_image(dirs["vis"] / f"{name}.png", b)
        write_image(dirs["fused"] / f"{name}.png", fused_for(name, a, b))
    return dirs


def _max_or_flat(flat: str):
    def rule(name, a, b):
        return np.full_like(a, 90) if name == flat else np.maximum(a, b)

    return rule


def _results(values: dict[str, float], metric: str = "VIF") -> EvalResults:
    return EvalResults(
        profile="paper",
        metrics=(metric, "EN"),
        methods=("m",),
        scores={"m": {name: {metric: v, "EN": 1.0} for name, v in values.items()}},
    )


# ----------------------------------------------------------------------------- aggregation
def test_mean_over_finite_values_with_counts_and_named_images() -> None:
    res = _results({"a": 1.0, "b": float("nan"), "c": 2.0, "d": float("inf")})
    assert res.means()["m"] == {"VIF": 1.5, "EN": 1.0}  # inf no longer turns the mean into '-'
    assert res.counts()["m"] == {"VIF": (2, 4), "EN": (4, 4)}
    assert res.non_finite() == {"m": {"VIF": ["b", "d"]}}
    (line,) = res.issues()
    assert line == "m: VIF is not finite in 2 of 4 image(s): b (nan), d (inf); the mean is over the other 2"
    # the table shows the count next to the mean only where it differs from the images scored
    md = markdown_table(res.means(), res.metrics, counts=res.counts())
    assert md.strip().splitlines()[2] == "| m | 1.5000 (2/4) | 1.0000 |"  # one method: nothing to rank

    # JSON summary: means over the finite values, with their number per metric
    s = summary(res)["methods"]["m"]
    assert s["mean"] == {"VIF": 1.5, "EN": 1.0} and s["n_images"] == 4
    assert s["n_finite"] == {"VIF": 2, "EN": 4} and s["non_finite"] == {"VIF": ["b", "d"]}


def test_no_finite_value_shows_dash_with_count() -> None:
    res = _results({"a": float("nan"), "b": float("-inf")})
    assert math.isnan(res.means()["m"]["VIF"])
    md = markdown_table(res.means(), res.metrics, counts=res.counts())
    assert md.strip().splitlines()[2] == "| m | - (0/2) | 1.0000 |"
    assert summary(res)["methods"]["m"]["mean"]["VIF"] is None


def test_long_name_lists_are_truncated() -> None:
    assert name_list(["a", "b"]) == "a, b"
    assert name_list([f"i{k}" for k in range(8)]) == "i0, i1, i2, i3, i4 and 3 more"
    res = _results({f"i{k}": float("nan") for k in range(8)} | {"ok": 1.0})
    (line,) = res.issues()
    assert "8 of 9 image(s): i0 (nan), i1 (nan), i2 (nan), i3 (nan), i4 (nan) and 3 more;" in line


def test_negative_zero_and_bad_decimals_in_tables() -> None:
    assert "| m | 0.0000 |" in markdown_table({"m": {"EN": -0.0}}, ["EN"])  # EN of a constant image is -0.0
    for bad in (-2, 16, 1.5, "4", True):
        with pytest.raises(InputError, match="decimals must be a whole number from 0 to 15"):
            markdown_table({"m": {"EN": 1.0}}, ["EN"], decimals=bad)
    assert markdown_table({"m": {"EN": 1.25}}, ["EN"], decimals=0).strip().endswith("| m | 1 |")


# ----------------------------------------------------------------------------- folders
def test_cc_nan_is_counted_and_named(tmp_path) -> None:
    """A constant fused image: CC is NaN (as the references); the mean is over the other
    images, the count says so, and the image is named - it is no longer dropped silently."""
    dirs = _folders(tmp_path, _max_or_flat("p2"))
    with pytest.warns(MetricWarning) as record:
        res = evaluate_folders(
            {"max": dirs["fused"]}, dirs["ir"], dirs["vis"], metrics="VIF,CC,SSIM", workers=1, progress=False
        )
    messages = [str(w.message) for w in record]
    assert "max: CC is not finite in 1 of 3 image(s): p2 (nan); the mean is over the other 2" in messages
    assert any(m.startswith("max: the fused image is constant in 1 of 3 image(s): p2;") for m in messages)
    assert len(messages) == 2
    cc = [res.scores["max"][n]["CC"] for n in NAMES]
    assert math.isnan(cc[1])
    assert res.means()["max"]["CC"] == pytest.approx((cc[0] + cc[2]) / 2, rel=1e-15)
    assert res.counts()["max"] == {"VIF": (3, 3), "CC": (2, 3), "SSIM": (3, 3)}
    assert res.flat_fused == {"max": ["p2"]} and res.flat_sources == {}
    # per-image values are the metric's own (exactness): the flat image keeps its scores
    flat = np.full((64, 72), 90, np.uint8)
    a, b = _scene(1)
    want = evaluate(flat, a, b, metrics="VIF,CC,SSIM")
    assert res.scores["max"]["p2"]["VIF"] == want["VIF"] == 0.0
    assert res.scores["max"]["p2"]["SSIM"] == want["SSIM"]


def test_flat_flags_come_back_from_the_process_pool(tmp_path) -> None:
    dirs = _folders(tmp_path, _max_or_flat("p3"))
    with pytest.warns(MetricWarning) as record:
        res = evaluate_folders(
            {"max": dirs["fused"]}, dirs["ir"], dirs["vis"], metrics="CC,EN", workers=2, progress=False
        )
    assert res.flat_fused == {"max": ["p3"]} and res.counts()["max"]["CC"] == (2, 3)
    assert [str(w.message).split(":")[1].strip() for w in record] == [
        "the fused image is constant in 1 of 3 image(s)",
        "CC is not finite in 1 of 3 image(s)",
    ]


def test_constant_sources_keep_reference_values_but_warn(tmp_path) -> None:
    """All three images flat: VIF and SSIM keep the references' 2.0 (exactness), flagged."""
    for sub in ("ir", "vis", "fused"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "black.png", np.full((48, 48), 40, np.uint8))
    with pytest.warns(MetricWarning) as record:
        res = evaluate_folders({"f": tmp_path / "fused"}, tmp_path / "ir", tmp_path / "vis", workers=1, progress=False)
    assert res.scores["f"]["black"]["VIF"] == 2.0 and res.scores["f"]["black"]["SSIM"] == pytest.approx(2.0)
    assert res.flat_sources == {"black": ("ir", "vis")} and res.flat_fused == {"f": ["black"]}
    messages = [str(w.message) for w in record]
    assert any(m.startswith("constant source image in 1 pair(s): black (ir+vis); VIF counts 1.0") for m in messages)
    assert any(m.startswith("f: the fused image is constant in 1 of 1 image(s): black;") for m in messages)
    assert any(m.startswith("f: SCD is not finite in 1 of 1 image(s): black (nan)") for m in messages)


def test_no_warning_for_ordinary_images(tmp_path) -> None:
    dirs = _folders(tmp_path, lambda name, a, b: np.maximum(a, b))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        res = evaluate_folders({"max": dirs["fused"]}, dirs["ir"], dirs["vis"], workers=1, progress=False)
    assert res.issues() == [] and all(k == n for k, n in res.counts()["max"].values())
    assert "(" not in markdown_table(res.means(), res.metrics, counts=res.counts())


def test_bad_workers_in_the_api(tmp_path) -> None:
    dirs = _folders(tmp_path, lambda name, a, b: np.maximum(a, b))
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="workers must be a whole number of at least 1"):
            evaluate_folders({"max": dirs["fused"]}, dirs["ir"], dirs["vis"], workers=bad, progress=False)


# ----------------------------------------------------------------------------- CLI
def test_cli_shows_counts_and_warns_one_line_each(tmp_path, capsys) -> None:
    dirs = _folders(tmp_path, _max_or_flat("p1"))
    out = tmp_path / "res.csv"
    code = main(
        [
            "eval",
            "--fused",
            f"max={dirs['fused']}",
            "--ir",
            str(dirs["ir"]),
            "--vis",
            str(dirs["vis"]),
            "--metrics",
            "VIF,CC",
            "--workers",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("| max "))
    assert row.endswith("(2/3) |") and row.count("(2/3)") == 1  # CC only; VIF is finite everywhere
    warns = [line for line in captured.err.splitlines() if line.startswith("refinefuse: warning: ")]
    assert warns == [
        "refinefuse: warning: max: the fused image is constant in 1 of 3 image(s): p1; degenerate scores "
        "(e.g. VIF 0 and CC NaN; with constant sources VIF and SSIM reach 2.0)",
        "refinefuse: warning: max: CC is not finite in 1 of 3 image(s): p1 (nan); the mean is over the other 2",
    ]
    data = json.loads(out.with_suffix(".json").read_text())["methods"]["max"]
    assert data["n_images"] == 3 and data["n_finite"] == {"VIF": 3, "CC": 2} and data["flat_fused"] == ["p1"]
    assert "(2/3)" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--decimals", "-2"),
        ("--decimals", "16"),
        ("--decimals", "abc"),
        ("--decimals", "1.5"),
        ("--workers", "0"),
        ("--workers", "-3"),
        ("--workers", "two"),
    ],
)
def test_cli_bad_numbers_are_one_line_errors(tmp_path, capsys, option, value) -> None:
    for sub in ("ir", "vis", "fused"):
        (tmp_path / sub).mkdir()
    code = main(
        [
            "eval",
            "--fused",
            str(tmp_path / "fused"),
            "--ir",
            str(tmp_path / "ir"),
            "--vis",
            str(tmp_path / "vis"),
            "--quiet",
            option,
            value,
        ]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"refinefuse: error: {option} must be a whole number")
    assert captured.err.rstrip().endswith(f"got '{value}'")
