"""Guided-filtering fusion, GFF (Li, Kang & Hu, IEEE TIP 2013; the paper's ref. [33]).

Steps and settings follow the GFF paper (Sect. II-III):

1. Two-scale decomposition: base ``B = I * Z`` with a 31x31 average filter, detail ``D = I - B``.
2. Saliency ``S = |I * L| * g``: 3x3 Laplacian, then a Gaussian with r_g = 5 (11x11), sigma_g = 5.
3. Binary weight maps ``P_n = [S_n == max_k S_k]`` (ties go to the infrared image).
4. Weight maps refined by the guided filter with the source image as guide:
   base ``G_{r1=45, eps1=0.3}``, detail ``G_{r2=7, eps2=1e-6}``, for images in [0, 1].
5. Weights normalised to sum to one per pixel; ``F = sum W_B B + sum W_D D``.

Choices the paper leaves open: filters use replicated borders; the guided filter's box
means are taken over the part of the window inside the image (as in He et al.'s
reference ``boxfilter``), which also makes any image size work; refined weights are
clipped to [0, 1] before normalising (the guided filter can overshoot slightly, and a
negative weight has no meaning as a mixing proportion). Computation is in float64 because
``eps2 = 1e-6`` is below float32's cancellation error in ``E[I^2] - E[I]^2``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._checks import as_pair, finish

_EPS = 1e-12


def box_mean(img: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the ``(2r+1)^2`` window clipped to the image; float64, same shape."""
    k = (2 * radius + 1, 2 * radius + 1)
    total = cv2.boxFilter(img, cv2.CV_64F, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(
        np.ones_like(img, dtype=np.float64), cv2.CV_64F, k, normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    return total / count


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), vectorised with box filters; float64 ``(H, W)``."""
    guide = guide.astype(np.float64)
    src = src.astype(np.float64)
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def saliency(img: np.ndarray, gauss_radius: int = 5, gauss_sigma: float = 5.0) -> np.ndarray:
    """GFF saliency: Gaussian-smoothed absolute 3x3 Laplacian, float32 ``(H, W)``."""
    lap = np.abs(cv2.Laplacian(img, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REPLICATE))
    k = 2 * gauss_radius + 1
    return cv2.GaussianBlur(lap, (k, k), gauss_sigma, borderType=cv2.BORDER_REPLICATE)


def _normalised(w_ir: np.ndarray, w_vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w_ir, w_vis = np.clip(w_ir, 0.0, 1.0), np.clip(w_vis, 0.0, 1.0)
    total = w_ir + w_vis
    flat = total < _EPS  # both weights vanish: split evenly
    total = np.where(flat, 1.0, total)
    return np.where(flat, 0.5, w_ir / total), np.where(flat, 0.5, w_vis / total)


def fuse_gff(
    ir: np.ndarray,
    vis: np.ndarray,
    base_size: int = 31,
    r1: int = 45,
    eps1: float = 0.3,
    r2: int = 7,
    eps2: float = 1e-6,
) -> np.ndarray:
    """Guided-filtering fusion (GFF) with the paper's parameters as defaults.

    Args:
        ir, vis: float32 ``(H, W)`` in [0, 1], any size.
        base_size: side of the average filter of the two-scale decomposition.
        r1, eps1: guided filter of the base-layer weights.
        r2, eps2: guided filter of the detail-layer weights.
    Returns:
        float32 ``(H, W)`` in [0, 1].
    """
    ir, vis = as_pair(ir, vis)
    base_ir = cv2.blur(ir, (base_size, base_size), borderType=cv2.BORDER_REPLICATE)
    base_vis = cv2.blur(vis, (base_size, base_size), borderType=cv2.BORDER_REPLICATE)
    p_ir = (saliency(ir) >= saliency(vis)).astype(np.float64)
    p_vis = 1.0 - p_ir
    wb_ir, wb_vis = _normalised(guided_filter(ir, p_ir, r1, eps1), guided_filter(vis, p_vis, r1, eps1))
    wd_ir, wd_vis = _normalised(guided_filter(ir, p_ir, r2, eps2), guided_filter(vis, p_vis, r2, eps2))
    fused = wb_ir * base_ir + wb_vis * base_vis + wd_ir * (ir - base_ir) + wd_vis * (vis - base_vis)
    return finish(fused)
