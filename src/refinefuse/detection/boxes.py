"""Ground-truth boxes of a fused image, from the boxes annotated on each source.

MSRS annotates every pair twice, once on the infrared and once on the visible image
(``boxes_ir`` / ``boxes_vi``, YOLO format ``class cx cy w h``, normalised). An object
seen in both sources is listed in both, with slightly different boxes; a pedestrian in
the dark is often only in ``boxes_ir``. The detection study scores every method's images
(the single sources and each fusion) against ONE label set, the objects present in the
scene: :func:`merge_boxes`, the union of the two lists in which a same-class pair that
overlaps with IoU >= ``iou`` is one object, its box the mean of the two.
"""

from __future__ import annotations

import os

import numpy as np

from ..io import write_text

#: the MSRS detection classes, by YOLO class index
MSRS_CLASSES = ("person", "bicycle", "car")
#: same-class boxes overlapping at least this much are one object
MERGE_IOU = 0.5


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(K, 4)`` centre-size boxes -> ``(K, 4)`` corner boxes (same units)."""
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(K, M)`` of corner boxes ``a (K, 4)`` and ``b (M, 4)``; 0 where a box has no area."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def merge_boxes(first: np.ndarray, second: np.ndarray, iou: float = MERGE_IOU) -> np.ndarray:
    """Union of two YOLO box lists ``(K, 5)`` / ``(M, 5)`` (``class cx cy w h``), duplicates merged.

    Same-class pairs are matched greedily, highest IoU first, each box at most once; a
    matched pair with IoU >= ``iou`` becomes one box, the mean of the two. Unmatched boxes
    of either list are kept. Returns ``(N, 5)`` float64, ``max(K, M) <= N <= K + M``:
    ``first``'s boxes (merged or not) in their order, then ``second``'s unmatched ones.
    """
    first = np.asarray(first, np.float64).reshape(-1, 5)
    second = np.asarray(second, np.float64).reshape(-1, 5)
    out = first.copy()
    taken = np.zeros(len(second), bool)
    if len(first) and len(second):
        overlap = box_iou(xywh_to_xyxy(first[:, 1:]), xywh_to_xyxy(second[:, 1:]))
        overlap[first[:, :1] != second[:, 0][None, :]] = 0.0  # only the same class merges
        used = np.zeros(len(first), bool)
        for flat in np.argsort(-overlap, axis=None, kind="stable"):
            i, j = np.unravel_index(flat, overlap.shape)
            if overlap[i, j] < iou:
                break
            if used[i] or taken[j]:
                continue
            used[i] = taken[j] = True
            out[i, 1:] = (first[i, 1:] + second[j, 1:]) / 2
    return np.concatenate([out, second[~taken]], axis=0)


def format_yolo_boxes(boxes: np.ndarray) -> str:
    """YOLO label text of ``(K, 5)`` boxes: one ``class cx cy w h`` line each (6 decimals)."""
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in np.asarray(boxes).reshape(-1, 5))


def write_yolo_boxes(path: str | os.PathLike[str], boxes: np.ndarray) -> None:
    """Write ``boxes`` as a YOLO label file (empty file: no objects), atomically."""
    write_text(path, format_yolo_boxes(boxes))
