"""The paper's ablation study (Tables 8, 9 and 10) retrained under one schedule: ``refinefuse ablate``.

:func:`ablate` trains every variant of the requested tables with the project's trainer
(:func:`refinefuse.training.train`) under ONE schedule (a YAML file of
:class:`~refinefuse.config.TrainConfig` settings; default ``configs/ablation_cpu.yaml``),
the same data and the same seed, then evaluates each trained variant with
:func:`refinefuse.reproduce.reproduce` (MSRS test and TNO; the fuser is built by
:func:`refinefuse.methods.get_fuser`, no fusion code of its own), measures its size
(:mod:`refinefuse.models.complexity`) and CPU forward time at 640x480
(:func:`refinefuse.bench.run_benchmark`), and writes the tables in the paper's layout::

    OUT/schedule.yaml              the schedule every run used (ablate sets model, loss, seed, out)
    OUT/runs/<variant>-seed<k>/    one training run folder per variant and seed (last.pt, log.csv, ...)
    OUT/eval/<variant>-seed<k>/    reproduce output of that run per dataset (fused images, table, CSV)
    OUT/eval/floor/                the pixel-wise max and mean rules, evaluated once
    OUT/bench/<model>.json         parameters, MACs at 256x256, CPU forward time at 640x480
    OUT/table8.md, table8.json     (and table9, table10): our rows, then the paper's "(published)"

Variants (the registry names are in :mod:`refinefuse.models`):

- Table 8 (loss): settings A, B, C (:data:`refinefuse.losses.SETTINGS`) and the full loss,
  all on the paper's 4-level network.
- Table 9 (modules): I ``refinefuse_l1_cat`` (1 level, concatenation + conv), II
  ``refinefuse_l1`` (1 level, SFIM), III ``refinefuse_l2`` (2 levels, SFIM), IV
  ``refinefuse_l2_psim`` (2 levels, SFIM at level 1 and PSIM at level 2), V
  ``refinefuse_no_fim`` (4 levels, SFIM + PSIM), Ours ``refinefuse``.
- Table 10 (levels): ``refinefuse_l3``, ``refinefuse_l5`` and ``refinefuse`` (4 levels).

The full model is one run shared by the three tables. With ``seeds=K`` it is trained with
seeds ``s, s+1, ..., s+K-1`` (``s`` the schedule's seed) and reported as mean ± sample
standard deviation, so that the other rows' differences can be compared with seed noise;
every other variant is trained once, with seed ``s``. Each trained variant is evaluated at
its last epoch (``last.pt``: the same number of epochs for all).

``resume=True`` continues a killed ablate: a finished run (its ``ablation_run.json``) is
not retrained, an unfinished one resumes from its ``last.pt`` (``TrainConfig.resume``), and
finished evaluations and size/time measurements (same checkpoint, same ``max_pairs``) are
reused. Without it, an OUT that already holds one of the planned runs is an error. The
tables are rewritten after every run, so a killed ablate leaves the rows done so far.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
import yaml

from .config import TrainConfig, load_config
from .errors import InputError
from .io import file_sha256, write_text
from .metrics.profiles import LOWER_IS_BETTER, PAPER_METRICS
from .metrics.report import pipe_table, rank_marks
from .paths import dataset_dir

__all__ = [
    "Variant",
    "TableRow",
    "VARIANTS",
    "TABLES",
    "DEFAULT_DATASETS",
    "default_schedule_path",
    "parse_tables",
    "plan_runs",
    "ablate",
]

Log = Callable[[str], None]

#: the evaluation datasets (the paper's ablation tables are on MSRS; TNO is ours)
DEFAULT_DATASETS = ("msrs", "tno")
#: the size the CPU forward time is measured at (MSRS frames; Table 10's time column)
TIME_SIZE = (640, 480)
#: the square size of the MAC count (the paper's Table 11 convention)
MAC_SIZE = 256
#: digits of the paper's own tables, for its rows
PAPER_DECIMALS = {8: 4, 9: 2, 10: 3}
#: settings :func:`ablate` sets per run; the rest of the schedule is the same for every run
PER_RUN_KEYS = ("model", "loss", "seed", "out", "resume")
#: settings that do not change what a run computes (ignored when a resumed schedule is compared)
COSMETIC_KEYS = ("progress", "tensorboard", "workers", "threads")
RUN_MARKER = "ablation_run.json"
EVAL_MARKER = "ablation_eval.json"


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a registered model and a loss setting (paper Tables 8-10)."""

    key: str  #: run folder stem (``OUT/runs/<key>-seed<k>``)
    model: str  #: registered model name (:func:`refinefuse.models.create_model`)
    loss: str = "full"  #: loss setting (:data:`refinefuse.losses.SETTINGS`)
    description: str = ""


