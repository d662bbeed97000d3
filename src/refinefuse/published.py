"""The paper's published quality tables, read from ``<shared>/paper/refinefuse-paper.txt``.

Tables 1, 2, 3, 5, 6 and 7 of the paper (MSRS, M3FD, TNO, MRI-CT, MRI-PET, MRI-SPECT) list
VIF AG SCD Qabf SF EN SSIM per method. They are parsed from the paper text at run time (the
numbers are never copied into this package), so the reproduction tables can show them
next to this project's own measurements, marked "(published)". The ablation Tables 8-10
(MSRS) are read the same way by :func:`published_ablation` (``refinefuse ablate``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError
from .paths import data_root

#: dataset name -> table number in the paper (M3FD is not bundled: ``reproduce --ir --vis --name m3fd``)
PAPER_TABLES = {"msrs": 1, "m3fd": 2, "tno": 3, "mri_ct": 5, "mri_pet": 6, "mri_spect": 7}


def paper_path(root: str | os.PathLike[str] | None = None) -> Path:
    return data_root(root) / "paper" / "refinefuse-paper.txt"


def _table_lines(table: int, root: str | os.PathLike[str] | None) -> tuple[list[str], int]:
    """The paper text's lines and the index of the ``Table N.`` caption line."""
    path = paper_path(root)
    if not path.is_file():
        raise InputError(f"{path}: paper text not found (needed for the published rows)")
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        return lines, lines.index(f"Table {table}.")
    except ValueError:
        raise InputError(f"{path}: Table {table} not found") from None


def _table_cells(table: int, root: str | os.PathLike[str] | None) -> Iterator[list[str]]:
    """The cells of each Markdown row of the paper's Table ``table``, header rows and rules included."""
    lines, start = _table_lines(table, root)
    seen = False
    for line in lines[start + 1 :]:
        if line.startswith("Table "):
            break
        if not line.startswith("|"):
            if seen:
                break
            continue
        seen = True
        yield [c.strip() for c in line.strip().strip("|").split("|")]


def _method_name(cell: str) -> str:
    """``"MST [65]"`` -> ``"MST"``, ``"RefineFuse(Ours)"`` -> ``"RefineFuse"``."""
    return re.sub(r"\s*\[\d+\]$", "", cell).replace("(Ours)", "").strip()


def published_rows(dataset: str, root: str | os.PathLike[str] | None = None) -> dict[str, dict[str, float]]:
    """``{method: {metric: value}}`` of the paper's table for ``dataset`` (empty if it has none).

    Method names drop the reference number: ``"MST [65]"`` -> ``"MST"``,
    ``"RefineFuse(Ours)"`` -> ``"RefineFuse"``.
    """
    table = PAPER_TABLES.get(dataset)
    if table is None:
        return {}
    header: list[str] | None = None
    rows: dict[str, dict[str, float]] = {}
    for cells in _table_cells(table, root):
        if cells[0] == "Method":
            header = cells[1:]
        elif header and not set(cells[0]) <= set("-"):
            rows[_method_name(cells[0])] = {m: float(v) for m, v in zip(header, cells[1:])}
    return rows


#: ablation table number -> what it varies (paper Sect. "Ablation study"; all on MSRS)
ABLATION_TABLES = {8: "loss", 9: "modules", 10: "levels"}
_ABLATION_ROW = re.compile(r"^(Setting [A-Z]|Ours|RefineFuse|I|II|III|IV|V)\b")
_TIME_COLUMN = "time_ms"


def published_ablation(
    table: int, root: str | os.PathLike[str] | None = None
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """``(columns, {row: {column: value}})`` of the paper's ablation Table 8, 9 or 10 (MSRS).

    Parsed from the paper text like :func:`published_rows`. Row keys: Table 8 ``Setting A``,
    ``Setting B``, ``Setting C``, ``Ours``; Table 9 ``I`` to ``V`` and ``Ours`` (its check-mark
    cells are skipped: the values are the row's numeric cells in column order); Table 10
    ``Setting A`` (3 levels), ``Setting B`` (5 levels), ``Ours``. ``columns`` are the metrics in
    the paper's order for that table; Table 10's "Average time (ms)" (RTX 4090 GPU) is ``time_ms``.
    """
    if table not in ABLATION_TABLES:
        raise InputError(f"no ablation Table {table} in the paper (choose from {', '.join(map(str, ABLATION_TABLES))})")
    path = paper_path(root)
    columns: list[str] | None = None
    rows: dict[str, dict[str, float]] = {}
    for cells in _table_cells(table, root):
        if columns is None:
            columns = [_TIME_COLUMN if c.startswith("Average time") else c for c in cells[1:] if c]
            continue
        if set("".join(cells)) <= set("-"):
            continue
        label = next((m.group(1) for c in cells if (m := _ABLATION_ROW.match(c))), None)
        values = [float(c) for c in cells if re.fullmatch(r"\d+(\.\d+)?", c)]
        if label is None or len(values) < len(columns):
            raise InputError(f"{path}: Table {table}: cannot read row {' | '.join(cells)!r}")
        rows["Ours" if label == "RefineFuse" else label] = dict(zip(columns, values))
    if not columns or not rows:
        raise InputError(f"{path}: Table {table} has no rows")
    return columns, rows


def published_detection(root: str | os.PathLike[str] | None = None) -> dict[str, list[float]]:
    """The paper's Table 4 (YOLOv5s on M3FD): ``{method: [mAP@0.5 People, Car, Bus, All,
    mAP@[0.5,0.95] People, Car, Bus, All]}`` in %, method names as in :func:`published_rows`
    (``"Infrared"``, ``"Visible"``, ..., ``"RefineFuse"``)."""
    rows: dict[str, list[float]] = {}
    for cells in _table_cells(4, root):
        try:
            values = [float(c) for c in cells[1:9]]
        except ValueError:
            continue  # the two header rows and the rule
        if len(values) == 8:
            rows[_method_name(cells[0])] = values
    if not rows:
        raise InputError(f"{paper_path(root)}: Table 4 has no rows")
    return rows
