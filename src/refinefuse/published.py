"""The paper's published quality tables, read from ``<shared>/paper/refinefuse-paper.txt``.

Tables 1, 2, 3, 5, 6 and 7 of the paper (MSRS, M3FD, TNO, MRI-CT, MRI-PET, MRI-SPECT) list
VIF AG SCD Qabf SF EN SSIM per method. They are parsed from the paper text at run time (the
numbers are never copied into this package), so the reproduction tables can show them
next to this project's own measurements, marked "(published)".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError
from .paths import data_root

#: dataset name -> table number in the paper (M3FD is not bundled: ``reproduce --ir --vis --name m3fd``)
PAPER_TABLES = {"msrs": 1, "m3fd": 2, "tno": 3, "mri_ct": 5, "mri_pet": 6, "mri_spect": 7}


def paper_path(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "paper" / "refinefuse-paper.txt"


def published_rows(dataset: str, root: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """``{method: {metric: value}}`` of the paper's table for ``dataset`` (empty if it has none).

    Method names drop the reference number: ``"MST [65]"`` -> ``"MST"``,
    ``"RefineFuse(Ours)"`` -> ``"RefineFuse"``.
    """
    table = PAPER_TABLES.get(dataset)
    if table is None:
        return {}
    path = paper_path(root)
    if not path.is_file():
        raise InputError(f"{path}: paper text not found (needed for the published rows)")
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(f"Table {table}.")
    except ValueError:
        raise InputError(f"{path}: Table {table} not found") from None
    header: list[str] | None = None
    rows: dict[str, dict[str, float]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("Table "):
            break
        if not line.startswith("|"):
            if header:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "Method":
            header = cells[1:]
        elif header and not set(cells[0]) <= set("-"):
            name = re.sub(r"\s*\[\d+\]$", "", cells[0]).replace("(Ours)", "").strip()
            rows[name] = {m: float(v) for m, v in zip(header, cells[1:])}
    return rows
