"""Salient-object masks ``S`` for the intensity loss (docs/design.md Sect. 3).

Sources, all returning float32 ``(H, W)`` arrays with values in {0, 1}:

- segmentation labels (MSRS ``label/`` PNGs of class ids): :func:`mask_from_labels`,
  salient classes 1 car, 2 person, 3 bike by default;
- YOLO boxes (``class cx cy w h`` normalised, one box per line): :func:`read_yolo_boxes`
  and :func:`mask_from_boxes` fill the boxes;
- precomputed masks (any image; non-zero = salient): :func:`mask_from_image`;
- nothing: :func:`auto_salient_mask` derives the mask from the infrared image alone.

Automatic rule (for folders with only ``ir/`` and ``vi/``): thermal targets are the
hot, compact regions of the infrared image, so ``S = 1[I > mean(I) + k std(I)]``
(``k = 2`` by default), followed by a 3x3 morphological opening and removal of connected
components smaller than ``min_area`` (a fraction of the image area, default 0.1 %).
The contrast mask ``C`` of the loss still applies everywhere, so a missed object only
loses its "follow the infrared" preference where the infrared image is not already the
higher-contrast source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

__all__ = [
    "MSRS_SALIENT_CLASSES",
    "mask_from_labels",
    "read_yolo_boxes",
    "mask_from_boxes",
    "mask_from_image",
    "auto_salient_mask",
]

#: MSRS segmentation ids counted as salient: 1 car, 2 person, 3 bike.
MSRS_SALIENT_CLASSES = (1, 2, 3)


def mask_from_labels(labels: np.ndarray, classes: Iterable[int] = MSRS_SALIENT_CLASSES) -> np.ndarray:
    """``(H, W)`` integer class map -> float32 {0, 1} mask of ``classes``."""
    if labels.ndim != 2:
        raise ValueError(f"label map must be (H, W), got shape {labels.shape}")
    return np.isin(labels, np.asarray(list(classes))).astype(np.float32)


def read_yolo_boxes(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a YOLO box file as ``(K, 5)`` float32 rows ``class cx cy w h`` (an empty file: K = 0)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read box file ({exc.strerror})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields[:5]]
        except ValueError:
            values = []
        if len(values) != 5:
            raise InputError(f"{path}: line {lineno} is not 'class cx cy w h'")
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def mask_from_boxes(boxes: np.ndarray, shape: tuple[int, int], classes: Iterable[int] | None = None) -> np.ndarray:
    """Fill normalised YOLO boxes ``(K, 5)`` into a float32 {0, 1} mask of ``shape = (H, W)``.

    ``classes`` keeps only those box classes (None: all boxes).
    """
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    if classes is not None:
        boxes = boxes[np.isin(boxes[:, 0].astype(int), np.asarray(list(classes)))]
    for _, cx, cy, bw, bh in boxes:
        x0 = int(np.clip(np.floor((cx - bw / 2) * w), 0, w))
        x1 = int(np.clip(np.ceil((cx + bw / 2) * w), 0, w))
        y0 = int(np.clip(np.floor((cy - bh / 2) * h), 0, h))
        y1 = int(np.clip(np.ceil((cy + bh / 2) * h), 0, h))
        mask[y0:y1, x0:x1] = 1.0
    return mask


def mask_from_image(img: np.ndarray) -> np.ndarray:
    """Precomputed mask image (uint8, grey or RGB) -> float32 {0, 1}; non-zero is salient."""
    if img.ndim == 3:
        img = img.max(axis=2)
    return (img > 0).astype(np.float32)


def auto_salient_mask(ir: np.ndarray, k: float = 2.0, min_area: float = 0.001) -> np.ndarray:
    """Salient mask from the infrared image alone (rule in the module docstring).

    Args:
        ir: float ``(H, W)`` infrared image in [0, 1].
        k: threshold ``mean + k * std``.
        min_area: smallest kept component, as a fraction of ``H * W`` (at least 4 pixels).
    Returns:
        float32 ``(H, W)`` in {0, 1}.
    """
    ir = np.asarray(ir, dtype=np.float32)
    std = float(ir.std())
    if std < 1e-6:  # flat image: nothing stands out
        return np.zeros(ir.shape, np.float32)
    binary = (ir > ir.mean() + k * std).astype(np.uint8)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_pixels = max(4, int(round(min_area * ir.size)))
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[labels].astype(np.float32)
