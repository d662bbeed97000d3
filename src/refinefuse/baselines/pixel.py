"""Pixel-wise baselines: average and maximum of the two luminances."""

from __future__ import annotations

import numpy as np

from ._checks import as_pair, finish


def fuse_mean(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Pixel-wise average. ``(H, W)`` float32 [0, 1] x 2 -> ``(H, W)`` float32 [0, 1]."""
    ir, vis = as_pair(ir, vis)
    return finish(0.5 * (ir + vis))


def fuse_max(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Pixel-wise maximum. ``(H, W)`` float32 [0, 1] x 2 -> ``(H, W)`` float32 [0, 1]."""
    ir, vis = as_pair(ir, vis)
    return finish(np.maximum(ir, vis))
