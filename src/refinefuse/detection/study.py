"""``refinefuse detect``: does fusion help a detector? (the paper's Table 4 and Fig. 6, on MSRS)

For each method (``ir`` and ``vis``: the single source; any fusion method of
:mod:`refinefuse.methods`) the study

1. makes that method's images of the MSRS training and test pairs, fusing through the same
   code as ``refinefuse fuse``;
2. trains one detector (Ultralytics YOLO, :mod:`.yolo`) per method and seed, with identical
   settings (:class:`DetectorSettings`);
3. scores each on the test images: mAP@0.5 and mAP@[0.5,0.95] per class and overall;
4. writes ``table.md`` / ``table.json`` (mean ± sample std over seeds, then the paper's
   Table 4 rows marked "(published, M3FD)") and ``detections.jpg`` (one night test pair, each
   method's detections).

Choices (docs/detection.md):

- Labels: one set for every method, the objects in the scene: the union of the boxes
  annotated on the infrared and on the visible image, same-class duplicates (IoU >= 0.5)
  merged (:func:`.boxes.merge_boxes`).
- Splits: ``msrs/train128`` (1083 pairs, whole frames at 128x128) gives train and
  validation (every 10th pair by name); ``msrs/test`` (361 pairs, never used to train the
  fusion network) is the test set. Test sources are first resized to the training images'
  size, the same way (whole frame, cv2 INTER_AREA), then fused at that size, so train and
  test images are alike.
- Runs go seed by seed (all methods with seed 0, then seed 1, ...), so a partial study is
  balanced; a finished run is reused (``resume``), an unfinished one is trained again.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..data.masks import read_yolo_boxes
from ..errors import InputError
from ..io import Pair, evenly_spaced, pair_folders, read_image, write_image, write_text
from ..methods import check_method, resolve_device
from ..paths import dataset_dir
from ..published import published_detection
from .boxes import MSRS_CLASSES, merge_boxes, write_yolo_boxes
from .yolo import DetectorSettings, base_yaml, check_detector

#: YOLO class index -> name, the detector's classes
CLASS_NAMES = dict(enumerate(MSRS_CLASSES))
#: the single-source "methods": the image itself
SOURCE_METHODS = ("ir", "vis")
DEFAULT_METHODS = ("ir", "vis", "max", "mean", "refinefuse")
SPLITS = ("train", "val", "test")
#: every VAL_EVERY-th training pair (sorted by name) is validation
VAL_EVERY = 10
#: the night test pair of the figure (a pedestrian seen only in infrared, cars, a cyclist)
FIGURE_PAIR = "00828N"
RESULT = "result.json"
#: the paper's Table 4 classes (M3FD) and ours (MSRS), column by column
PAPER_CLASSES = ("People", "Car", "Bus")
TABLE_CLASSES = ("person", "car", "bicycle")

Log = Callable[[str], None]


@dataclass(frozen=True)
class DetectConfig:
    """Everything ``refinefuse detect`` does; the one config object of the study."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 3
    seed: int = 0  #: first seed; runs use seed, seed + 1, ...
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    weights: str | None = None  #: fusion network checkpoint (default: the shipped weights)
    device: str = "auto"
    max_train: int | None = None  #: use only this many training pairs (tests, quick looks)
    max_test: int | None = None
    threads: int | None = None  #: torch threads while training (default: every CPU); not part of a run's key


# ----------------------------------------------------------------------------- data
def _msrs_folders(root: str | os.PathLike[str] | None) -> dict[str, Path]:
    folders = {
        "train_ir": dataset_dir("msrs/train128/ir", root),
        "train_vis": dataset_dir("msrs/train128/vi", root),
        "train_boxes_ir": dataset_dir("msrs/train128/boxes_ir", root),
        "train_boxes_vis": dataset_dir("msrs/train128/boxes_vi", root),
        "test_ir": dataset_dir("msrs/test/ir", root),
        "test_vis": dataset_dir("msrs/test/vi", root),
        "test_boxes_ir": dataset_dir("msrs/test/boxes_ir", root),
        "test_boxes_vis": dataset_dir("msrs/test/boxes_vi", root),
    }
    for path in folders.values():
        if not path.is_dir():
            raise InputError(f"{path}: no such folder (detect needs the MSRS boxes; see ../shared/README.md)")
    return folders