@dataclass(frozen=True)
class TableRow:
    """A row of an ablation table: our label, the paper's row key, the variant, Table 9's A/B/C marks."""

    label: str
    paper: str  #: row key of :func:`refinefuse.published.published_ablation`
    variant: str  #: key of :data:`VARIANTS`
    modules: str = ""  #: Table 9: SFIM/PSIM/FIM used (A/B/C)


FULL = "refinefuse"

VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant(FULL, "refinefuse", "full", "4 levels, SFIM + PSIM + FIM, the paper's loss (Eq. 6-9)"),
        Variant("loss_A", "refinefuse", "A", "conventional intensity loss mean|F - I| + mean|F - V| (Eq. 10)"),
        Variant("loss_B", "refinefuse", "B", "max intensity loss mean|F - max(I, V)| (Eq. 11)"),
        Variant("loss_C", "refinefuse", "C", "the paper's loss without the texture term"),
        Variant("l1_cat", "refinefuse_l1_cat", "full", "1 level, concatenation + conv"),
        Variant("l1_sfim", "refinefuse_l1", "full", "1 level, SFIM"),
        Variant("l2_sfim", "refinefuse_l2", "full", "2 levels, SFIM at both"),
        Variant("l2_sfim_psim", "refinefuse_l2_psim", "full", "2 levels, SFIM at level 1, PSIM at level 2"),
        Variant("no_fim", "refinefuse_no_fim", "full", "4 levels, SFIM + PSIM, concatenation + conv instead of FIM"),
        Variant("l3", "refinefuse_l3", "full", "3 levels (max downsampling 1/4)"),
        Variant("l5", "refinefuse_l5", "full", "5 levels (max downsampling 1/16)"),
    )
}

TABLES: dict[int, tuple[str, tuple[TableRow, ...]]] = {
    8: (
        "Table 8: the loss function (paper Sect. 'Ablation study for the loss function')",
        (
            TableRow("Setting A (conventional intensity loss)", "Setting A", "loss_A"),
            TableRow("Setting B (max intensity loss)", "Setting B", "loss_B"),
            TableRow("Setting C (no texture loss)", "Setting C", "loss_C"),
            TableRow("RefineFuse (Ours)", "Ours", FULL),
        ),
    ),
    9: (
        "Table 9: SFIM (A), PSIM (B) and FIM (C) (paper Sect. 'Ablation study for SFIM, PSIM and FIM')",
        (
            TableRow("I (1 level, concat + conv)", "I", "l1_cat", "-/-/-"),
            TableRow("II (1 level)", "II", "l1_sfim", "✓/-/-"),
            TableRow("III (2 levels)", "III", "l2_sfim", "✓/-/-"),
            TableRow("IV (2 levels)", "IV", "l2_sfim_psim", "✓/✓/-"),
            TableRow("V (4 levels)", "V", "no_fim", "✓/✓/-"),
            TableRow("Ours (4 levels)", "Ours", FULL, "✓/✓/✓"),
        ),
    ),
    10: (
        "Table 10: the number of downsampling levels (paper Sect. 'Ablation study on the number of "
        "downsampling layers')",
        (
            TableRow("Setting A (3 levels: 1, 1/2, 1/4)", "Setting A", "l3"),
            TableRow("Setting B (5 levels: 1, 1/2, 1/4, 1/8, 1/16)", "Setting B", "l5"),
            TableRow("Ours (4 levels: 1, 1/2, 1/4, 1/8)", "Ours", FULL),
        ),
    ),
}


# ----------------------------------------------------------------------------- planning
def default_schedule_path() -> Path:
    """The packaged CPU ablation schedule ``configs/ablation_cpu.yaml``."""
    return Path(__file__).with_name("configs") / "ablation_cpu.yaml"


