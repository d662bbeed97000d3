"""Input checks shared by the baselines (shapes only; files are checked by :mod:`refinefuse.fuse`)."""

from __future__ import annotations

import numpy as np


def as_pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both luminance images as float32 ``(H, W)``; ``ValueError`` on bad shapes."""
    ir = np.asarray(ir, dtype=np.float32)
    vis = np.asarray(vis, dtype=np.float32)
    if ir.ndim != 2 or vis.ndim != 2:
        raise ValueError(f"baselines fuse grey (H, W) images, got shapes {ir.shape} and {vis.shape}")
    if ir.shape != vis.shape:
        raise ValueError(f"size mismatch: ir {ir.shape} vs vis {vis.shape}")
    if ir.size == 0:
        raise ValueError("empty image")
    return np.ascontiguousarray(ir), np.ascontiguousarray(vis)


def finish(fused: np.ndarray) -> np.ndarray:
    """Clip a fused luminance to [0, 1] as float32."""
    return np.clip(fused, 0.0, 1.0).astype(np.float32, copy=False)


def max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Choose-max-absolute rule for detail coefficients (ties take ``a``)."""
    return np.where(np.abs(a) >= np.abs(b), a, b)
