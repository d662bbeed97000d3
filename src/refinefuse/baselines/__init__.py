"""Classical, training-free fusion baselines.

Every baseline is a *grey fuser* on luminance: ``fuse_<name>(ir, vis, **params)`` takes
two float32 ``(H, W)`` images in [0, 1] of any (equal) size and returns the fused float32
``(H, W)`` image in [0, 1]. Colour, medical modes and files are handled once, around any
grey fuser, by :mod:`refinefuse.fuse` (``refinefuse fuse --method NAME``).

=======  ===================================================================
``mean``  pixel-wise average
``max``   pixel-wise maximum
``lp``    Laplacian pyramid: max-absolute details, averaged base
``dwt``   wavelet (PyWavelets ``db2``): max-absolute details, averaged approximation
``gff``   guided-filtering fusion (Li, Kang & Hu 2013)
``mst``   target-enhanced multiscale transform (Chen et al. 2020), re-implemented
=======  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .guided import fuse_gff, guided_filter
from .mst import fuse_mst
from .pixel import fuse_max, fuse_mean
from .pyramid import fuse_lp, laplacian_pyramid, reconstruct
from .wavelet import fuse_dwt

Baseline = Callable[..., np.ndarray]

BASELINES: dict[str, Baseline] = {
    "mean": fuse_mean,
    "max": fuse_max,
    "lp": fuse_lp,
    "dwt": fuse_dwt,
    "gff": fuse_gff,
    "mst": fuse_mst,
}


def register_baseline(name: str) -> Callable[[Baseline], Baseline]:
    """Decorator: register a grey fuser ``fn(ir, vis) -> fused`` (float32 ``(H, W)`` in [0, 1])
    as baseline ``name``; it is then a method of ``refinefuse fuse``, ``reproduce`` and ``bench``."""

    def add(fn: Baseline) -> Baseline:
        if name in BASELINES:
            raise ValueError(f"baseline {name!r} is already registered")
        BASELINES[name] = fn
        return fn

    return add


def list_baselines() -> list[str]:
    """Names of the available baselines, in a fixed order."""
    return list(BASELINES)


def get_baseline(name: str) -> Baseline:
    """The grey fuser of a baseline by name; :class:`InputError` listing the names if unknown."""
    try:
        return BASELINES[name]
    except KeyError:
        raise InputError(f"unknown fusion method '{name}' (choose from refinefuse, {', '.join(BASELINES)})") from None


__all__ = [
    "BASELINES",
    "fuse_dwt",
    "fuse_gff",
    "fuse_lp",
    "fuse_max",
    "fuse_mean",
    "fuse_mst",
    "get_baseline",
    "guided_filter",
    "laplacian_pyramid",
    "list_baselines",
    "register_baseline",
    "reconstruct",
]