def parse_tables(tables: int | str | Sequence[int | str]) -> list[int]:
    """``"all"``, ``9``, ``"8,10"`` or ``[8, 9]`` -> sorted table numbers; :class:`InputError` otherwise."""
    items: list[int | str] = [tables] if isinstance(tables, (int, str)) else list(tables)
    out: set[int] = set()
    for item in items:
        for part in str(item).split(","):
            part = part.strip().lower()
            if part == "all":
                out.update(TABLES)
            elif part.isdigit() and int(part) in TABLES:
                out.add(int(part))
            else:
                raise InputError(f"--table: unknown ablation table '{part}' (choose 8, 9, 10 or all)")
    if not out:
        raise InputError("--table: no table given (choose 8, 9, 10 or all)")
    return sorted(out)


@dataclass(frozen=True)
class Run:
    """One training run of the plan."""

    variant: Variant
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant.key}-seed{self.seed}"


def plan_runs(
    tables: Sequence[int], seeds: int = 1, base_seed: int = 0, variants: Sequence[str] | None = None
) -> list[Run]:
    """The runs of ``tables`` in table order, each variant once; the full model ``seeds`` times.

    ``variants`` (keys of :data:`VARIANTS`) keeps only those (quick runs, tests).
    """
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    keys = list(dict.fromkeys(row.variant for t in tables for row in TABLES[t][1]))
    if variants is not None:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise InputError(f"--variants: unknown variant '{unknown[0]}' (choose from {', '.join(VARIANTS)})")
        keys = [k for k in keys if k in variants]
        if not keys:
            raise InputError(f"--variants: none of {', '.join(variants)} is in Table(s) {', '.join(map(str, tables))}")
    runs = []
    for key in keys:
        for k in range(seeds if key == FULL else 1):
            runs.append(Run(VARIANTS[key], base_seed + k))
    return runs


def load_schedule(
    schedule: str | os.PathLike[str] | None, data: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None
) -> TrainConfig:
    """The schedule shared by every run: the YAML file, its ``data`` replaced by ``data`` when
    given (default when the file has none: MSRS ``train128`` under the data root)."""
    cfg = load_config(schedule if schedule is not None else default_schedule_path())
    if data is not None:
        cfg.data = str(data)
    elif not cfg.data:
        cfg.data = str(dataset_dir("msrs/train128", root))
    cfg.resume = False
    return cfg


def _schedule_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The schedule as stored in ``OUT/schedule.yaml``: without the per-run settings."""
    return {k: v for k, v in cfg.to_dict().items() if k not in PER_RUN_KEYS or k == "seed"}


def _check_schedule(out: Path, cfg: TrainConfig, resume: bool) -> None:
    """On resume the schedule must be the one OUT was started with (cosmetic settings aside)."""
    path = out / "schedule.yaml"
    if not (resume and path.is_file()):
        return
    stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    current = _schedule_dict(cfg)
    differ = sorted(k for k in set(stored) | set(current) if k not in COSMETIC_KEYS and stored.get(k) != current.get(k))
    if differ:
        key = differ[0]
        raise InputError(
            f"{path}: this ablation was started with another schedule ({key}: {stored.get(key)!r}, now "
            f"{current.get(key)!r}); resume with the same --schedule and --data, or choose another --out"
        )


# ----------------------------------------------------------------------------- small helpers
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def _finite_or_none(values: dict[str, Any]) -> dict[str, float | None]:
    return {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in values.items()}


def _train_seconds(run_dir: Path) -> float | None:
    """Sum of ``epoch_s`` in the run's ``log.csv`` (training time, resumed sessions included)."""
    try:
        with (run_dir / "log.csv").open(newline="") as fh:
            return round(sum(float(r.get("epoch_s") or 0) for r in csv.DictReader(fh)), 1)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- steps