def _subset(pairs: list[Pair], n: int | None) -> list[Pair]:
    if n is not None and n < VAL_EVERY:
        raise InputError(f"use at least {VAL_EVERY} pairs, got {n}")
    return evenly_spaced(pairs, n)


def split_pairs(train: list[Pair], test: list[Pair]) -> dict[str, list[Pair]]:
    """``{"train", "val", "test"}`` pairs: every :data:`VAL_EVERY`-th training pair is validation."""
    return {
        "train": [p for i, p in enumerate(train) if i % VAL_EVERY != VAL_EVERY - 1],
        "val": [p for i, p in enumerate(train) if i % VAL_EVERY == VAL_EVERY - 1],
        "test": list(test),
    }


def _resized_sources(pairs: Sequence[Pair], folder: Path, size: tuple[int, int], progress: bool) -> list[Pair]:
    """The pairs resized to ``size`` (W, H) like ``train128`` (whole frame, INTER_AREA), as PNGs in ``folder``."""
    out = []
    for pair in tqdm(pairs, desc="resize test sources", unit="pair", disable=not progress, leave=False):
        paths = {}
        for slot, src in (("ir", pair.ir), ("vi", pair.vis)):
            dst = folder / slot / f"{pair.name}.png"
            if not dst.is_file():
                img = read_image(src)
                write_image(dst, cv2.resize(img, size, interpolation=cv2.INTER_AREA))
            paths[slot] = dst
        out.append(Pair(pair.name, paths["ir"], paths["vi"]))
    return out


def write_labels(pairs: Sequence[Pair], boxes_ir: Path, boxes_vis: Path, folder: Path) -> int:
    """Merged labels (:func:`merge_boxes`) of ``pairs`` as ``folder/<name>.txt``; returns the object count."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for pair in pairs:
        found = [p / f"{pair.name}.txt" for p in (boxes_ir, boxes_vis)]
        ir, vis = (read_yolo_boxes(p) if p.is_file() else np.zeros((0, 5), np.float32) for p in found)
        merged = merge_boxes(ir, vis)
        write_yolo_boxes(folder / f"{pair.name}.txt", merged)
        count += len(merged)
    return count


def _source_images(pairs: Sequence[Pair], slot: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        dst = folder / f"{pair.name}.png"
        if not dst.is_file():
            write_image(dst, read_image(pair.ir if slot == "ir" else pair.vis))


def method_images(method: str, splits: dict[str, list[Pair]], dataset: Path, cfg: DetectConfig, progress: bool) -> None:
    """``dataset/images/<split>/<name>.png`` for every pair: the source itself (``ir``,
    ``vis``) or the pair fused by ``method`` (through :func:`refinefuse.reproduce.fuse_missing`,
    the same code as ``refinefuse fuse``; a folder fused with other weights is refused)."""
    from ..reproduce import fuse_missing

    for split, pairs in splits.items():
        folder = dataset / "images" / split
        if method in SOURCE_METHODS:
            _source_images(pairs, method, folder)
        else:
            fuse_missing(
                pairs, folder, method, mode="ir-vis", weights=cfg.weights, device=cfg.device, progress=progress
            )


def _data_yaml(dataset: Path, names: dict[int, str]) -> Path:
    lines = [f"path: {json.dumps(str(dataset.resolve()))}"]
    lines += [f"{split}: images/{split}" for split in SPLITS]
    lines += ["names:"] + [f"  {i}: {n}" for i, n in names.items()]
    return write_text(dataset / "data.yaml", "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- runs
def _run_key(cfg: DetectConfig, method: str, seed: int, n_pairs: dict[str, int]) -> dict[str, Any]:
    return {"method": method, "seed": seed, "detector": cfg.detector.key(), "pairs": n_pairs, "weights": cfg.weights}


def _read_result(run_dir: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        result = json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("key") == key and (run_dir / "detector.safetensors").is_file() else None


def train_and_score(
    method: str, seed: int, data_yaml: Path, run_dir: Path, cfg: DetectConfig, key: dict[str, Any], device: str
) -> dict[str, Any]:
    """Train the detector of ``method`` with ``seed``, score it on the test split, save it and its result."""
    from .yolo import save_detector, score_detector, train_detector

    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run starts again
    start = time.perf_counter()
    model = train_detector(data_yaml, run_dir, cfg.detector, CLASS_NAMES, seed, device, cfg.threads)
    train_s = time.perf_counter() - start
    scores = score_detector(model, data_yaml, cfg.detector.imgsz, CLASS_NAMES, device)
    save_detector(model, run_dir / "detector.safetensors", base_yaml(cfg.detector.detector))
    result = {"key": key, **scores, "train_seconds": round(train_s, 1), "best_epoch": _best_epoch(run_dir)}
    write_text(run_dir / RESULT, json.dumps(result, indent=2) + "\n")
    return result


def _best_epoch(run_dir: Path) -> int | None:
    """The epoch Ultralytics kept (best fitness = 0.1 mAP@0.5 + 0.9 mAP@[0.5,0.95] on val)."""
    import csv

    try:
        rows = list(csv.DictReader((run_dir / "results.csv").read_text().splitlines()))
    except OSError:
        return None
    keys = [k for k in rows[0] if "mAP50(B)" in k] if rows else []
    keys95 = [k for k in rows[0] if "mAP50-95(B)" in k] if rows else []
    if not keys or not keys95:
        return None

    def fitness(r: dict[str, str]) -> float:
        return 0.1 * float(r[keys[0]]) + 0.9 * float(r[keys95[0]])

    best = max(rows, key=fitness)
    return int(float(best["epoch"]))


# ----------------------------------------------------------------------------- table
def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: seeds and, per metric and class, ``[mean, std or None]`` over seeds (in %)."""
    rows: dict[str, dict[str, Any]] = {}
    for method, runs in results.items():
        if not runs:
            continue
        row: dict[str, Any] = {"seeds": [r["key"]["seed"] for r in runs]}
        for metric in ("map50", "map"):
            row[metric] = {}
            for cls in (*TABLE_CLASSES, "all"):
                vals = [100 * r[metric][cls] for r in runs if r[metric].get(cls) is not None]
                row[metric][cls] = list(_mean_std(vals)) if vals else None
        row["train_seconds"] = sum(r["train_seconds"] for r in runs)
        rows[method] = row
    return rows


