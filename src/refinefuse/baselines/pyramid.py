"""Laplacian pyramid (Burt & Adelson 1983) and the classical LP fusion baseline.

The pyramid is built with ``cv2.pyrDown``/``cv2.pyrUp`` (5x5 binomial kernel) and an
explicit ``dstsize`` of ``ceil(size / 2)`` per level, so odd and tiny sizes work and
reconstruction is exact (up to float rounding): ``reconstruct(laplacian_pyramid(x)) == x``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._checks import as_pair, finish, max_abs


def num_levels(shape: tuple[int, int], levels: int) -> int:
    """Number of downsampling steps actually used: ``levels``, fewer when the image
    reaches 1x1 earlier (a 3x5 image allows 3: 3x5 -> 2x3 -> 1x2 -> 1x1)."""
    h, w = shape
    n = 0
    while n < levels and (h > 1 or w > 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        n += 1
    return n


def _down(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    return cv2.pyrDown(img, dstsize=((w + 1) // 2, (h + 1) // 2))


def _up(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.pyrUp(img, dstsize=(shape[1], shape[0]))


def gaussian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """``[img, down(img), ...]``: ``num_levels + 1`` float32 images, finest first."""
    pyr = [np.asarray(img, dtype=np.float32)]
    for _ in range(num_levels(pyr[0].shape, levels)):
        pyr.append(_down(pyr[-1]))
    return pyr


def laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Detail (band-pass) layers finest first, then the low-pass base layer last."""
    gauss = gaussian_pyramid(img, levels)
    details = [g - _up(g_next, g.shape) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return details + [gauss[-1]]


def reconstruct(pyr: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid`: collapse from the base up."""
    img = pyr[-1]
    for detail in reversed(pyr[:-1]):
        img = detail + _up(img, detail.shape)
    return img


def fuse_pyramids(pyr_ir: list[np.ndarray], pyr_vis: list[np.ndarray], base: np.ndarray) -> np.ndarray:
    """Max-absolute rule on every detail layer, the given fused ``base``; collapsed."""
    details = [max_abs(a, b) for a, b in zip(pyr_ir[:-1], pyr_vis[:-1])]
    return reconstruct(details + [base])


def fuse_lp(ir: np.ndarray, vis: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion: max-absolute detail layers, averaged base layer.

    Args:
        ir, vis: float32 ``(H, W)`` in [0, 1], any size.
        levels: downsampling steps (4: the base is at 1/16 of the input size).
    Returns:
        float32 ``(H, W)`` in [0, 1].
    """
    ir, vis = as_pair(ir, vis)
    pyr_ir, pyr_vis = laplacian_pyramid(ir, levels), laplacian_pyramid(vis, levels)
    return finish(fuse_pyramids(pyr_ir, pyr_vis, 0.5 * (pyr_ir[-1] + pyr_vis[-1])))
