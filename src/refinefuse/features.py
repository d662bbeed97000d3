"""Feature visualisation of one pair (paper Fig. 11): ``refinefuse features``.

:func:`capture_features` runs a :class:`~refinefuse.models.RefineFuse` once with forward
hooks and keeps these maps (``(C, h, w)``, cropped to the input's extent at that scale):

====================  =====================================================================
key                   module (what the paper's Fig. 11 calls it)
====================  =====================================================================
``F1_ir``/``F1_vis``  level-1 encoder conv of each modality (features of the first layer)
``F1_fused``          level-1 fusion (SFIM): the fused branch at level 1
``F3_ir``/``F3_vis``  level-3 encoder conv of each modality (features of the third layer)
``F3_fused``          level-3 fusion (PSIM): the fused branch at level 3
``SFIM``              the level-2 SFIM, the shallow input of FIM
``PSIM``              the deepest PSIM (level 4 in the paper's network)
``FIM``               FIM: the deep decoder output joined with the level-2 SFIM output
====================  =====================================================================

A map a model does not have (fewer levels, a module replaced by concatenation + conv) is
left out and its panel says so. :func:`reduce_map` turns ``C`` channels into one map:
``"pca"`` (default) projects every pixel's feature vector on the first principal component
over the channels, the direction of largest variance, with its sign chosen to correlate
positively with the channel mean (PCA's sign is arbitrary); ``"mean"`` is the channel mean,
which mixes channels of opposite sign and tends to look flatter. Each map is shown with its
1st-99th percentile stretched to the colour scale (viridis). :func:`feature_figure` draws
the inputs and the fused output, then the nine maps as panels (a)-(i), with matplotlib's Agg
canvas (no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .models import RefineFuse

__all__ = ["PANELS", "capture_features", "reduce_map", "feature_figure"]

#: panel key -> title, in the figure's order (a)-(i)
PANELS: dict[str, str] = {
    "F1_ir": "(a) level 1, infrared",
    "F1_vis": "(b) level 1, visible",
    "F1_fused": "(c) level 1, fused (SFIM)",
    "F3_ir": "(d) level 3, infrared",
    "F3_vis": "(e) level 3, visible",
    "F3_fused": "(f) level 3, fused (PSIM)",
    "SFIM": "(g) SFIM output (level 2)",
    "PSIM": "(h) PSIM output (deepest level)",
    "FIM": "(i) FIM output (level 2)",
}


def _hooked_modules(model: RefineFuse) -> dict[str, tuple[nn.Module, int]]:
    """Panel key -> (module, level) for the maps ``model`` has."""
    from .models.blocks import DeepShallowInteraction, ProfoundInteraction, SuperficialInteraction

    enc_ir, enc_vis, fusions = model.encoder_ir, model.encoder_vis, model.fusions
    found: dict[str, tuple[nn.Module, int]] = {"F1_ir": (enc_ir[0], 1), "F1_vis": (enc_vis[0], 1)}
    found["F1_fused"] = (fusions[0], 1)
    if len(fusions) >= 3:
        found.update(F3_ir=(enc_ir[2], 3), F3_vis=(enc_vis[2], 3), F3_fused=(fusions[2], 3))
    if len(fusions) >= 2 and isinstance(fusions[1], SuperficialInteraction):
        found["SFIM"] = (fusions[1], 2)
    if isinstance(fusions[-1], ProfoundInteraction):
        found["PSIM"] = (fusions[-1], len(fusions))
    if isinstance(model.interaction, DeepShallowInteraction):
        found["FIM"] = (model.interaction, 2)
    return found


@torch.no_grad()
def capture_features(
    model: nn.Module, ir: torch.Tensor, vis: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` on one pair ``(1, 1, H, W)`` and return ``(fused, {key: (C, h, w) map})``
    for the keys of :data:`PANELS` the model has (see the module docstring)."""
    if not isinstance(model, RefineFuse):
        raise InputError(f"feature maps need a RefineFuse network, got {type(model).__name__}")
    h, w = ir.shape[-2:]
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for key, (module, level) in _hooked_modules(model).items():
        scale = 2 ** (level - 1)
        size = (-(-h // scale), -(-w // scale))  # the input's extent at this scale (the rest is padding)

        def hook(_m: nn.Module, _inp: object, output: torch.Tensor, key: str = key, size: tuple = size) -> None:
            captured[key] = output[0, :, : size[0], : size[1]].detach().float().clone()

        handles.append(module.register_forward_hook(hook))
    try:
        fused = model.eval()(ir, vis)
    finally:
        for handle in handles:
            handle.remove()
    return fused, captured


def reduce_map(features: torch.Tensor, method: str = "pca") -> np.ndarray:
    """``(C, h, w)`` -> ``(h, w)`` float64: first principal component over the channels
    (sign: positive correlation with the channel mean) or the channel mean."""
    x = features.double().reshape(features.shape[0], -1)
    mean_map = x.mean(dim=0)
    if method == "mean":
        out = mean_map
    elif method == "pca":
        centred = x - x.mean(dim=1, keepdim=True)
        cov = centred @ centred.T / max(1, centred.shape[1])
        _, vectors = torch.linalg.eigh(cov)
        out = vectors[:, -1] @ centred  # eigh sorts eigenvalues ascending: the last is the largest
        if torch.dot(out - out.mean(), mean_map - mean_map.mean()) < 0:
            out = -out
    else:
        raise InputError(f"unknown reduction '{method}' (choose pca or mean)")
    return out.reshape(features.shape[1:]).numpy()


def _stretch(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)


def _load(weights: str | os.PathLike[str] | None) -> nn.Module:
    from .checkpoint import load_model
    from .methods import DEFAULT_METHOD, load_network

    return load_model(weights, map_location="cpu") if weights is not None else load_network(DEFAULT_METHOD)[0]


def feature_figure(
    ir: str | os.PathLike[str],
    vis: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    reduce: str = "pca",
) -> Path:
    """Write the Fig. 11 feature figure of one image pair as PNG; returns its path.

    ``weights``: a checkpoint of any registered RefineFuse network (default: the shipped
    weights). Colour images are used through their luminance, as in fusion.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .colour import luminance
    from .io import atomic_path, read_image

    if reduce not in ("pca", "mean"):
        raise InputError(f"unknown reduction '{reduce}' (choose pca or mean)")
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the figure is written as PNG (give a .png name)")
    a, b = luminance(read_image(ir)), luminance(read_image(vis))
    if a.shape != b.shape:
        raise InputError(f"{vis}: size {b.shape[1]}x{b.shape[0]} differs from {ir} ({a.shape[1]}x{a.shape[0]})")
    model = _load(weights)
    fused, maps = capture_features(model, torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])
    panels: list[tuple[str, np.ndarray | None]] = [
        ("infrared", a),
        ("visible", b),
        ("fused output", fused[0, 0].float().numpy()),
    ]
    panels += [
        (title, _stretch(reduce_map(maps[key], reduce)) if key in maps else None) for key, title in PANELS.items()
    ]
    height, width = a.shape
    cell = 3.2
    fig = Figure(figsize=(3 * cell, 4 * cell * height / width + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    name = getattr(model, "model_name", "refinefuse")
    fig.suptitle(f"{name}: features ({'first principal component' if reduce == 'pca' else 'channel mean'})")
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(4, 3, i + 1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        if img is None:
            ax.text(0.5, 0.5, "not in this model", ha="center", va="center", transform=ax.transAxes)
        elif i < 3:
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img, cmap="viridis", vmin=0, vmax=1)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path