def _train_run(run: Run, base: TrainConfig, out: Path, resume: bool, log: Log) -> dict[str, Any]:
    """Train ``run`` unless its marker says it finished; returns the marker's content + ``status``."""
    from .training import LAST, train

    run_dir = out / "runs" / run.name
    marker = _read_json(run_dir / RUN_MARKER)
    if resume and marker is not None and (run_dir / LAST).is_file():
        log(f"{run.name}: trained already (reused)")
        return {**marker, "status": "reused"}
    cfg = copy.deepcopy(base)
    cfg.model, cfg.loss, cfg.seed, cfg.out = run.variant.model, run.variant.loss, run.seed, str(run_dir)
    cfg.resume = resume
    status = "resumed" if resume and (run_dir / LAST).is_file() else "trained"
    log(f"{run.name}: {'resuming' if status == 'resumed' else 'training'} {run.variant.model} (loss {cfg.loss})")
    t0 = time.perf_counter()
    train(cfg)
    last = run_dir / LAST
    info = {
        "run": run.name,
        "variant": run.variant.key,
        "model": run.variant.model,
        "loss": run.variant.loss,
        "seed": run.seed,
        "epochs": cfg.epochs,
        "weights": str(last),
        "sha256": file_sha256(last),
        "train_s": _train_seconds(run_dir),
        "session_s": round(time.perf_counter() - t0, 1),
    }
    _write_json(run_dir / RUN_MARKER, info)
    return {**info, "status": status}


def _evaluate(
    name: str,
    methods: Sequence[str],
    dataset: str,
    out: Path,
    *,
    weights: Path | None,
    max_pairs: int | None,
    resume: bool,
    opts: dict[str, Any],
    stored_only: bool = False,
) -> dict[str, Any] | None:
    """``reproduce`` one dataset for run ``name`` (or the floor rules); reused when its marker
    matches. ``stored_only``: never evaluate; None when there is no matching stored evaluation."""
    from .reproduce import reproduce

    folder = out / "eval" / name
    marker_path = folder / dataset / EVAL_MARKER
    key = {"weights_sha256": file_sha256(weights) if weights else None, "max_pairs": max_pairs, "profile": "paper"}
    marker = _read_json(marker_path)
    if resume and marker is not None and marker.get("key") == key:
        return {**marker, "status": "reused"}
    if stored_only:
        return None
    stale = False  # fused images of another checkpoint (a retrained run): redo them
    for method in methods:
        record = _read_json(folder / dataset / method / "fused_with.json")
        stale = stale or (record is not None and record.get("sha256") != key["weights_sha256"])
    res = reproduce(
        dataset,
        out=folder,
        methods=list(methods),
        weights=weights,
        max_pairs=max_pairs,
        overwrite=stale or not resume,
        floor=False,
        **opts,
    )
    table = _read_json(Path(res["json"])) or {}
    info = {
        "key": key,
        "dataset": dataset,
        "n_pairs": res["n_pairs"],
        "n_total": res["n_total"],
        "means": {m: _finite_or_none(res["means"][m]) for m in methods},
        "n_finite": {m: table.get("n_finite", {}).get(m, {}) for m in methods},
        "table": str(res["table"]),
    }
    _write_json(marker_path, info)
    return {**info, "status": "evaluated"}


def _measure(
    model: str, weights: Path, out: Path, repeats: int, resume: bool, log: Log, threads: int
) -> dict[str, Any]:
    """Parameters, MACs at 256x256 and the median CPU forward time at 640x480 of ``model``
    (:func:`refinefuse.bench.run_benchmark`); reused on resume (they do not depend on the weights)."""
    from .bench import run_benchmark

    path = out / "bench" / f"{model}.json"
    stored = _read_json(path)
    if resume and stored is not None and stored.get("repeats") == repeats:
        return {**stored, "status": "reused"}
    log(f"{model}: measuring size and CPU time at {TIME_SIZE[0]}x{TIME_SIZE[1]} (median of {repeats})")
    result = run_benchmark(
        [model],
        sizes=[TIME_SIZE],
        mac_sizes=[MAC_SIZE],
        device="cpu",
        threads=threads,
        repeats=repeats,
        warmup=1,
        weights=weights,
        progress=False,
    )
    row = result["rows"][0]
    size = f"{TIME_SIZE[0]}x{TIME_SIZE[1]}"
    info = {
        "model": model,
        "params": row["params"],
        "macs_256": row["macs"][str(MAC_SIZE)],
        "cpu_ms": row["forward_ms"][size],
        "cpu_ms_runs": row["times_ms"]["forward"][size],
        "repeats": repeats,
        "threads": result["settings"]["threads"],
        "machine": result["machine"],
    }
    _write_json(path, info)
    return {**info, "status": "measured"}


