"""Reports of metric results: paper-style Markdown tables, JSON, CSV and a bar chart.

Tables take ``rows = {method: {metric: mean}}`` so that measured and published rows can
be mixed; like the paper, the best value of each column is **bold** and the second best
is underlined (``<u>...</u>`` in Markdown).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeGuard

from ..errors import InputError
from ..io import atomic_path, write_text
from .evaluate import EvalResults
from .profiles import LOWER_IS_BETTER, PAPER_METRICS

#: Default column order: the paper's tables.
DEFAULT_COLUMNS: tuple[str, ...] = PAPER_METRICS

Rows = Mapping[str, Mapping[str, float]]
#: ``{method: {metric: (n_finite, n_images)}}``, as :meth:`EvalResults.counts` gives.
Counts = Mapping[str, Mapping[str, tuple[int, int]]]

#: Largest ``decimals`` a table accepts (float64 has about 16 significant digits).
MAX_DECIMALS = 15


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and math.isfinite(value)


def check_decimals(decimals: object) -> int:
    """``decimals`` if it is a whole number from 0 to :data:`MAX_DECIMALS`, else :class:`InputError`."""
    if (
        isinstance(decimals, bool)
        or not isinstance(decimals, numbers.Integral)
        or not 0 <= int(decimals) <= MAX_DECIMALS
    ):
        raise InputError(f"decimals must be a whole number from 0 to {MAX_DECIMALS}, got {decimals!r}")
    return int(decimals)


def rank_marks(
    rows: Rows, columns: Sequence[str], *, decimals: int = 4, exclude: Iterable[str] = ()
) -> dict[tuple[str, str], str]:
    """``{(row, column): "best" | "second"}`` per column, as the paper marks its tables.

    Values are compared as displayed (rounded to ``decimals``), so equal displayed values
    share a mark. MSE and Nabf are better when lower, every other metric when higher.
    Rows in ``exclude`` and missing / NaN values are not ranked; a column with fewer than
    two ranked values gets no marks.
    """
    excluded = set(exclude)
    marks: dict[tuple[str, str], str] = {}
    for col in columns:
        shown = {
            r: round(float(v[col]), decimals) for r, v in rows.items() if r not in excluded and _finite(v.get(col))
        }
        if len(shown) < 2:  # nothing to rank against
            continue
        distinct = sorted(set(shown.values()), reverse=col not in LOWER_IS_BETTER)
        for label, value in zip(("best", "second"), distinct[:2]):
            for r, v in shown.items():
                if v == value:
                    marks[(r, col)] = label
    return marks


def markdown_table(
    rows: Rows,
    columns: Sequence[str] | None = None,
    *,
    decimals: int = 4,
    exclude_from_ranking: Iterable[str] = (),
    method_header: str = "Method",
    counts: Counts | None = None,
) -> str:
    """A Markdown table, one row per method, best value per column **bold**, second best
    <u>underlined</u>.

    Args:
        rows: ``{method: {metric: value}}``, in display order. Rows may lack metrics
            (shown as ``-``), e.g. published values from a paper.
        columns: metric columns; default VIF AG SCD Qabf SF EN SSIM (the paper's order).
        decimals: digits after the point, 0 to 15 (values are ranked as displayed);
            anything else raises :class:`InputError`.
        exclude_from_ranking: rows shown but never marked.
        counts: ``{method: {metric: (n_finite, n_images)}}`` (:meth:`EvalResults.counts`);
            where the two differ the cell shows them after the mean, ``1.0553 (359/361)``
            (``- (0/361)`` when no image gave a finite value).
    """
    decimals = check_decimals(decimals)
    counts = counts or {}
    columns = tuple(columns or DEFAULT_COLUMNS)
    marks = rank_marks(rows, columns, decimals=decimals, exclude=exclude_from_ranking)
    arrows = [f"{c} {'↓' if c in LOWER_IS_BETTER else '↑'}" for c in columns]
    body = []
    for method, values in rows.items():
        cells = [method.replace("|", "\\|")]
        for col in columns:
            value = values.get(col)
            n_finite, n_images = counts.get(method, {}).get(col, (0, 0))
            count = f" ({n_finite}/{n_images})" if n_finite != n_images else ""
            if not _finite(value):
                cells.append("-" + count)
                continue
            text = f"{float(value):.{decimals}f}"
            if float(text) == 0:
                text = text.lstrip("-")  # -0.0 (EN of a constant image) and tiny negatives
            mark = marks.get((method, col))
            if mark == "best":
                text = f"**{text}**"
            elif mark == "second":
                text = f"<u>{text}</u>"
            cells.append(text + count)
        body.append(cells)
    return pipe_table([method_header, *arrows], body)


def pipe_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown pipe table of text cells: first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- JSON / CSV
def summary(results: EvalResults) -> dict:
    """JSON-ready summary: profile, metrics, and per method the means (over the finite
    values; ``null`` where there were none), the images scored (``n_images``), per metric
    the images with a finite value (``n_finite``), the images per metric whose value is
    NaN or infinite (``non_finite``), the constant fused images (``flat_fused``) and the
    skipped pairs; ``flat_sources``: pairs with a constant source image."""
    means = results.means()
    counts = results.counts()
    bad = results.non_finite()
    return {
        "profile": results.profile,
        "metrics": list(results.metrics),
        "methods": {
            m: {
                "mean": {k: (v if _finite(v) else None) for k, v in means[m].items()},
                "n_images": len(results.scores[m]),
                "n_finite": {k: n for k, (n, _) in counts[m].items()},
                "non_finite": bad.get(m, {}),
                "flat_fused": results.flat_fused.get(m, []),
                "skipped": results.skipped.get(m, []),
            }
            for m in results.methods
        },
        "flat_sources": {name: list(which) for name, which in results.flat_sources.items()},
    }


def write_summary_json(path: str | os.PathLike[str], results: EvalResults) -> Path:
    """Write :func:`summary` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(summary(results), indent=2) + "\n")
    return path