def _cell(value: list[float | None] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def render_table(rows: dict[str, dict[str, Any]], published: dict[str, list[float]], caption: str) -> str:
    head = ["Method", "seeds"]
    for metric in ("mAP@0.5", "mAP@[0.5,0.95]"):
        head += [f"{metric} {c}" for c in ("person", "car", "bicycle (paper: bus)", "all")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {
        (m, c): max((r[m][c][0] for r in rows.values() if r[m][c] is not None), default=None)
        for m in ("map50", "map")
        for c in (*TABLE_CLASSES, "all")
    }
    for method, row in rows.items():
        cells = [method, str(len(row["seeds"]))]
        for metric in ("map50", "map"):
            for cls in (*TABLE_CLASSES, "all"):
                text = _cell(row[metric][cls])
                bold = row[metric][cls] is not None and len(rows) > 1 and row[metric][cls][0] == best[(metric, cls)]
                cells.append(f"**{text}**" if bold else text)
        lines.append("| " + " | ".join(cells) + " |")
    for method, values in published.items():
        cells = [f"{method} (published, M3FD)", "–"] + [f"{v:.1f}" for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return caption + "\n\n" + "\n".join(lines) + "\n"


def _caption(cfg: DetectConfig, n_pairs: dict[str, int], objects: dict[str, int], done: int, planned: int) -> str:
    d = cfg.detector
    return (
        f"Detection on MSRS (paper Table 4 protocol on other data): {base_yaml(d.detector)} trained from "
        f"{'the given weights' if d.detector.endswith('.safetensors') else 'scratch'} on each method's images, "
        f"{d.epochs} epochs, {d.imgsz} px, batch {d.batch}, {d.optimizer} lr {d.lr0}, identical for all; "
        f"train {n_pairs['train']} / val {n_pairs['val']} pairs of msrs/train128, test {n_pairs['test']} "
        f"msrs/test pairs resized to the training size ({objects['test']} test objects: union of the infrared "
        "and visible boxes, duplicates merged). Values in %: mean ± sample std over seeds; best measured value "
        f"in bold. Runs finished: {done} of {planned}. The published rows are the paper's Table 4 (M3FD, "
        "YOLOv5s pretrained on COCO, 640 px, 100 epochs; classes People, Car, Bus): other data, other "
        "classes, for orientation only."
    )


# ----------------------------------------------------------------------------- figure
CLASS_COLOURS = {0: (255, 60, 60), 1: (60, 220, 60), 2: (60, 140, 255)}  # person red, bicycle green, car blue


def draw_boxes(img: np.ndarray, boxes: np.ndarray, names: Sequence[str] = MSRS_CLASSES) -> np.ndarray:
    """RGB copy of ``img`` with normalised corner boxes ``(K, 5 or 6)`` (class x0 y0 x1 y1 [conf]) drawn."""
    out = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    h, w = out.shape[:2]
    thick = max(1, min(h, w) // 200)
    for row in boxes:
        c = int(row[0])
        x0, y0, x1, y1 = (int(round(v)) for v in (row[1] * w, row[2] * h, row[3] * w, row[4] * h))
        colour = CLASS_COLOURS.get(c, (255, 255, 0))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        label = names[c] if c < len(names) else str(c)
        if len(row) > 5:
            label += f" {row[5]:.2f}"
        cv2.putText(out, label, (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out


def detection_figure(
    out: Path,
    pair: Pair,
    labels: Path,
    methods: Sequence[str],
    out_dir: Path,
    cfg: DetectConfig,
    device: str,
) -> Path | None:
    """Figure of ``pair`` at full size: the labels on the visible image, then each method's
    image (full size, fused by the same fuser) with the detections of its first-seed detector,
    which ran on the method's training-size test image. Methods without a detector are left out."""
    from ..fuse import fuse_named, read_pair
    from ..methods import get_fuser
    from ..reproduce import montage
    from .boxes import xywh_to_xyxy
    from .yolo import load_detector, predict_boxes

    ir, vis = read_pair(pair)
    truth = read_yolo_boxes(labels)
    panels = [
        ("labels (ir + vis boxes)", draw_boxes(vis, np.concatenate([truth[:, :1], xywh_to_xyxy(truth[:, 1:])], 1)))
    ]
    for method in methods:
        detector = out_dir / "runs" / f"{method}-seed{cfg.seed}" / "detector.safetensors"
        small = out_dir / "datasets" / method / "images" / "test" / f"{pair.name}.png"
        if not detector.is_file() or not small.is_file():
            continue
        if method == "ir":
            full = ir
        elif method == "vis":
            full = vis
        else:
            full = fuse_named(ir, vis, get_fuser(method, weights=cfg.weights, device=device), pair.ir, mode="ir-vis")
        found = predict_boxes(load_detector(detector), read_image(small), cfg.detector.imgsz, device)
        panels.append((f"{method}: {len(found)} found", draw_boxes(full, found)))
    if len(panels) == 1:
        return None
    return write_image(out, montage(panels, columns=3))


# ----------------------------------------------------------------------------- study
def _check(cfg: DetectConfig) -> None:
    if not cfg.methods:
        raise InputError("--methods: give at least one method")
    for method in cfg.methods:
        if method not in SOURCE_METHODS:
            check_method(method)
    if cfg.seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {cfg.seeds}")
    if cfg.detector.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {cfg.detector.epochs}")
    if cfg.detector.imgsz < 32 or cfg.detector.imgsz % 32:
        raise InputError(f"--imgsz must be a multiple of 32 (YOLO's stride), got {cfg.detector.imgsz}")
    base_yaml(cfg.detector.detector)  # refuses .pt, checks a .safetensors header (before the extra is needed)


def detect(
    out: str | os.PathLike[str],
    cfg: DetectConfig | None = None,
    *,
    resume: bool = True,
    tables_only: bool = False,
    data_root_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the detection study into ``out`` (see the module docstring).

    Returns ``{"table": path, "json": path, "figure": path or None, "rows": aggregate}``.
    ``tables_only`` trains nothing: the table and figure from the runs finished in ``out``.
    """
    cfg = cfg or DetectConfig()
    say = log or (lambda _msg: None)
    _check(cfg)
    if not progress:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # read when Ultralytics is first imported
    check_detector(cfg.detector.detector)
    device = str(resolve_device(cfg.device))
    out_dir = Path(out)
    folders = _msrs_folders(data_root_dir)
    train = _subset(pair_folders(folders["train_ir"], folders["train_vis"]), cfg.max_train)
    test_full = _subset(pair_folders(folders["test_ir"], folders["test_vis"]), cfg.max_test)
    size = read_image(train[0].ir).shape[1::-1]
    test = _resized_sources(test_full, out_dir / "sources" / "test", size, progress)
    splits = split_pairs(train, test)
    n_pairs = {s: len(p) for s, p in splits.items()}
    objects = {}
    for split, pairs in splits.items():
        which = "test" if split == "test" else "train"
        objects[split] = write_labels(
            pairs, folders[f"{which}_boxes_ir"], folders[f"{which}_boxes_vis"], out_dir / "labels" / split
        )
    say(
        "refinefuse detect: train / val / test: "
        + " / ".join(f"{n_pairs[s]} pairs ({objects[s]} objects)" for s in SPLITS)
        + f"; {len(cfg.methods)} methods x {cfg.seeds} seeds"
    )

    data = {}
    for method in cfg.methods:
        dataset = out_dir / "datasets" / method
        if not tables_only:
            method_images(method, splits, dataset, cfg, progress)
        for split in SPLITS:
            shutil.copytree(out_dir / "labels" / split, dataset / "labels" / split, dirs_exist_ok=True)
        data[method] = _data_yaml(dataset, CLASS_NAMES)

    plan = [(method, cfg.seed + k) for k in range(cfg.seeds) for method in cfg.methods]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in cfg.methods}
    for i, (method, seed) in enumerate(plan, 1):
        run_dir = out_dir / "runs" / f"{method}-seed{seed}"
        key = _run_key(cfg, method, seed, n_pairs)
        result = _read_result(run_dir, key) if resume else None
        if result is not None:
            say(f"run {i}/{len(plan)}: {run_dir.name}: finished already (reused)")
        elif tables_only:
            continue
        else:
            say(f"run {i}/{len(plan)}: {run_dir.name}: training {cfg.detector.epochs} epochs")
            result = train_and_score(method, seed, data[method], run_dir, cfg, key, device)
            say(
                f"{run_dir.name}: mAP@0.5 {100 * result['map50']['all']:.1f}, "
                f"mAP@[0.5,0.95] {100 * result['map']['all']:.1f} ({result['train_seconds']:.0f} s)"
            )
        results[method].append(result)
        _write_outputs(out_dir, cfg, results, n_pairs, objects, len(plan), data_root_dir)

    paths = _write_outputs(out_dir, cfg, results, n_pairs, objects, len(plan), data_root_dir)
    source = next((p for p in test_full if p.name == FIGURE_PAIR), test_full[0])
    paths["figure"] = detection_figure(
        out_dir / "detections.jpg",
        source,
        out_dir / "labels" / "test" / f"{source.name}.txt",
        cfg.methods,
        out_dir,
        cfg,
        device,
    )
    return paths


def _write_outputs(
    out_dir: Path,
    cfg: DetectConfig,
    results: dict[str, list[dict[str, Any]]],
    n_pairs: dict[str, int],
    objects: dict[str, int],
    planned: int,
    root: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    rows = aggregate(results)
    done = sum(len(r) for r in results.values())
    try:
        published = published_detection(root)
    except InputError:
        published = {}
    caption = _caption(cfg, n_pairs, objects, done, planned)
    table = write_text(out_dir / "table.md", render_table(rows, published, caption))
    record = {
        "config": {**asdict(cfg), "methods": list(cfg.methods)},
        "pairs": n_pairs,
        "objects": objects,
        "rows": rows,
        "runs": {m: r for m, r in results.items()},
        "published_m3fd": published,
        "runs_finished": done,
        "runs_planned": planned,
    }
    js = write_text(out_dir / "table.json", json.dumps(record, indent=2) + "\n")
    return {"table": table, "json": js, "figure": None, "rows": rows}
