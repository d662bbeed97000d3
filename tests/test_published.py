"""Parsing of the paper's tables (the values are the paper's, read from ../shared)."""

from refinefuse.published import PAPER_TABLES, published_rows


def test_all_tables_parse(shared_root):
    for dataset in PAPER_TABLES:
        rows = published_rows(dataset, shared_root)
        assert len(rows) == 11, dataset  # MST, nine networks, RefineFuse
        assert "RefineFuse" in rows and "MST" in rows
        for values in rows.values():
            assert list(values) == ["VIF", "AG", "SCD", "Qabf", "SF", "EN", "SSIM"]


def test_values_match_paper_text(shared_root):
    text = (shared_root / "paper/refinefuse-paper.txt").read_text()
    row = published_rows("msrs", shared_root)["RefineFuse"]
    line = "| RefineFuse(Ours) | " + " | ".join(f"{row[m]:.4f}" for m in row) + " |"
    assert line in text
    assert published_rows("roadscene", shared_root) == {}
