"""Reproduce the paper's quality tables (Tables 1-3, 5-7) and comparison figures (Figs. 3-9).

``reproduce("msrs", out="results")`` fuses every pair of a dataset with each method, scores
the results with the project's metrics (profile ``paper``) and writes, under
``<out>/<dataset>/``::

    <method>/<pair>.png   fused images, one folder per method
    table.md              paper-style table: our rows + the paper's rows "(published)"
    table.json            the same numbers, with the pair list and settings
    per_image.csv         every metric of every fused image
    figure.png            ir | vis | each method on one pair, with a 2x zoomed box

Fused images are reused: a method's image of a pair is only computed when
``<method>/<pair>.png`` does not exist yet, so a rerun only evaluates (and an interrupted
run resumes). ``overwrite=True`` recomputes everything. The network's folder records which
checkpoint made it (``fused_with.json``); a different checkpoint without ``overwrite`` is
an error rather than a silent mix.

Any folder pair is evaluated the same way: ``reproduce(folder_dataset(ir_dir, vis_dir, "m3fd"))``
(:mod:`refinefuse.datasets`; CLI ``--ir DIR --vis DIR --name NAME``); a name with a table in
the paper (:data:`refinefuse.published.PAPER_TABLES`) gets the paper's rows too.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .baselines import list_baselines
from .datasets import DatasetSpec, get_dataset
from .errors import InputError
from .fuse import FuseJob, read_pair, run_jobs
from .io import Pair, evenly_spaced, file_sha256, pair_folders, read_image, write_image, write_text
from .methods import DEFAULT_METHOD, check_method, default_weights, get_fuser, is_network
from .metrics import evaluate_folders, get_profile, markdown_table, write_csv
from .paths import data_root
from .published import published_rows

#: pixel-wise rules always reported: the honest floor of every table
FLOOR_METHODS = ("max", "mean")


# ----------------------------------------------------------------------------- methods / pairs
def resolve_methods(
    methods: str | Sequence[str] | None, weights: str | os.PathLike[str] | None = None, floor: bool = True
) -> tuple[list[str], dict[str, str]]:
    """The methods to run and the ones left out with the reason.

    ``None`` means the default network (``refinefuse``) plus every baseline; the network is
    then left out (not an error) when no weights exist. An explicit list (any registered
    network or baseline) keeps its order; ``max`` and ``mean`` are appended when missing
    (unless ``floor`` is False).
    Unknown names raise :class:`InputError`.
    """
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    explicit = methods is not None
    names = list(dict.fromkeys(methods if methods is not None else [DEFAULT_METHOD, *list_baselines()]))
    names += [m for m in FLOOR_METHODS if floor and m not in names]
    for name in names:
        check_method(name)  # InputError listing the names
    left_out: dict[str, str] = {}
    if not explicit and weights is None:
        for name in [n for n in names if is_network(n) and default_weights(n) is None]:
            names.remove(name)
            left_out[name] = "no weights (no --weights given and none ship with the package)"
    return names, left_out


def _weights_record(weights: Path) -> dict:
    return {"weights": str(weights.resolve()), "sha256": file_sha256(weights)}


def _check_provenance(folder: Path, record: dict | None, overwrite: bool) -> None:
    """Refuse to mix fused images of two different checkpoints (by content) in one folder."""
    path = folder / "fused_with.json"
    if record is None or overwrite or not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
    except ValueError:
        previous = {}
    if previous.get("sha256") != record["sha256"] or previous.get("precision") != record.get("precision"):
        raise InputError(
            f"{path}: fused images in {folder} were made with another checkpoint or precision "
            f"({previous.get('weights', '?')}); use --overwrite to redo them"
        )


def fuse_missing(
    pairs: Sequence[Pair],
    folder: Path,
    method: str,
    *,
    mode: str,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[int, int]:
    """Fuse the pairs whose ``folder/<name>.png`` is missing (all with ``overwrite``).

    Returns ``(fused, reused)`` counts. The fuser is only loaded when something is left to do.
    """
    record = None
    if is_network(method):
        path = Path(weights) if weights is not None else default_weights(method)
        if path is not None and path.is_file():
            record = _weights_record(path)
            if precision != "fp32":  # fp32 records keep their old form
                from .export import INT8_RECIPE

                record["precision"] = f"int8 ({INT8_RECIPE})" if precision == "int8" else precision
    _check_provenance(folder, record, overwrite)
    todo = [p for p in pairs if overwrite or not (folder / f"{p.name}.png").is_file()]
    if not todo:
        return 0, len(pairs)
    fuser = get_fuser(method, weights=weights, device=device, precision=precision)
    folder.mkdir(parents=True, exist_ok=True)
    if record is not None:
        write_text(folder / "fused_with.json", json.dumps(record, indent=2) + "\n")
    jobs = [FuseJob(pair, folder / f"{pair.name}.png", replace=True) for pair in todo]
    run_jobs(jobs, fuser, mode=mode, progress=progress, desc=f"fuse ({method})")
    return len(todo), len(pairs) - len(todo)


def _stage(pairs: Sequence[Pair], folders: dict[str, Path], staging: Path) -> dict[str, Path]:
    """Link exactly the selected pairs' fused images into ``staging/<method>/`` so the
    evaluation sees this run's pairs only (a folder may hold more from earlier runs)."""
    staged = {}
    for method, folder in folders.items():
        target = staging / method
        target.mkdir(parents=True)
        for pair in pairs:
            src = (folder / f"{pair.name}.png").resolve()
            try:
                os.symlink(src, target / src.name)
            except OSError:  # no symlinks (e.g. Windows without privileges)
                shutil.copyfile(src, target / src.name)
        staged[method] = target
    return staged


