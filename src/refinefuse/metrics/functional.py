"""Fusion quality metrics as pure functions.

Every function takes grey images as 2-D float arrays with values 0-255 (the fused image
first, then the two sources where the metric needs them) and returns a Python ``float``.
Each docstring states the convention it follows; the reference implementations are
CDDFuse's ``utils/Evaluator.py`` (Python) and Tang's MATLAB ``Evaluation-for-Image-Fusion``
code (docs/design.md Sect. 5). Results agree with both to float rounding (SSIM and float32
Qabf repeat CDDFuse's float32 arithmetic and give its values bit for bit). VIF filters
separably (OpenCV) instead of with 2-D ``convolve2d`` (about 50x faster, same values to
1e-13), and long element-wise chains run in cache-sized row blocks.

Conventions shared by several metrics:

- ``convention="cddfuse"``: CDDFuse's ``Evaluator`` (the paper's tables, except AG).
- ``convention="tang"``: Tang's MATLAB code (sources read as uint8, ``im2double``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import uniform_filter

__all__ = [
    "entropy",
    "standard_deviation",
    "spatial_frequency",
    "average_gradient",
    "mutual_information",
    "mse",
    "psnr",
    "correlation_coefficient",
    "scd",
    "vifp",
    "vif",
    "qabf",
    "nabf",
    "ssim",
    "structural_similarity",
    "gradient_energy",
    "flat_region_artefact",
    "halo_artefact",
]

_CONVENTIONS = ("cddfuse", "tang")


def _check_convention(convention: str) -> None:
    if convention not in _CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {_CONVENTIONS}")


def _as_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"metrics expect a 2-D grey image, got shape {img.shape}")
    return img.astype(np.float64, copy=False)


def _as_floats(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, a, b = _as_float(fused), _as_float(a), _as_float(b)
    if not f.shape == a.shape == b.shape:
        raise ValueError(f"image sizes differ: fused {f.shape}, a {a.shape}, b {b.shape}")
    return f, a, b


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """``uint8(round(img))`` like the references (clipped, so out-of-range floats do not wrap)."""
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _shannon_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


_BLOCK_ELEMENTS = 16384  # ~128 KiB of float64: long chains of element-wise maths stay in cache


def _row_blocks(shape: tuple[int, ...]) -> list[slice]:
    """Row slices covering an image in cache-sized blocks (only the speed depends on it)."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, shape[1]))
    return [slice(i, min(i + rows, shape[0])) for i in range(0, shape[0], rows)]