def read_summary_json(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, float]], tuple[str, ...]]:
    """Rows ``{method: {metric: mean}}`` and metric order from a :func:`write_summary_json` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        rows = {
            m: {k: (float("nan") if v is None else float(v)) for k, v in d["mean"].items()}
            for m, d in data["methods"].items()
        }
        return rows, tuple(data["metrics"])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{path}: not a metrics summary written by 'refinefuse eval'") from None


def write_csv(path: str | os.PathLike[str], results: EvalResults) -> Path:
    """Per-image CSV: ``method, image, <metric>...`` (full precision)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "image", *results.metrics])
        for method in results.methods:
            for image, values in results.scores[method].items():
                writer.writerow([method, image, *(repr(values[m]) for m in results.metrics)])
    return path


def write_reports(results: EvalResults, csv_path: str | os.PathLike[str], *, decimals: int = 4) -> dict[str, Path]:
    """Write ``<stem>.csv`` (per image), ``<stem>.md`` and ``<stem>.json`` (means)."""
    csv_path = Path(csv_path)
    md_path = csv_path.with_suffix(".md")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(md_path, markdown_table(results.means(), results.metrics, decimals=decimals, counts=results.counts()))
    return {
        "csv": write_csv(csv_path, results),
        "markdown": md_path,
        "json": write_summary_json(csv_path.with_suffix(".json"), results),
    }


# ----------------------------------------------------------------------------- bar chart
def plot_summary(
    rows: Rows,
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Bar chart PNG of ``{method: {metric: mean}}``: one panel per metric (each with its
    own scale), one bar per method; the best bar of each panel is outlined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    columns = tuple(columns or [c for c in DEFAULT_COLUMNS if any(c in v for v in rows.values())])
    if not columns or not rows:
        raise InputError("nothing to plot: no methods or no metrics")
    methods = list(rows)
    ncols = min(4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.2 + 0.25 * len(methods) + 2.4 * (nrows - 1)), layout="constrained")
    FigureCanvasAgg(fig)
    colours = [f"C{i % 10}" for i in range(len(methods))]
    marks = rank_marks(rows, columns)
    for i, col in enumerate(columns):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        values = [float(rows[m].get(col, math.nan)) if _finite(rows[m].get(col)) else math.nan for m in methods]
        bars = ax.bar(range(len(methods)), [0 if math.isnan(v) else v for v in values], color=colours)
        for bar, method in zip(bars, methods):
            if marks.get((method, col)) == "best":
                bar.set_edgecolor("black")
                bar.set_linewidth(2)
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.4g}" for v in values], fontsize=7)
        ax.set_title(f"{col} {'↓' if col in LOWER_IS_BETTER else '↑'}")
        ax.set_xticks([])
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            lo, hi = min(finite), max(finite)
            pad = 0.15 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 1.0
            ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + 1.6 * pad)
    handles = [Patch(color=c, label=m) for m, c in zip(methods, colours)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(methods), 4), frameon=False)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
