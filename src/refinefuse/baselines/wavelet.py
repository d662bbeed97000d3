"""Discrete-wavelet-transform fusion baseline (PyWavelets).

Multi-level 2-D DWT of both images; approximation coefficients averaged, every detail
coefficient (H, V, D at every level) chosen by maximum absolute value; inverse DWT and
crop back to the input size (``waverec2`` may return one extra row/column for odd sizes).
"""

from __future__ import annotations

import numpy as np
import pywt

from ._checks import as_pair, finish, max_abs


def fuse_dwt(
    ir: np.ndarray, vis: np.ndarray, wavelet: str = "db2", levels: int = 4, mode: str = "symmetric"
) -> np.ndarray:
    """DWT fusion: averaged approximation, max-absolute details.

    Args:
        ir, vis: float32 ``(H, W)`` in [0, 1], any size.
        wavelet: PyWavelets name (default ``db2``).
        levels: decomposition levels; fewer when the image is too small for them
            (``pywt.dwt_max_level``); an image too small for one level is averaged.
        mode: signal extension mode.
    Returns:
        float32 ``(H, W)`` in [0, 1].
    """
    ir, vis = as_pair(ir, vis)
    h, w = ir.shape
    level = min(levels, pywt.dwt_max_level(min(h, w), pywt.Wavelet(wavelet).dec_len))
    if level < 1:
        return finish(0.5 * (ir + vis))
    c_ir = pywt.wavedec2(ir, wavelet, mode=mode, level=level)
    c_vis = pywt.wavedec2(vis, wavelet, mode=mode, level=level)
    fused = [0.5 * (c_ir[0] + c_vis[0])]
    for bands_ir, bands_vis in zip(c_ir[1:], c_vis[1:]):
        fused.append(tuple(max_abs(a, b) for a, b in zip(bands_ir, bands_vis)))
    return finish(pywt.waverec2(fused, wavelet, mode=mode)[:h, :w])