# ----------------------------------------------------------------------------- figure
Box = tuple[int, int, int, int]  # x, y, w, h


def parse_zoom(text: str) -> Box:
    """``"x,y,w,h"`` -> box in pixels."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--zoom expects x,y,w,h in pixels, got '{text}'") from None
    return x, y, w, h


def salient_box(ir: np.ndarray, vis: np.ndarray, size: int | None = None) -> Box:
    """The square window where the ir image is brightest relative to the visible one (hot
    targets at night; bone or tracer uptake in medical pairs): argmax of the windowed mean
    of ``grey(ir) - grey(vis)``. ``size`` defaults to a fifth of the shorter side."""
    a = cv2.cvtColor(ir, cv2.COLOR_RGB2GRAY) if ir.ndim == 3 else ir
    b = cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY) if vis.ndim == 3 else vis
    h, w = a.shape
    s = size or max(8, min(h, w) // 5)
    diff = a.astype(np.float32) - b.astype(np.float32)
    means = cv2.boxFilter(diff, -1, (s, s), normalize=True, borderType=cv2.BORDER_REFLECT)
    half = s // 2
    valid = means[half : h - (s - half) + 1, half : w - (s - half) + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(x), int(y), s, s


def check_box(box: Box, img: np.ndarray, file: str | os.PathLike[str]) -> None:
    """:class:`InputError` unless ``box`` lies inside ``img``."""
    x, y, bw, bh = box
    h, w = img.shape[:2]
    if bw < 1 or bh < 1 or x < 0 or y < 0 or x + bw > w or y + bh > h:
        raise InputError(f"{file}: zoom box {x},{y},{bw},{bh} does not fit the {w}x{h} image")


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.dstack([img] * 3) if img.ndim == 2 else img.copy()


RED = (255, 0, 0)


def zoom_panel(img: np.ndarray, box: Box, scale: int = 2) -> np.ndarray:
    """RGB copy of ``img`` with ``box`` outlined in red and the box magnified ``scale`` times
    in the corner farthest from it (outlined too)."""
    out = _rgb(img)
    h, w = out.shape[:2]
    x, y, bw, bh = box
    crop = cv2.resize(out[y : y + bh, x : x + bw], (bw * scale, bh * scale), interpolation=cv2.INTER_NEAREST)
    ch, cw = crop.shape[:2]
    thick = max(1, min(h, w) // 160)
    if ch < h and cw < w:
        ix = 0 if x + bw / 2 > w / 2 else w - cw
        iy = 0 if y + bh / 2 > h / 2 else h - ch
        out[iy : iy + ch, ix : ix + cw] = crop
        cv2.rectangle(out, (ix, iy), (ix + cw - 1, iy + ch - 1), RED, thick)
    cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), RED, thick)
    return out


TITLE_HEIGHT = 28
GAP = 4


def montage(panels: Sequence[tuple[str, np.ndarray]], columns: int = 5) -> np.ndarray:
    """Grid of equally sized RGB panels, each under a title bar; white gaps of ``GAP`` px.

    Size: ``rows * (H + TITLE_HEIGHT) + (rows - 1) * GAP`` by ``cols * W + (cols - 1) * GAP``.
    """
    h, w = panels[0][1].shape[:2]
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    cell_h = h + TITLE_HEIGHT
    sheet = np.full((rows * cell_h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP, 3), 255, np.uint8)
    for i, (title, img) in enumerate(panels):
        r, c = divmod(i, cols)
        y0, x0 = r * (cell_h + GAP), c * (w + GAP)
        scale = 0.6
        (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        while tw > w - 4 and scale > 0.3:
            scale -= 0.05
            (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        org = (x0 + max(2, (w - tw) // 2), y0 + (TITLE_HEIGHT + th) // 2)
        cv2.putText(sheet, title, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        sheet[y0 + TITLE_HEIGHT : y0 + cell_h, x0 : x0 + w] = img
    return sheet


def comparison_figure(
    pair: Pair,
    fused: dict[str, Path],
    path: str | os.PathLike[str],
    *,
    labels: tuple[str, str] = ("Infrared", "Visible"),
    zoom: Box | None = None,
    columns: int = 5,
) -> Path:
    """Write the ir | vis | each method grid of one pair (the paper's Figs. 3-9) as PNG.

    ``fused`` maps a title to the fused image file; ``zoom`` is ``(x, y, w, h)`` (default:
    :func:`salient_box`).
    """
    ir, vis = read_pair(pair)
    h, w = ir.shape[:2]
    box = zoom or salient_box(ir, vis)
    check_box(box, ir, pair.ir)
    panels = [(f"{labels[0]} ({pair.name})", zoom_panel(ir, box)), (labels[1], zoom_panel(vis, box))]
    for title, file in fused.items():
        img = read_image(file)
        if img.shape[:2] != (h, w):
            raise InputError(f"{file}: size {img.shape[1]}x{img.shape[0]} differs from its sources ({w}x{h})")
        panels.append((title, zoom_panel(img, box)))
    return write_image(path, montage(panels, columns))


# ----------------------------------------------------------------------------- tables
def caption(spec: DatasetSpec, n_pairs: int, n_total: int, profile: str, notes: Sequence[str] = ()) -> str:
    subset = (
        f"{n_pairs} of {n_total} pairs (evenly spaced subset, --max-pairs {n_pairs})"
        if n_pairs < n_total
        else f"all {n_total} pairs"
    )
    lines = [
        f"**{spec.title}**: {subset}; metrics profile `{profile}`; means over the pairs. "
        "Rows marked (published) are the paper's numbers, not measured here. "
        "Best value of each column **bold**, second <u>underlined</u>, ranked over all rows "
        "(measured and published). FA (flat-region artefact, not in the paper; lower is better, "
        "0 = no texture added where both sources are flat) and HA (halo artefact, not in the paper; lower is better, "
        "grey levels by which the fused image leaves both sources' local range near edges, 0 for any per-pixel "
        "blend such as max or mean; docs/metrics.md) have no published values.",
    ]
    lines += [f"Note: {n}" for n in notes]
    return "\n\n".join(lines) + "\n"


def reproduce(
    dataset: str | DatasetSpec,
    *,
    out: str | os.PathLike[str] = "results",
    data_root_dir: str | os.PathLike[str] | None = None,
    methods: str | Sequence[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    max_pairs: int | None = None,
    workers: int | None = None,
    figure_pair: str | None = None,
    zoom: Box | str | None = None,
    overwrite: bool = False,
    profile: str = "paper",
    progress: bool = True,
    log=print,
    floor: bool = True,
) -> dict:
    """Fuse, evaluate and tabulate one dataset; see the module docstring for the outputs.

    Args:
        dataset: a bundled dataset's name (:data:`refinefuse.datasets.DATASETS`) or a
            :class:`~refinefuse.datasets.DatasetSpec`, e.g. of any folder pair
            (:func:`refinefuse.datasets.folder_dataset`). The paper's rows are added when
            its name is one of :data:`refinefuse.published.PAPER_TABLES` (e.g. ``m3fd``).
        out: results root; this dataset's files go to ``out/<name>/``.
        data_root_dir: shared data root (default :func:`refinefuse.paths.data_root`).
        methods: names or a comma-separated string (any of
            :func:`refinefuse.methods.list_methods`); default: ``refinefuse`` (left out with
            a note when it has no weights) and every baseline. ``max`` and ``mean`` are always added.
        weights: checkpoint of the network among ``methods`` (default: its shipped weights).
        max_pairs: evaluate an evenly spaced subset of this many pairs (quick runs).
        workers: evaluation processes (default: the CPUs).
        figure_pair: pair name of the figure (default: the dataset's documented pair).
        zoom: figure zoom box ``(x, y, w, h)`` or ``"x,y,w,h"`` (default: automatic).
        overwrite: recompute fused images that already exist.
        log: called with one-line notes (skipped methods, reuse counts).
        floor: add ``max`` and ``mean`` (False: only ``methods``; ``refinefuse ablate``
            evaluates them once instead of beside every variant).
    Returns:
        ``{"dataset", "n_pairs", "n_total", "methods", "left_out", "fused", "reused",
        "means", "published", "table", "json", "csv", "figure"}``.
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)
    root = data_root(data_root_dir)
    ir_dir, vis_dir = spec.folders(root)
    if isinstance(zoom, str):
        zoom = parse_zoom(zoom)
    names, left_out = resolve_methods(methods, weights, floor)
    networks = [m for m in names if is_network(m)]
    if weights is not None and not networks:
        raise InputError(f"{weights}: --weights applies to a network, but no network is among the methods")
    all_pairs = pair_folders(ir_dir, vis_dir, strict=True)
    pairs = evenly_spaced(all_pairs, max_pairs)
    by_name = {p.name: p for p in all_pairs}
    fig_name = figure_pair or spec.figure_pair or pairs[0].name
    if fig_name not in by_name:
        raise InputError(f"{ir_dir}: no pair named '{fig_name}' for the figure")
    fig_pair = by_name[fig_name]
    if zoom is not None:
        check_box(zoom, read_pair(fig_pair)[0], fig_pair.ir)
    to_fuse = pairs if fig_pair in pairs else [*pairs, fig_pair]
    for method, why in left_out.items():
        log(f"note: skipping method '{method}': {why}")

    run_dir = Path(out) / spec.name
    folders = {m: run_dir / m for m in names}
    fused_counts, reused_counts = {}, {}
    for method in names:
        kw: dict[str, Any] = (
            {"weights": weights, "device": device, "precision": precision} if is_network(method) else {}
        )
        fused_counts[method], reused_counts[method] = fuse_missing(
            to_fuse, folders[method], method, mode=spec.mode, overwrite=overwrite, progress=progress, **kw
        )
        if reused_counts[method]:
            log(f"{method}: reused {reused_counts[method]} existing fused image(s) in {folders[method]}")

    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".eval-", dir=run_dir) as tmp:
        results = evaluate_folders(
            _stage(pairs, folders, Path(tmp)),
            ir_dir,
            vis_dir,
            metrics=(*get_profile(profile).default, "FA", "HA"),
            profile=profile,
            workers=workers,
            skip_missing=True,
            progress=progress,
        )
    means = results.means()

    notes = [f"method '{m}' not run: {why}." for m, why in left_out.items()]
    try:
        published = published_rows(spec.name.lower(), root)
    except InputError as exc:
        published = {}
        notes.append(f"published rows unavailable ({exc}).")
    rows: dict[str, dict[str, float]] = dict(means)
    rows.update({f"{name} (published)": values for name, values in published.items()})
    table_md = run_dir / "table.md"
    write_text(
        table_md,
        caption(spec, len(pairs), len(all_pairs), results.profile, notes)
        + "\n"
        + markdown_table(rows, results.metrics, counts=results.counts()),
    )
    csv_path = write_csv(run_dir / "per_image.csv", results)
    json_path = run_dir / "table.json"
    write_text(
        json_path,
        json.dumps(
            {
                "dataset": spec.name,
                "title": spec.title,
                "folders": {"ir": str(ir_dir), "vis": str(vis_dir)},
                "profile": results.profile,
                "metrics": list(results.metrics),
                "n_pairs": len(pairs),
                "n_total": len(all_pairs),
                "pairs": [p.name for p in pairs],
                "ranking": "all rows (measured and published)",
                "measured": {m: {k: (v if math.isfinite(v) else None) for k, v in d.items()} for m, d in means.items()},
                "n_finite": {m: {k: n for k, (n, _) in c.items()} for m, c in results.counts().items()},
                "published": published,
                "left_out": left_out,
                "weights": str(weights or default_weights(networks[0])) if networks else None,
            },
            indent=2,
        )
        + "\n",
    )
    figure = comparison_figure(
        fig_pair,
        {m: folders[m] / f"{fig_pair.name}.png" for m in names},
        run_dir / "figure.png",
        labels=(spec.ir_label, spec.vis_label),
        zoom=zoom,
    )
    return {
        "dataset": spec.name,
        "n_pairs": len(pairs),
        "n_total": len(all_pairs),
        "methods": names,
        "left_out": left_out,
        "fused": fused_counts,
        "reused": reused_counts,
        "means": means,
        "published": published,
        "table": table_md,
        "json": json_path,
        "csv": csv_path,
        "figure": figure,
        "figure_pair": fig_pair.name,
    }
