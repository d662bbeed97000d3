"""Metric profiles: which implementation and convention each metric name uses.

- ``paper`` (default): the convention that reproduces the paper's tables (docs/design.md
  Sect. 5): CDDFuse's ``Evaluator`` for every metric except AG, which follows Tang's
  MATLAB code (sum divided by ``(M-1)(N-1)``).
- ``cddfuse``: CDDFuse's ``Evaluator`` for every metric (AG = mean over all pixels).
- ``tang``: Tang's MATLAB ``Evaluation-for-Image-Fusion`` (MI in bits with its histogram
  quirk, MSE on 0-1 images, PSNR = 20 log10(255 / sqrt(MSE)), AG over (M-1)(N-1)), plus
  Nabf.

Each metric is a function ``(fused, a, b) -> float`` of grey float 0-255 images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import InputError
from . import functional as F

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]

#: The paper's table order (Tables 1-3, 5-10).
PAPER_METRICS: tuple[str, ...] = ("VIF", "AG", "SCD", "Qabf", "SF", "EN", "SSIM")
#: Every metric of the CDDFuse Evaluator, in its order.
CDDFUSE_METRICS: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF", "Qabf", "SSIM")
#: Every metric of Tang's MATLAB code that this package implements, in its order.
TANG_METRICS: tuple[str, ...] = ("EN", "MI", "PSNR", "MSE", "SF", "SD", "VIF", "AG", "CC", "SCD", "Qabf", "Nabf")
#: Metrics where a smaller value is better (all others: larger is better).
LOWER_IS_BETTER: set[str] = {"MSE", "Nabf", "FA", "HA", "AE"}
#: Measures of this package outside the papers' metric sets, available in every profile.
EXTRA_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "FA": F.flat_region_artefact,
    "HA": F.halo_artefact,
}


def _fused_only(fn: Callable[..., float], fused: np.ndarray, a: np.ndarray, b: np.ndarray, **kwargs: Any) -> float:
    return fn(fused, **kwargs)


def _on_fused(fn: Callable[..., float], **kwargs: Any) -> MetricFn:
    """Adapt a no-reference metric ``fn(img)`` to the ``(fused, a, b)`` signature (picklable)."""
    return partial(_fused_only, fn, **kwargs)


@dataclass(frozen=True)
class Profile:
    """A named set of metric implementations.

    ``metrics`` maps metric names to ``(fused, a, b) -> float`` functions; ``default`` is
    the metric list used when none is asked for.
    """

    name: str
    description: str
    metrics: Mapping[str, MetricFn] = field(repr=False)
    default: tuple[str, ...]

    def resolve(self, names: str | Sequence[str] | None) -> tuple[str, ...]:
        """Metric names in canonical spelling; ``None`` -> ``default``; ``"all"`` -> every
        metric of the reference (extras such as ``FA`` and ``HA`` only by name).

        Names are matched case-insensitively (``vif``, ``QABF``); an unknown name raises
        :class:`InputError` listing the available ones.
        """
        if names is None:
            return self.default
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if [n.lower() for n in names] == ["all"]:  # the reference's metrics; extras (FA, HA) by name only
            return tuple(k for k in self.metrics if k not in EXTRA_METRICS)
        lookup = {k.lower(): k for k in self.metrics}
        out = []
        for n in names:
            key = lookup.get(n.lower())
            if key is None:
                raise InputError(f"metric '{n}' is not in profile '{self.name}' (available: {', '.join(self.metrics)})")
            if key not in out:
                out.append(key)
        if not out:
            raise InputError("no metrics given")
        return tuple(out)


def _cddfuse_metrics(ag_convention: str) -> dict[str, MetricFn]:
    return {
        "EN": _on_fused(F.entropy),
        "SD": _on_fused(F.standard_deviation),
        "SF": _on_fused(F.spatial_frequency),
        "AG": _on_fused(F.average_gradient, convention=ag_convention),
        "MI": F.mutual_information,
        "MSE": F.mse,
        "CC": F.correlation_coefficient,
        "PSNR": F.psnr,
        "SCD": F.scd,
        "VIF": F.vif,
        "Qabf": partial(F.qabf, dtype=np.float32),  # CDDFuse computes it in float32
        "SSIM": F.ssim,
    }


def _tang_metrics() -> dict[str, MetricFn]:
    return {
        "EN": _on_fused(F.entropy),
        "MI": partial(F.mutual_information, convention="tang"),
        "PSNR": partial(F.psnr, convention="tang"),
        "MSE": partial(F.mse, convention="tang"),
        "SF": _on_fused(F.spatial_frequency),
        "SD": _on_fused(F.standard_deviation),
        "VIF": F.vif,
        "AG": _on_fused(F.average_gradient, convention="tang"),
        "CC": F.correlation_coefficient,
        "SCD": F.scd,
        "Qabf": F.qabf,
        "Nabf": F.nabf,
    }


def _paper_metrics() -> dict[str, MetricFn]:
    metrics = _cddfuse_metrics("tang")
    # Order: the paper's table columns first, then the remaining Evaluator metrics.
    return {k: metrics[k] for k in PAPER_METRICS + tuple(k for k in CDDFUSE_METRICS if k not in PAPER_METRICS)}


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        "paper",
        "CDDFuse's Evaluator with Tang's AG: reproduces the paper's tables",
        _paper_metrics(),
        PAPER_METRICS,
    ),
    "cddfuse": Profile("cddfuse", "CDDFuse's utils/Evaluator.py", _cddfuse_metrics("cddfuse"), CDDFUSE_METRICS),
    "tang": Profile("tang", "Tang's MATLAB Evaluation-for-Image-Fusion", _tang_metrics(), TANG_METRICS),
}


for _profile in PROFILES.values():
    _profile.metrics.update(EXTRA_METRICS)  # type: ignore[attr-defined]  # plain dicts


def register_metric(name: str, fn: MetricFn, *, lower_is_better: bool = False) -> MetricFn:
    """Add a metric ``fn(fused, a, b) -> float`` (grey float 0-255 images) to every profile,
    usable by name (``evaluate(..., metrics="NAME")``, ``refinefuse eval --metrics``); it is
    not in any profile's default list. Returns ``fn``."""
    if any(name.lower() == k.lower() for k in PROFILES["paper"].metrics):
        raise ValueError(f"metric {name!r} already exists")
    EXTRA_METRICS[name] = fn
    for profile in PROFILES.values():
        profile.metrics[name] = fn  # type: ignore[index]  # plain dicts
    if lower_is_better:
        LOWER_IS_BETTER.add(name)
    return fn


def get_profile(name: str | Profile) -> Profile:
    """Profile by name (``paper``, ``cddfuse``, ``tang``); :class:`InputError` if unknown."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"unknown metric profile '{name}' (available: {', '.join(PROFILES)})") from None
