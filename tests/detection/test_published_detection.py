"""The paper's Table 4, read from the paper text."""

from __future__ import annotations

from refinefuse.published import published_detection


def test_table4_rows(shared_root) -> None:
    rows = published_detection(shared_root)
    assert list(rows)[:2] == ["Infrared", "Visible"]
    assert "RefineFuse" in rows and "(Ours)" not in "".join(rows)
    for values in rows.values():
        assert len(values) == 8
        assert all(0 < v <= 100 for v in values)
        assert values[3] > values[7]  # mAP@0.5 (all) above mAP@[0.5,0.95] (all)
    # the paper's claim: its row has the best overall mAP@0.5
    assert max(rows, key=lambda m: rows[m][3]) == "RefineFuse"