# ----------------------------------------------------------------------------- tables
def _fmt(value: float | None, decimals: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


Values = dict[str, float | None]


def _aggregate(per_seed: list[Values], columns: Sequence[str]) -> tuple[Values, Values | None]:
    """Mean per column over the seeds (finite values only) and the sample std (None for one seed)."""
    mean: Values = {}
    std: Values | None = {} if len(per_seed) > 1 else None
    for col in columns:
        values = [v for v in (s.get(col) for s in per_seed) if v is not None and math.isfinite(v)]
        mean[col] = statistics.fmean(values) if values else None
        if std is not None:
            std[col] = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def _published(table: int, root: str | os.PathLike[str] | None) -> tuple[list[str], dict[str, dict[str, float]], str]:
    from .published import published_ablation

    try:
        columns, rows = published_ablation(table, root)
    except InputError as exc:
        return list(PAPER_METRICS), {}, f"published rows unavailable ({exc})"
    return columns, rows, ""


def _size_cells(size: dict[str, Any]) -> list[str]:
    """Params (M), MACs (G) and CPU time (ms) cells of a :func:`_measure` result."""
    params, macs = size.get("params"), size.get("macs_256")
    return [
        _fmt(params / 1e6, 2) if params else "-",
        _fmt(macs / 1e9, 2) if macs else "-",
        _fmt(size.get("cpu_ms"), 1),
    ]


def _measured_rows(
    planned: Sequence[TableRow], state: dict[str, Any], dataset: str, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Per planned row with at least one evaluated run on ``dataset``: its runs, mean, std and size."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for info in state["runs"].values():
        by_variant.setdefault(info["variant"], []).append(info)
    out = []
    for row in planned:
        variant = VARIANTS[row.variant]
        runs = sorted(by_variant.get(row.variant, []), key=lambda r: r["seed"])
        evals = [e for e in (state["evals"].get((r["run"], dataset)) for r in runs) if e is not None]
        if not evals:
            continue
        per_seed = [e["means"][variant.model] for e in evals]
        mean, std = _aggregate(per_seed, metrics)
        size = {k: v for k, v in state["size"].get(variant.model, {}).items() if k not in ("machine", "status")}
        out.append(
            {
                "label": row.label,
                "dataset": dataset,
                "n_pairs": evals[0]["n_pairs"],
                "n_total": evals[0]["n_total"],
                "variant": row.variant,
                "model": variant.model,
                "loss": variant.loss,
                "runs": [r["run"] for r in runs],
                "seeds": [r["seed"] for r in runs],
                "train_s": [r.get("train_s") for r in runs],
                "mean": mean,
                "std": std,
                "per_seed": per_seed,
                "size": size,
            }
        )
    return out


def _section(
    table: int,
    rows: Sequence[dict[str, Any]],
    planned: Sequence[TableRow],
    floor: dict[str, Values],
    metrics: list[str],
) -> list[list[str]]:
    """Table body of one dataset: measured rows (planned order), then the pixel-wise rules."""
    extra = table == 9  # the A/B/C column
    by_label = {r["label"]: r for r in rows}
    finite = {r["label"]: {k: v for k, v in r["mean"].items() if v is not None} for r in rows}
    marks = rank_marks(finite, metrics, decimals=4)
    body = []
    for row in planned:
        cells = [row.label] + ([row.modules] if extra else [])
        measured = by_label.get(row.label)
        if measured is None:
            body.append(cells + ["not run yet"] + [""] * (len(metrics) + 2))
            continue
        for col in metrics:
            text = _fmt(measured["mean"][col], 4)
            mark = marks.get((row.label, col))
            text = f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text
            spread = (measured["std"] or {}).get(col)
            cells.append(text + (f" ± {spread:.4f}" if spread is not None else ""))
        body.append(cells + _size_cells(measured["size"]))
    for rule, values in floor.items():
        body.append([f"{rule} (pixel rule)"] + (["-"] if extra else []) + [_fmt(values.get(c), 4) for c in metrics])
        body[-1] += ["-"] * 3
    return body


def _published_section(table: int, published: dict[str, dict[str, float]], metrics: Sequence[str]) -> list[list[str]]:
    """The paper's rows, as it prints them (its digits), marked "(published)"."""
    digits = PAPER_DECIMALS[table]
    body = []
    for row in TABLES[table][1]:
        values = published.get(row.paper)
        if values is None:
            continue
        cells = [f"{row.label} (published)"] + ([row.modules] if table == 9 else [])
        cells += [_fmt(values.get(c), digits) for c in metrics] + ["-", "-"]
        body.append(cells + [f"{values['time_ms']:.3f} (GPU)" if "time_ms" in values else "-"])
    return body


def _render_table(
    table: int, state: dict[str, Any], datasets: Sequence[str], root: str | os.PathLike[str] | None
) -> tuple[str, dict[str, Any]]:
    """Markdown and JSON of one ablation table from what ``state`` holds so far."""
    title, table_rows = TABLES[table]
    paper_columns, published, pub_note = _published(table, root)
    metrics = [c for c in paper_columns if c != "time_ms"] + ["FA"]
    header = ["Setting"] + (["A/B/C"] if table == 9 else [])
    header += [f"{c} {'↓' if c in LOWER_IS_BETTER else '↑'}" for c in metrics]
    header += ["Params (M)", f"MACs {MAC_SIZE}² (G)", "Time (ms)"]
    planned = [r for r in table_rows if r.variant in state["planned_variants"]]
    sections, json_rows = [], []
    for dataset in datasets:
        rows = _measured_rows(planned, state, dataset, metrics)
        json_rows += rows
        body = _section(table, rows, planned, state["floor"].get(dataset, {}), metrics)
        if dataset == "msrs":
            body += _published_section(table, published, metrics)
        pairs = f"{rows[0]['n_pairs']} of {rows[0]['n_total']} pairs" if rows else "no run evaluated yet"
        name = {"msrs": "MSRS test", "tno": "TNO"}.get(dataset, dataset)
        sections.append(f"### {name} ({pairs})\n\n{pipe_table(header, body)}")
    md = _caption(title, state, datasets, pub_note) + "\n" + "\n".join(sections)
    done = {(r["label"], r["dataset"]) for r in json_rows}
    data = {
        "table": table,
        "title": title,
        "complete": all((row.label, d) in done for row in planned for d in datasets),
        "metrics": metrics,
        "schedule": state["schedule"],
        "seeds": state["seeds"],
        "max_pairs": state["max_pairs"],
        "rows": json_rows,
        "floor": {d: state["floor"].get(d, {}) for d in datasets},
        "published": {"columns": paper_columns, "rows": published, "note": pub_note or None},
        "time": {"size": f"{TIME_SIZE[0]}x{TIME_SIZE[1]}", "device": "cpu", "repeats": state["bench_repeats"]},
    }
    return md, data


def _caption(title: str, state: dict[str, Any], datasets: Sequence[str], pub_note: str) -> str:
    s = state["schedule"]
    seeds = state["seeds"]
    lines = [
        f"## {title}",
        f"Measured rows: every variant trained by `refinefuse ablate` under one schedule "
        f"(`schedule.yaml`: {s['optimizer']}, lr {s['lr']}, {s['epochs']} epochs, batch {s['batch_size']}, "
        f"crop {s['crop']}, loss weight lambda {s['lam']}, seed {s['seed']}, data `{s['data']}`"
        + (f", model overrides {s['model_overrides']}" if s.get("model_overrides") else "")
        + "), evaluated at its last epoch with metrics profile `paper`. This is not the paper's schedule "
        "(SGD, 300 epochs, 256x256 crops): compare the measured rows with each other, not with the published ones.",
        "Best measured value per column **bold**, second <u>underlined</u> (ranked over the measured variant rows "
        "only; pixel-rule and published rows are not ranked). FA (flat-region artefact, lower is better) is not in "
        "the paper.",
        f"Params and MACs: conv/linear layers at {MAC_SIZE}x{MAC_SIZE} (PyTorch's FlopCounterMode). Time: median of "
        f"{state['bench_repeats']} CPU forward passes (PyTorch fp32) at {TIME_SIZE[0]}x{TIME_SIZE[1]} on this "
        "machine; the paper's time (Table 10) is its average on an RTX 4090 GPU.",
    ]
    done = sorted(r["seed"] for r in state["runs"].values() if r.get("variant") == FULL)
    if len(seeds) > 1 and len(done) > 1:
        lines.append(
            f"The full model is the mean ± sample standard deviation over {len(done)} seeds "
            f"({', '.join(map(str, done))}); the other rows are one run each (seed {seeds[0]}): "
            "a difference smaller than the full model's spread is within seed noise."
            + (f" ({len(seeds)} seeds planned; the others have not finished.)" if len(done) < len(seeds) else "")
        )
    elif len(seeds) > 1:
        lines.append(
            f"{len(seeds)} seeds of the full model are planned ({', '.join(map(str, seeds))}), "
            f"{len(done)} finished so far: every row is one run (seed {seeds[0]}) and the seed noise is not "
            "measured yet."
        )
    else:
        lines.append(
            "One run per row (one seed): the seed noise is not measured (`--seeds K` trains the full model K times)."
        )
    if "msrs" in datasets:
        lines.append("The paper's ablations are on MSRS only; the TNO section has no published rows.")
    if pub_note:
        lines.append(f"Note: {pub_note}.")
    return "\n\n".join(lines) + "\n"


def _write_tables(
    tables: Sequence[int],
    state: dict[str, Any],
    datasets: Sequence[str],
    out: Path,
    root: str | os.PathLike[str] | None,
) -> dict[int, dict[str, Path]]:
    paths = {}
    for table in tables:
        md, data = _render_table(table, state, datasets, root)
        paths[table] = {
            "md": write_text(out / f"table{table}.md", md),
            "json": _write_json(out / f"table{table}.json", data),
        }
    return paths


# ----------------------------------------------------------------------------- entry point
def _check_options(datasets: Sequence[str], max_pairs: int | None, bench_repeats: int, threads: int | None) -> None:
    """One-line :class:`InputError` for options no ablation can use, before any work."""
    from .datasets import get_dataset

    if not datasets:
        raise InputError("--datasets: give at least one evaluation dataset (e.g. msrs,tno)")
    for name in datasets:
        get_dataset(name)  # lists the names when unknown
    if max_pairs is not None and max_pairs < 1:
        raise InputError(f"--max-pairs must be at least 1, got {max_pairs}")
    if bench_repeats < 1:
        raise InputError(f"--bench-repeats must be at least 1, got {bench_repeats}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")


def _prepare_out(out: Path, base: TrainConfig, runs: Sequence[Run], resume: bool) -> Path:
    """Check OUT (no planned run there unless resuming; the same schedule when resuming) and
    write ``OUT/schedule.yaml``; returns its path."""
    if not resume:
        taken = [r.name for r in runs if (out / "runs" / r.name).exists()]
        if taken:
            raise InputError(
                f"{out / 'runs' / taken[0]}: run folder exists; pass --resume to continue this ablation "
                "or choose another --out"
            )
    _check_schedule(out, base, resume)
    out.mkdir(parents=True, exist_ok=True)
    return write_text(
        out / "schedule.yaml",
        "# the schedule of every run of this ablation (refinefuse ablate sets model, loss, out and the seed per run)\n"
        + yaml.safe_dump(_schedule_dict(base), sort_keys=False),
    )


def ablate(
    tables: int | str | Sequence[int | str] = "all",
    out: str | os.PathLike[str] = "ablation",
    *,
    schedule: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    resume: bool = False,
    tables_only: bool = False,
    max_pairs: int | None = None,
    seeds: int = 1,
    datasets: Sequence[str] = DEFAULT_DATASETS,
    variants: Sequence[str] | None = None,
    data_root_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    bench_repeats: int = 5,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train, evaluate and tabulate the ablation variants of ``tables`` (see the module docstring).

    Args:
        tables: 8, 9, 10, ``"all"`` or several (``"8,10"``).
        out: the ablation folder.
        schedule: YAML of training settings shared by every run (default
            :func:`default_schedule_path`); ``model``, ``loss``, ``out`` and ``resume`` are set per
            run, ``seed`` is the base seed.
        data: training folder (default: the schedule's ``data``, else MSRS ``train128``).
        resume: continue a killed ablate (finished runs, evaluations and timings are reused).
        tables_only: train and evaluate nothing; write the tables from the finished runs and
            evaluations in ``out`` (implies ``resume``); unfinished rows say "not run yet".
        max_pairs: evaluate an evenly spaced subset of this many pairs per dataset (default all).
        seeds: train the full model with this many seeds (mean ± std in the tables).
        datasets: evaluation datasets (bundled names; default MSRS test and TNO).
        variants: only these keys of :data:`VARIANTS` (quick runs).
        data_root_dir: shared data root (default :func:`refinefuse.paths.data_root`).
        device: evaluation device (training follows the schedule's ``device``; timing is on the CPU).
        bench_repeats: timed CPU forward passes per model (median reported).
        workers: metric evaluation processes (default: the CPUs).
        threads: torch/OpenCV threads of the evaluation and timing steps (default: leave as is;
            training uses the schedule's ``threads``); restored afterwards.
    Returns:
        ``{"tables": {n: {"md", "json"}}, "runs": {run: info with "status"}, "evals": {"run/dataset": info
        with "status"}, "size": {model: info with "status"}, "schedule": Path}``; statuses are
        ``trained``/``resumed``/``reused``, ``evaluated``/``reused`` and ``measured``/``reused``.
    """
    say: Log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    table_list = parse_tables(tables)
    _check_options(datasets, max_pairs, bench_repeats, threads)
    base = load_schedule(schedule, data, data_root_dir)
    if not progress:
        base.progress = False
    runs = plan_runs(table_list, seeds, base.seed, variants)
    out = Path(out)
    schedule_path = _prepare_out(out, base, runs, resume)
    opts = {"data_root_dir": data_root_dir, "device": device, "workers": workers, "progress": progress, "log": say}
    saved_threads = torch.get_num_threads(), cv2.getNumThreads()
    if threads:
        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    try:
        return _ablate_runs(
            table_list,
            runs,
            base,
            out,
            schedule_path,
            datasets,
            max_pairs,
            bench_repeats,
            opts,
            resume or tables_only,
            tables_only,
        )
    finally:  # leave the process's thread settings as they were
        torch.set_num_threads(saved_threads[0])
        cv2.setNumThreads(saved_threads[1])


def _ablate_runs(
    table_list: list[int],
    runs: list[Run],
    base: TrainConfig,
    out: Path,
    schedule_path: Path,
    datasets: Sequence[str],
    max_pairs: int | None,
    bench_repeats: int,
    opts: dict[str, Any],
    resume: bool,
    tables_only: bool = False,
) -> dict[str, Any]:
    """The work of :func:`ablate` once its options are checked: floor, then each run's training,
    evaluation and timing, rewriting the tables after each run (``tables_only``: only what has
    finished)."""
    say: Log = opts["log"]
    root = opts["data_root_dir"]
    state: dict[str, Any] = {
        "schedule": _schedule_dict(base),
        "seeds": [r.seed for r in runs if r.variant.key == FULL] or [base.seed],
        "max_pairs": max_pairs,
        "bench_repeats": bench_repeats,
        "planned_variants": {r.variant.key for r in runs},
        "runs": {},
        "evals": {},
        "size": {},
        "floor": {},
    }
    result: dict[str, Any] = {"runs": {}, "evals": {}, "size": {}, "schedule": schedule_path}
    for dataset in datasets:  # the pixel-wise floor, once per dataset
        info = _evaluate(
            "floor",
            ["max", "mean"],
            dataset,
            out,
            weights=None,
            max_pairs=max_pairs,
            resume=resume,
            opts=opts,
            stored_only=tables_only,
        )
        if info is None:
            continue
        state["floor"][dataset] = info["means"]
        result["evals"][f"floor/{dataset}"] = info
    for i, run in enumerate(runs, 1):
        if tables_only:
            marker = _read_json(out / "runs" / run.name / RUN_MARKER)
            if marker is None or not Path(marker["weights"]).is_file():
                continue
        say(f"refinefuse ablate: run {i}/{len(runs)}: {run.name} ({run.variant.description})")
        info = _train_run(run, base, out, resume, say)
        state["runs"][run.name] = result["runs"][run.name] = info
        weights = Path(info["weights"])
        for dataset in datasets:
            ev = _evaluate(
                run.name,
                [run.variant.model],
                dataset,
                out,
                weights=weights,
                max_pairs=max_pairs,
                resume=resume,
                opts=opts,
                stored_only=tables_only,
            )
            if ev is None:
                continue
            state["evals"][(run.name, dataset)] = result["evals"][f"{run.name}/{dataset}"] = ev
        if run.variant.model not in state["size"]:
            size = _measure(run.variant.model, weights, out, bench_repeats, resume, say, torch.get_num_threads())
            state["size"][run.variant.model] = result["size"][run.variant.model] = size
        result["tables"] = _write_tables(table_list, state, datasets, out, root)
    return result
