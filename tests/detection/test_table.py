"""The Table 4 layout: mean ± sample std over seeds, best in bold, published rows marked."""

from __future__ import annotations

import statistics

from refinefuse.detection.study import aggregate, render_table, split_pairs
from refinefuse.io import Pair


def _result(seed: int, person: float, car: float, bicycle: float | None, overall: float) -> dict:
    scores = {"person": person, "car": car, "bicycle": bicycle, "all": overall}
    return {
        "key": {"seed": seed},
        "map50": scores,
        "map": {k: v and v / 2 for k, v in scores.items()},
        "train_seconds": 10,
    }


def test_aggregate_mean_and_sample_std_in_percent() -> None:
    rows = aggregate({"ir": [_result(0, 0.2, 0.4, None, 0.3), _result(1, 0.4, 0.6, None, 0.5)], "vis": []})
    assert list(rows) == ["ir"]  # a method without finished runs has no row
    mean, std = rows["ir"]["map50"]["person"]
    assert mean == 30.0 and abs(std - statistics.stdev([20.0, 40.0])) < 1e-12
    assert rows["ir"]["map50"]["bicycle"] is None
    assert rows["ir"]["map"]["all"][0] == 20.0
    assert rows["ir"]["seeds"] == [0, 1] and rows["ir"]["train_seconds"] == 20


def test_render_table_marks_best_and_published_rows() -> None:
    rows = aggregate({"ir": [_result(0, 0.2, 0.4, 0.1, 0.3)], "max": [_result(0, 0.3, 0.3, 0.1, 0.35)]})
    text = render_table(rows, {"RefineFuse": [82.8, 92.1, 90.4, 88.4, 49.5, 66.4, 47.3, 54.4]}, "caption")
    lines = text.splitlines()
    assert lines[0] == "caption"
    ir = next(line for line in lines if line.startswith("| ir |")).split(" | ")
    mx = next(line for line in lines if line.startswith("| max |")).split(" | ")
    assert ir[2] == "20.0" and mx[2] == "**30.0**"  # person: max is better
    assert ir[3] == "**40.0**" and mx[3] == "30.0"  # car: ir is better
    assert ir[4] == "**10.0**" and mx[4] == "**10.0**"  # bicycle: a tie, both bold
    assert "| RefineFuse (published, M3FD) | – | 82.8 |" in text


def test_every_tenth_training_pair_is_validation() -> None:
    train = [Pair(f"{i:05d}", None, None) for i in range(25)]  # type: ignore[arg-type]
    splits = split_pairs(train, train[:3])
    assert [p.name for p in splits["val"]] == ["00009", "00019"]
    assert len(splits["train"]) == 23 and len(splits["test"]) == 3
    assert not {p.name for p in splits["val"]} & {p.name for p in splits["train"]}