# ----------------------------------------------------------------------------- no-reference
def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-bin histogram of ``uint8(round(img))``.

    Same in CDDFuse and in MATLAB's ``entropy`` on uint8 images.
    """
    return _shannon_bits(np.bincount(_as_uint8(_as_float(img)).ravel(), minlength=256))


def standard_deviation(img: np.ndarray) -> float:
    """SD: population standard deviation (divides by ``M*N``)."""
    return float(np.std(_as_float(img)))


def spatial_frequency(img: np.ndarray) -> float:
    """SF: ``sqrt(mean(row differences^2) + mean(column differences^2))`` (CDDFuse and Tang)."""
    f = _as_float(img)
    return float(np.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))


def _gradient(f: np.ndarray, axis: int) -> np.ndarray:
    """``numpy.gradient`` along one axis (spacing 1): central inside, one-sided at the ends."""
    f = np.moveaxis(f, axis, 0)
    g = np.empty_like(f)
    np.subtract(f[2:], f[:-2], out=g[1:-1])
    g[1:-1] /= 2.0
    g[0] = f[1] - f[0]
    g[-1] = f[-1] - f[-2]
    return np.moveaxis(g, 0, axis)


def average_gradient(img: np.ndarray, convention: str = "tang") -> float:
    """AG: mean of ``sqrt((gx^2 + gy^2) / 2)`` with ``numpy.gradient`` derivatives.

    The derivatives are central differences inside and one-sided at the borders (MATLAB's
    ``gradient``). ``convention="tang"`` (used by profile ``paper``) divides the sum by
    ``(M-1)(N-1)`` like Tang's ``AG_evaluation.m``; ``"cddfuse"`` takes the mean over all
    ``M*N`` pixels.
    """
    _check_convention(convention)
    f = _as_float(img)
    gx, gy = _gradient(f, axis=1), _gradient(f, axis=0)
    gx *= gx
    gy *= gy
    gx += gy
    gx /= 2.0
    s = np.sqrt(gx, out=gx)
    if convention == "tang":
        rows, cols = f.shape
        return float(s.sum() / ((rows - 1) * (cols - 1)))
    return float(s.mean())


# ----------------------------------------------------------------------------- information
def _labels(x: np.ndarray) -> np.ndarray:
    """Integer labels, one per distinct value (grey levels 0-255 are their own labels)."""
    flat = x.ravel()
    if flat.min() >= 0 and flat.max() <= 255:
        as_int = flat.astype(np.int64)
        if np.array_equal(as_int, flat):
            return as_int
    return np.unique(flat, return_inverse=True)[1].ravel()


def _mi_nats(x: np.ndarray, y: np.ndarray) -> float:
    """``sklearn.metrics.mutual_info_score(x, y)``: natural log, one label per distinct value."""
    xi, yi = _labels(x), _labels(y)
    ny = int(yi.max()) + 1
    joint = np.bincount(xi * ny + yi).astype(np.float64)
    nz = np.flatnonzero(joint)
    pxy = joint[nz] / xi.size
    px = np.bincount(xi).astype(np.float64) / xi.size
    py = np.bincount(yi).astype(np.float64) / yi.size
    outer = px[nz // ny] * py[nz % ny]
    return max(float((pxy * (np.log(pxy) - np.log(outer))).sum()), 0.0)


def _mi_tang_bits(x: np.ndarray, y: np.ndarray) -> float:
    """Tang's ``mutual_information``: ``H(x) + H(y) - H(x, y)`` in bits on uint8 images.

    Its joint histogram indexes ``uint8(v) + 1``, which saturates at 255 in MATLAB, so
    grey levels 254 and 255 share a joint bin (but not a marginal one).
    """
    xu, yu = _as_uint8(x), _as_uint8(y)
    hx = _shannon_bits(np.bincount(xu.ravel(), minlength=256))
    hy = _shannon_bits(np.bincount(yu.ravel(), minlength=256))
    xj = np.minimum(xu.astype(np.int64) + 1, 255)
    yj = np.minimum(yu.astype(np.int64) + 1, 255)
    hxy = _shannon_bits(np.bincount((xj * 256 + yj).ravel()))
    return hx + hy - hxy


def mutual_information(fused: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """MI: ``MI(F, A) + MI(F, B)``.

    ``"cddfuse"``: ``sklearn.metrics.mutual_info_score`` (natural log, one label per distinct
    value). ``"tang"``: bits, on ``uint8`` images, with Tang's joint-histogram quirk (levels
    254 and 255 merged in the joint histogram only).
    """
    _check_convention(convention)
    f, a, b = _as_floats(fused, a, b)
    mi = _mi_nats if convention == "cddfuse" else _mi_tang_bits
    return mi(f, a) + mi(f, b)


# ----------------------------------------------------------------------------- reference-based
def mse(fused: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """MSE: mean of ``mean((A - F)^2)`` and ``mean((B - F)^2)``.

    ``"cddfuse"``: on the 0-255 values. ``"tang"``: on ``im2double`` images (0-1), i.e. the
    0-255 value divided by ``255^2``.
    """
    _check_convention(convention)
    f, a, b = _as_floats(fused, a, b)
    value = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2.0
    return float(value / 255.0**2 if convention == "tang" else value)


def psnr(fused: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cddfuse") -> float:
    """PSNR in dB with the MSE of :func:`mse`.

    ``"cddfuse"``: ``10 log10(max(F)^2 / MSE)`` on 0-255 values. ``"tang"``:
    ``20 log10(255 / sqrt(MSE))`` with the 0-1 MSE (Tang's ``PSNR_evaluation.m``; the mixed
    scales give values about 48 dB higher than the usual PSNR).
    """
    _check_convention(convention)
    f = _as_float(fused)
    err = mse(fused, a, b, convention=convention)
    with np.errstate(divide="ignore"):
        if convention == "tang":
            return float(20.0 * np.log10(255.0 / np.sqrt(err)))
        return float(10.0 * np.log10(np.max(f) ** 2 / err))


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.einsum("i,i->", x, y))  # single-threaded, no temporary array


def _corr2(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (MATLAB ``corr2``); NaN when either image is constant."""
    xc, yc = (x - x.mean()).ravel(), (y - y.mean()).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(_dot(xc, yc)) / np.sqrt(_dot(xc, xc) * _dot(yc, yc)))


def correlation_coefficient(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CC: mean of the Pearson correlations ``r(A, F)`` and ``r(B, F)`` (CDDFuse and Tang)."""
    f, a, b = _as_floats(fused, a, b)
    return (_corr2(a, f) + _corr2(b, f)) / 2.0


def scd(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD (Aslantas & Bendes 2015): ``corr2(F - B, A) + corr2(F - A, B)``."""
    f, a, b = _as_floats(fused, a, b)
    return _corr2(f - b, a) + _corr2(f - a, b)


# ----------------------------------------------------------------------------- VIF
_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10


def _vif_window_1d(size: int) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', size, size / 5)``.

    The 2-D window is the outer product of this vector with itself. fspecial zeroes
    values below ``eps * max``; for the sizes used (17, 9, 5, 3) the smallest value is
    ``exp(-5.5) * max``, so nothing is zeroed and the window is exactly separable.
    """
    sd = size / 5.0
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sd * sd))
    return g / float(g.sum())


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(kernel1 * kernel1', img, 'valid')`` with a separable symmetric window."""
    h = (kernel.size - 1) // 2
    full = cv2.sepFilter2D(img, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    return full[h : img.shape[0] - h, h : img.shape[1] - h]


def _vifp_terms(
    m1: np.ndarray, e11: np.ndarray, e12: np.ndarray, m2: np.ndarray, sigma2_sq: np.ndarray, low2: np.ndarray
) -> tuple[float, float]:
    """Numerator and denominator of one block of one scale of Sheikh's pixel-domain VIF.

    ``m1, e11, e12``: local E[ref], E[ref^2], E[ref * dist]; ``m2``: local E[dist];
    ``sigma2_sq``, ``low2``: the distorted image's clamped variance and ``sigma2_sq < eps``
    (shared by both sources). The same clamps, in the same order, as ``vifp_mscale.m``;
    both sums use the natural log instead of log10, which only scales them (their ratio is
    unchanged).
    """
    eps = _VIF_EPS
    sigma1_sq = np.maximum(e11 - m1 * m1, 0.0)
    sigma12 = e12 - m1 * m2

    g = sigma12 / (sigma1_sq + eps)
    sv_sq = sigma2_sq - g * sigma12

    low1 = sigma1_sq < eps
    np.copyto(sv_sq, sigma2_sq, where=low1)
    np.copyto(sigma1_sq, 0.0, where=low1)
    np.copyto(sv_sq, 0.0, where=low2)
    np.copyto(g, 0.0, where=low1 | low2)

    np.copyto(sv_sq, sigma2_sq, where=g < 0)
    np.maximum(g, 0.0, out=g)
    np.maximum(sv_sq, eps, out=sv_sq)  # sv_sq(sv_sq <= eps) = eps

    sv_sq += _VIF_SIGMA_NSQ
    g *= g
    g *= sigma1_sq
    g /= sv_sq
    sigma1_sq /= _VIF_SIGMA_NSQ
    return _sum_log1p(g), _sum_log1p(sigma1_sq)


def _sum_log1p(x: np.ndarray) -> float:
    """``sum(log(1 + x))`` for ``x >= 0``, with one log per 8 values (log of their product).

    Equal to the plain sum up to float rounding; the logs are the costly part of VIF.
    Products of 8 stay finite for ``x`` below 1e30 (VIF terms are at most the local
    variance, < 2^14 for 0-255 images); larger values take the plain path.
    """
    y = 1.0 + x.ravel()
    n = y.size - y.size % 8
    if n == 0 or y.max() > 1e30:
        return float(np.log(y).sum())
    p = y[:n]
    for _ in range(3):
        p = p[0::2] * p[1::2]
    return float(np.log(p).sum() + np.log(y[n:]).sum())


def _vifp_many(refs: list[np.ndarray], dist: np.ndarray) -> list[float]:
    """``vifp_mscale(ref, dist)`` for several references sharing one distorted image."""
    if min(dist.shape) < 41:
        raise ValueError(f"VIF needs images of at least 41x41 pixels (4 scales), got {dist.shape[1]}x{dist.shape[0]}")
    # Variances and covariances do not change when a constant is subtracted; centring
    # keeps the E[x^2] - E[x]^2 cancellation small and makes constant images exactly flat.
    refs = [r - r.mean() for r in refs]
    dist = dist - dist.mean()
    num = [0.0] * len(refs)
    den = [0.0] * len(refs)
    for scale in range(1, 5):
        win = _vif_window_1d(2 ** (4 - scale + 1) + 1)
        if scale > 1:
            refs = [np.ascontiguousarray(_filter_valid(r, win)[::2, ::2]) for r in refs]
            dist = np.ascontiguousarray(_filter_valid(dist, win)[::2, ::2])
        mu2 = _filter_valid(dist, win)
        e22 = _filter_valid(dist * dist, win)
        stats = [
            (_filter_valid(ref, win), _filter_valid(ref * ref, win), _filter_valid(ref * dist, win)) for ref in refs
        ]
        for rows in _row_blocks(mu2.shape):
            m2 = mu2[rows]
            sigma2_sq = np.maximum(e22[rows] - m2 * m2, 0.0)
            low2 = sigma2_sq < _VIF_EPS
            for i, (mu1, e11, e12) in enumerate(stats):
                n, d = _vifp_terms(mu1[rows], e11[rows], e12[rows], m2, sigma2_sq, low2)
                num[i] += n
                den[i] += d
    out = []
    for n, d in zip(num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.float64(n) / np.float64(d)
        out.append(1.0 if np.isnan(value) else float(value))
    return out


def vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Sheikh & Bovik's multi-scale pixel-domain VIF of ``dist`` against ``ref``.

    ``vifp_mscale.m`` / CDDFuse's ``compare_viff``: 4 scales, Gaussian windows of size
    17, 9, 5, 3 (sigma = size / 5), 'valid' filtering, decimation by 2 after filtering for
    scales > 1, ``sigma_n^2 = 2``, clamps at 1e-10. A NaN result (e.g. a constant
    reference) is reported as 1.0, as CDDFuse does. Needs images of at least 41x41 pixels.
    """
    return _vifp_many([_as_float(ref)], _as_float(dist))[0]


def vif(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF: ``vifp(A, F) + vifp(B, F)`` (CDDFuse ``VIFF`` and Tang; see :func:`vifp`)."""
    f, a, b = _as_floats(fused, a, b)
    va, vb = _vifp_many([a, b], f)
    return va + vb


# ----------------------------------------------------------------------------- gradient-based
def _sobel_zero_padded(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``conv2(img, h3, 'same')`` and ``conv2(img, h1, 'same')`` (zero padding).

    ``h3 = [-1 0 1; -2 0 2; -1 0 1]`` (x), ``h1 = [1 2 1; 0 0 0; -1 -2 -1]`` (y). OpenCV's
    ``filter2D`` correlates, so the kernels are flipped.
    """
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
    depth = cv2.CV_32F if img.dtype == np.float32 else cv2.CV_64F
    sx = cv2.filter2D(img, depth, h3[::-1, ::-1].astype(img.dtype), borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(img, depth, h1[::-1, ::-1].astype(img.dtype), borderType=cv2.BORDER_CONSTANT)
    return sx, sy


def _qabf_orientation(sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """``alpha = atan(Sy / Sx)``, pi/2 where ``Sx = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha: np.ndarray = np.arctan(sy / sx)
    np.copyto(alpha, math.pi / 2, where=sx == 0)
    return alpha


def _qabf_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Edge preservation ``Q^{XF}`` of Xydeas & Petrovic with the reference's quirks."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.minimum(g_src, g_f) / np.maximum(g_src, g_f)
    # the references set G = gF (not 1) where the strengths are equal
    np.copyto(rel, g_f, where=g_src == g_f)
    ang = 1.0 - np.abs(a_src - a_f) / (math.pi / 2)
    with np.errstate(over="ignore"):
        q_g = 0.9994 / (1.0 + np.exp(-15.0 * (rel - 0.5)))
        q_a = 0.9879 / (1.0 + np.exp(-22.0 * (ang - 0.8)))
    q: np.ndarray = q_g * q_a
    return q


def qabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray, dtype: type[np.floating[Any]] = np.float64) -> float:
    """Qabf (Xydeas & Petrovic 2000), as CDDFuse's ``Qabf`` and Tang's ``analysis_Qabf.m``.

    Sobel responses by zero-padded 'same' convolution, edge strength ``g = |S|`` and
    orientation ``alpha = atan(Sy / Sx)`` (pi/2 where ``Sx = 0``), ``G`` = min/max strength
    ratio (but ``G = gF`` where ``gA == gF``), ``A = 1 - |alphaA - alphaF| / (pi/2)``,
    sigmoids ``0.9994 / (1 + e^(-15(G - 0.5)))`` and ``0.9879 / (1 + e^(-22(A - 0.8)))``,
    weighted by the source edge strengths.

    ``dtype``: float64 as MATLAB; ``np.float32`` repeats CDDFuse's float32 arithmetic
    (its images and Sobel kernels are float32), which reproduces its values exactly.
    """
    f, a, b = _as_floats(fused, a, b)
    sobel = [_sobel_zero_padded(x.astype(dtype)) for x in (a, b, f)]
    weighted = np.empty(f.shape, dtype)
    strength = np.empty(f.shape, dtype)
    for rows in _row_blocks(f.shape):
        (ax, ay), (bx, by), (fx, fy) = ((sx[rows], sy[rows]) for sx, sy in sobel)
        # sqrt(x^2 + y^2) exactly as the references: the gA == gF test below depends on it
        g_a, g_b, g_f = np.sqrt(ax * ax + ay * ay), np.sqrt(bx * bx + by * by), np.sqrt(fx * fx + fy * fy)
        al_f = _qabf_orientation(fx, fy)
        q_af = _qabf_preservation(g_a, _qabf_orientation(ax, ay), g_f, al_f)
        q_bf = _qabf_preservation(g_b, _qabf_orientation(bx, by), g_f, al_f)
        weighted[rows] = q_af * g_a + q_bf * g_b
        strength[rows] = g_a + g_b
    # whole-array sums, in dtype, as the references
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(weighted) / np.sum(strength))


def _sobel_reflect(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tang's ``sobel_fn``: Sobel / 8, mirrored borders (no edge repeat), correlation."""
    gv_k = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8.0
    gh_k = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64) / 8.0
    gv = cv2.filter2D(img, cv2.CV_64F, gv_k, borderType=cv2.BORDER_REFLECT_101)
    gh = cv2.filter2D(img, cv2.CV_64F, gh_k, borderType=cv2.BORDER_REFLECT_101)
    return gv, gh


def nabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nabf: fusion artefacts, Petrovic's measure as modified by Shreyamsha Kumar.

    Tang's ``analysis_nabf.m`` on 0-255 values: Sobel / 8 with mirrored borders, weights
    ``g^1.5`` where ``g >= 2`` else 0.001, ``Q = sqrt(Qg * Qa)`` with
    ``Qg = 0.9999 / (1 + e^(-19(G - 0.5)))`` and ``Qa = 0.9995 / (1 + e^(-22(A - 0.5)))``;
    counts ``(1 - Q)`` only where the fused edge is stronger than both sources'. Lower is
    better.
    """
    f, a, b = _as_floats(fused, a, b)

    def edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gv, gh = _sobel_reflect(img)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.arctan(gv / gh)  # atan(+-inf) = +-pi/2 where gh = 0
        alpha[(gv == 0) & (gh == 0)] = 0.0
        return np.sqrt(gh * gh + gv * gv), alpha

    g_a, al_a = edges(a)
    g_b, al_b = edges(b)
    g_f, al_f = edges(f)

    def preservation(g_src: np.ndarray, al_src: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(g_src > g_f, g_f / g_src, g_src / g_f)
        rel[(g_src == 0) | (g_f == 0)] = 0.0
        ang = np.abs(np.abs(al_src - al_f) - math.pi / 2) * 2 / math.pi
        q_g = 0.9999 / (1.0 + np.exp(-19.0 * (rel - 0.5)))
        q_a = 0.9995 / (1.0 + np.exp(-22.0 * (ang - 0.5)))
        q: np.ndarray = np.sqrt(q_g * q_a)
        return q

    q_af, q_bf = preservation(g_a, al_a), preservation(g_b, al_b)
    w_a = np.where(g_a >= 2.0, g_a**1.5, 0.001)
    w_b = np.where(g_b >= 2.0, g_b**1.5, 0.001)
    artefact = (g_f > g_a) & (g_f > g_b)
    return float(np.sum(artefact * ((1 - q_af) * w_a + (1 - q_bf) * w_b)) / np.sum(w_a + w_b))


# ----------------------------------------------------------------------------- SSIM
def _ssim_stats(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    return uniform_filter(x, size=size), uniform_filter(x * x, size=size)


def _ssim_from_stats(
    ux: np.ndarray, uxx: np.ndarray, uy: np.ndarray, uyy: np.ndarray, uxy: np.ndarray, data_range: float, size: int
) -> float:
    # scikit-image's operations in the same order and precision (so the same values),
    # evaluated in cache-sized row blocks.
    cov_norm = size * size / (size * size - 1)  # sample covariance
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = np.empty_like(ux)
    for rows in _row_blocks(ux.shape):
        mx, my = ux[rows], uy[rows]
        vx = cov_norm * (uxx[rows] - mx * mx)
        vy = cov_norm * (uyy[rows] - my * my)
        vxy = cov_norm * (uxy[rows] - mx * my)
        s[rows] = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    pad = (size - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def _ssim_input(img: np.ndarray, dtype: type) -> np.ndarray:
    return np.asarray(img).astype(dtype, copy=False)


def structural_similarity(
    x: np.ndarray, y: np.ndarray, data_range: float = 2.0, win_size: int = 7, dtype: type = np.float32
) -> float:
    """Mean SSIM of two images, scikit-image 0.19's ``structural_similarity(x, y)`` on float input.

    Its float defaults: ``data_range = 2`` (the float dtype range -1..1, kept here for
    0-255 values as in CDDFuse), a 7x7 uniform window, sample covariance (N / (N - 1)),
    K1 = 0.01, K2 = 0.03, mean over the pixels whose window lies inside the image.
    Computed in ``dtype``: float32 by default, as scikit-image does for the float32 images
    CDDFuse reads (with ``data_range = 2`` the float32 rounding shows in the 5th digit).
    """
    x, y = _as_float(x), _as_float(y)
    if x.shape != y.shape:
        raise ValueError(f"image sizes differ: {x.shape} and {y.shape}")
    x, y = _ssim_input(x, dtype), _ssim_input(y, dtype)
    ux, uxx = _ssim_stats(x, win_size)
    uy, uyy = _ssim_stats(y, win_size)
    return _ssim_from_stats(ux, uxx, uy, uyy, uniform_filter(x * y, size=win_size), data_range, win_size)


def ssim(fused: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 2.0, dtype: type = np.float32) -> float:
    """SSIM: ``SSIM(F, A) + SSIM(F, B)`` as CDDFuse (see :func:`structural_similarity`:
    scikit-image 0.19 float defaults, ``data_range = 2`` on 0-255 values, float32).
    The sum, not the mean, so values can exceed 1."""
    f, a, b = _as_floats(fused, a, b)
    f, a, b = (_ssim_input(x, dtype) for x in (f, a, b))
    size = 7
    uf, uff = _ssim_stats(f, size)
    total = 0.0
    for src in (a, b):
        us, uss = _ssim_stats(src, size)
        total += _ssim_from_stats(uf, uff, us, uss, uniform_filter(f * src, size=size), data_range, size)
    return total


# ----------------------------------------------------------------------------- artefacts
# Not one of the paper's metrics: a measure of texture that the fusion adds where neither
# source has any (the wavy, grainy skies of an under-trained network, docs/metrics.md).


def _sobel_per_pixel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives ``(gx, gy)`` divided by 8 (grey levels per pixel), reflected borders."""
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REFLECT_101)
    return gx, gy


def gradient_energy(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Local gradient energy ``G_sigma * |grad img|^2`` of a float 0-255 ``(H, W)`` image.

    ``|grad|^2 = gx^2 + gy^2`` with the Sobel derivatives divided by 8 (grey levels per
    pixel), reflected borders; ``G_sigma`` a normalised Gaussian window. Returns float64 ``(H, W)``.
    """
    gx, gy = _sobel_per_pixel(_as_float(img))
    energy: np.ndarray = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return energy


def flat_region_artefact(
    fused: np.ndarray, a: np.ndarray, b: np.ndarray, flat: float = 2.0, floor: float = 1.0, sigma: float = 2.0
) -> float:
    """FA: gradient energy that the fused image adds in regions where both sources are flat.

    With ``e_X = gradient_energy(X, sigma)`` and ``e_S = max(e_A, e_B)`` per pixel, the flat
    region is ``R = {e_S < flat^2}`` (both sources vary by less than ``flat`` grey levels
    per pixel there) and::

        FA = sum_R max(0, e_F - e_S) / sum_R max(e_S, floor^2)

    0 when the fused image is no busier than the busier source anywhere in ``R`` (a flat
    pair fused to flat scores 0); 1 when it adds, on average, as much energy as ``R``
    already holds, or as a texture of ``floor`` grey level per pixel where ``R`` is
    perfectly flat. Lower is better. NaN when the sources have no flat region.
    """
    f, a, b = _as_floats(fused, a, b)
    e_s = np.maximum(gradient_energy(a, sigma), gradient_energy(b, sigma))
    region = e_s < flat * flat
    if not region.any():
        return math.nan
    e_f = gradient_energy(f, sigma)[region]
    e_s = e_s[region]
    return float(np.maximum(e_f - e_s, 0.0).sum() / np.maximum(e_s, floor * floor).sum())


def halo_artefact(
    fused: np.ndarray, a: np.ndarray, b: np.ndarray, radius: int = 2, edge: float = 8.0, band: int = 4
) -> float:
    """HA: how far, in grey levels, the fused image leaves both sources' local range near edges.

    The local range at a pixel is ``[lo, hi]``: the minimum of ``min(A, B)`` and the maximum
    of ``max(A, B)`` over the ``(2 radius + 1)``-square window around it. A dark ring around
    a bright object falls below ``lo``, a light halo along a dark roof rises above ``hi``
    (issue 13, section 3). The edge band ``E`` holds the pixels within ``band`` pixels (a
    disc) of a source edge, where either source's Sobel gradient is at least ``edge`` grey
    levels per pixel, and::

        HA = mean_E max(0, lo - F, F - hi)

    0 for every per-pixel blend of the sources (``max``, ``mean``, any weighted average) and
    for a fused image shifted by up to ``radius`` pixels against them; lower is better.
    NaN when neither source has an edge.
    """
    f, a, b = _as_floats(fused, a, b)
    window = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    lo = cv2.erode(np.minimum(a, b), window, borderType=cv2.BORDER_REFLECT_101)
    hi = cv2.dilate(np.maximum(a, b), window, borderType=cv2.BORDER_REFLECT_101)
    edges = (np.maximum(np.hypot(*_sobel_per_pixel(a)), np.hypot(*_sobel_per_pixel(b))) >= edge).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    region = cv2.dilate(edges, disc).astype(bool)
    if not region.any():
        return math.nan
    outside = np.maximum(np.maximum(lo - f, f - hi), 0.0)
    return float(outside[region].mean())
