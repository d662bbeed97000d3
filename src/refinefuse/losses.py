"""The RefineFuse training loss (paper Eq. 6-9, docs/design.md Sect. 3) and its ablations.

All tensors are ``(N, 1, H, W)`` floats in [0, 1]: ``fused`` the network output, ``ir``
the infrared (or functional) image, ``vis`` the visible luminance Y. ``salient`` is an
optional ``(N, 1, H, W)`` {0, 1} mask of salient objects.

- Contrast mask ``C = 1[var9(I) > var9(V)]`` with the local variance
  ``G*(X^2) - (G*X)^2`` under a normalised 9x9 Gaussian window (sigma 1.5).
- ``M_ir = 1[S + C > 0]``, ``M_vis = 1 - M_ir``.
- ``L_int = mean(M_ir |F - I|) + mean(M_vis |F - V|)`` (l1, means over all pixels).
- ``L_tex = mean(| |grad F| - max(|grad I|, |grad V|) |)`` with the *raw* (unnormalised)
  Sobel kernels, ``|grad X| = |Sx * X| + |Sy * X|``.
- ``L = L_int + lambda L_tex``, ``lambda = 5``.

Ablations (paper Table 8): ``"A"`` conventional intensity ``mean|F-I| + mean|F-V|``;
``"B"`` max intensity ``mean|F - max(I, V)|``; ``"C"`` the full intensity loss without the
texture term. Borders: the Gaussian filter reflects, the Sobel filter replicates
(kornia's defaults for ``filter2d``/``spatial_gradient``).

Not in the paper: ``flat_weight > 0`` adds :func:`flat_texture_loss`, a penalty on
gradient energy that the fused image adds where both sources are flat (the differentiable
form of the FA artefact measure, ``refinefuse.metrics.functional.flat_region_artefact``);
``scd_weight > 0`` adds :func:`scd_loss`, ``2 - SCD`` per image (the SCD metric, Aslantas &
Bendes 2015, made a loss: it asks the fused image to carry each source's difference image);
``halo_weight > 0`` adds :func:`halo_loss`, the mean distance by which the fused image leaves
both sources' local range (the differentiable form of the HA measure,
``refinefuse.metrics.functional.halo_artefact``, over all pixels instead of near edges only);
``max_int_weight > 0`` adds :func:`max_intensity_loss` (Table 8's loss ``B``) on top of the
setting's own intensity term: a pull towards ``max(I, V)`` everywhere, which the ``max`` rule's
high VIF suggests the masked intensity term gives up; ``vif_weight > 0`` adds :func:`vif_loss`,
``2 - VIF`` per image (the paper's VIF metric, differentiable, like the SCD term);
``qabf_weight > 0`` adds :func:`qabf_loss`, ``1 - Qabf`` per image (the paper's Qabf metric,
differentiable: Xydeas & Petrovic's edge preservation, :func:`qabf`).

The loss is computed in float32 even under mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import filter2d, get_gaussian_kernel1d, get_gaussian_kernel2d, spatial_gradient
from torch import Tensor, nn

__all__ = [
    "SETTINGS",
    "local_variance",
    "contrast_mask",
    "ir_mask",
    "sobel_magnitude",
    "intensity_loss",
    "conventional_intensity_loss",
    "max_intensity_loss",
    "texture_loss",
    "gradient_energy",
    "flat_texture_loss",
    "scd_loss",
    "halo_loss",
    "VIF_MIN_SIZE",
    "vifp",
    "vif_loss",
    "qabf",
    "qabf_loss",
    "EXTRA_TERMS",
    "fusion_loss",
    "FusionLoss",
]

SETTINGS = ("full", "A", "B", "C")


def local_variance(x: Tensor, kernel_size: int = 9, sigma: float = 1.5) -> Tensor:
    """Local variance ``G*(x^2) - (G*x)^2`` of ``(N, C, H, W)`` under a normalised Gaussian window."""
    kernel = get_gaussian_kernel2d((kernel_size, kernel_size), (sigma, sigma), device=x.device, dtype=x.dtype)
    mean = filter2d(x, kernel, border_type="reflect")
    mean_sq = filter2d(x * x, kernel, border_type="reflect")
    return (mean_sq - mean * mean).clamp_min(0.0)


@torch.no_grad()
def contrast_mask(ir: Tensor, vis: Tensor, kernel_size: int = 9, sigma: float = 1.5) -> Tensor:
    """``C = 1[contrast(ir) > contrast(vis)]``, float {0, 1} of the input's shape."""
    return (local_variance(ir, kernel_size, sigma) > local_variance(vis, kernel_size, sigma)).to(ir.dtype)


@torch.no_grad()
def ir_mask(ir: Tensor, vis: Tensor, salient: Tensor | None = None, kernel_size: int = 9, sigma: float = 1.5) -> Tensor:
    """``M_ir = 1[S + C > 0]``: where the fused image should follow the infrared image."""
    mask = contrast_mask(ir, vis, kernel_size, sigma)
    if salient is not None:
        mask = torch.maximum(mask, (salient > 0).to(mask.dtype))
    return mask


def sobel_magnitude(x: Tensor) -> Tensor:
    """``|Sx * x| + |Sy * x|`` with the raw integer Sobel kernels (not divided by 8)."""
    grad = spatial_gradient(x, mode="sobel", order=1, normalized=False)  # (N, C, 2, H, W)
    return grad.abs().sum(dim=2)


def intensity_loss(fused: Tensor, ir: Tensor, vis: Tensor, mask_ir: Tensor) -> Tensor:
    """Masked l1 (Eq. 7): ``mean(M_ir |F - I|) + mean((1 - M_ir) |F - V|)``."""
    return (mask_ir * (fused - ir).abs()).mean() + ((1.0 - mask_ir) * (fused - vis).abs()).mean()


def conventional_intensity_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """Ablation A: ``mean|F - I| + mean|F - V|``."""
    return (fused - ir).abs().mean() + (fused - vis).abs().mean()


def max_intensity_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """Ablation B: ``mean|F - max(I, V)|``."""
    return (fused - torch.maximum(ir, vis)).abs().mean()


def texture_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """Eq. 8: ``mean(| |grad F| - max(|grad I|, |grad V|) |)`` (raw Sobel, element-wise max)."""
    with torch.no_grad():
        target = torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis))
    return (sobel_magnitude(fused) - target).abs().mean()


def gradient_energy(x: Tensor, sigma: float = 2.0) -> Tensor:
    """``G_sigma * |grad x|^2`` with Sobel derivatives divided by 8 (the FA measure's energy), ``(N, C, H, W)``."""
    grad = spatial_gradient(x, mode="sobel", order=1, normalized=True)  # kornia: Sobel / 8
    size = 2 * round(3 * sigma) + 1
    kernel = get_gaussian_kernel2d((size, size), (sigma, sigma), device=x.device, dtype=x.dtype)
    return filter2d(grad.pow(2).sum(dim=2), kernel, border_type="reflect")


def flat_texture_loss(fused: Tensor, ir: Tensor, vis: Tensor, flat: float = 2 / 255, floor: float = 1 / 255) -> Tensor:
    """``sum_R relu(e_F - e_S) / sum_R max(e_S, floor^2)`` over ``R = {e_S < flat^2}``,
    ``e_S = max(e_I, e_V)``: texture the fused image adds where both sources are flat
    (FA of ``docs/metrics.md`` on [0, 1] images, over the whole batch). 0 when no pixel is flat."""
    with torch.no_grad():
        e_src = torch.maximum(gradient_energy(ir), gradient_energy(vis))
        region = (e_src < flat * flat).to(fused.dtype)
        denom = (region * e_src.clamp_min(floor * floor)).sum()
    added = torch.relu(gradient_energy(fused) - e_src) * region
    return added.sum() / denom.clamp_min(1e-12)


def _pearson(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each sample's pixels, ``(N,)``; near 0 (not NaN) for a flat input."""
    x = x.flatten(1) - x.flatten(1).mean(dim=1, keepdim=True)
    y = y.flatten(1) - y.flatten(1).mean(dim=1, keepdim=True)
    return (x * y).sum(dim=1) / torch.sqrt((x * x).sum(dim=1) * (y * y).sum(dim=1) + eps)


def scd_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """``mean_n(2 - SCD_n)``, ``SCD = corr(F - V, I) + corr(F - I, V)`` per image (0 at best, 4 at worst)."""
    return (2.0 - _pearson(fused - vis, ir) - _pearson(fused - ir, vis)).mean()


def _filter_valid(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' filtering of ``(N, 1, H, W)`` with the 1-D ``window`` (``conv2`` of MATLAB)."""
    k = window.numel()
    return F.conv2d(F.conv2d(x, window.view(1, 1, k, 1)), window.view(1, 1, 1, k))


VIF_MIN_SIZE = 41
"""Smallest image side :func:`vifp` takes: 4 scales of 'valid' Gaussian filtering and decimation."""


def vifp(ref: Tensor, dist: Tensor, sigma_nsq: float = 2.0, eps: float = 1e-10) -> Tensor:
    """Differentiable multi-scale pixel VIF of ``dist`` against ``ref``, ``(N,)``.

    The same computation as the metric ``refinefuse.metrics.functional.vifp`` (Sheikh's
    ``vifp_mscale.m``: 4 scales, Gaussian windows 17/9/5/3 with sigma size/5, 'valid'
    filtering, decimation by 2, ``sigma_n^2 = 2``, the same clamps; 1.0 where it is 0/0), for
    ``(N, 1, H, W)`` images on the 0-255 scale, H and W >= 41.
    """
    if min(ref.shape[-2:]) < VIF_MIN_SIZE:
        raise ValueError(
            f"VIF needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels (4 scales), "
            f"got {ref.shape[-1]}x{ref.shape[-2]}"
        )
    ref = ref - ref.mean(dim=(2, 3), keepdim=True)
    dist = dist - dist.mean(dim=(2, 3), keepdim=True)
    num = ref.new_zeros(ref.shape[0])
    den = ref.new_zeros(ref.shape[0])
    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        window = get_gaussian_kernel1d(size, size / 5.0, device=ref.device, dtype=ref.dtype).flatten()
        if scale > 1:
            ref = _filter_valid(ref, window)[..., ::2, ::2]
            dist = _filter_valid(dist, window)[..., ::2, ::2]
        mu1, mu2 = _filter_valid(ref, window), _filter_valid(dist, window)
        sigma1_sq = torch.relu(_filter_valid(ref * ref, window) - mu1 * mu1)
        sigma2_sq = torch.relu(_filter_valid(dist * dist, window) - mu2 * mu2)
        sigma12 = _filter_valid(ref * dist, window) - mu1 * mu2
        g = sigma12 / (sigma1_sq + eps)
        sv_sq = sigma2_sq - g * sigma12
        low1, low2 = sigma1_sq < eps, sigma2_sq < eps
        sv_sq = torch.where(low1, sigma2_sq, sv_sq)
        sigma1_sq = torch.where(low1, torch.zeros_like(sigma1_sq), sigma1_sq)
        sv_sq = torch.where(low2, torch.zeros_like(sv_sq), sv_sq)
        g = torch.where(low1 | low2, torch.zeros_like(g), g)
        sv_sq = torch.where(g < 0, sigma2_sq, sv_sq)
        g = torch.relu(g)
        sv_sq = sv_sq.clamp_min(eps)
        num = num + torch.log1p(g * g * sigma1_sq / (sv_sq + sigma_nsq)).sum(dim=(1, 2, 3))
        den = den + torch.log1p(sigma1_sq / sigma_nsq).sum(dim=(1, 2, 3))
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.ones_like(num))


def vif_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """``mean_n(2 - VIF_n)``, ``VIF = vifp(I, F) + vifp(V, F)`` per image on the 0-255 scale (the
    paper's VIF column, made a loss like :func:`scd_loss`; below 0 when VIF exceeds 2)."""
    fused, ir, vis = fused * 255.0, ir * 255.0, vis * 255.0
    return (2.0 - vifp(ir, fused) - vifp(vis, fused)).mean()


def _sobel_same(x: Tensor) -> tuple[Tensor, Tensor]:
    """MATLAB's ``conv2(x, h3, 'same')`` and ``conv2(x, h1, 'same')`` (zero padding), the Sobel
    responses of the Qabf metric (``refinefuse.metrics.functional.qabf``), for ``(N, 1, H, W)``."""
    # conv2 convolves and F.conv2d correlates: the kernels are flipped
    kx = x.new_tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]).view(1, 1, 3, 3)
    ky = x.new_tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3)
    return F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)


def _edge_strength_and_orientation(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``g = |S|`` and ``alpha = atan(Sy / Sx)`` (pi/2 where ``Sx = 0``), with finite gradients
    where the image is flat."""
    sx, sy = _sobel_same(x)
    g = torch.sqrt(sx * sx + sy * sy + eps)
    vertical = sx == 0
    alpha = torch.atan(sy / torch.where(vertical, torch.ones_like(sx), sx))
    return g, torch.where(vertical, torch.full_like(alpha, torch.pi / 2), alpha)


def qabf(fused: Tensor, ir: Tensor, vis: Tensor, eps: float = 1e-12) -> Tensor:
    """Differentiable Qabf (Xydeas & Petrovic 2000) of each fused image, ``(N,)``.

    The computation of the metric ``refinefuse.metrics.functional.qabf`` on ``(N, 1, H, W)``
    images on the 0-255 scale: zero-padded Sobel responses, strength ratio ``G = min / max``,
    orientation agreement ``A = 1 - |alpha_X - alpha_F| / (pi/2)``, the two sigmoids, weighted
    by the source strengths. One difference: the metric's references set ``G = g_F`` (not 1)
    where ``g_X == g_F`` exactly; for strengths of 1 or more (every non-zero Sobel response of
    whole grey levels) both give the same sigmoid to 1e-3.
    """
    g_f, a_f = _edge_strength_and_orientation(fused, eps)
    num = fused.new_zeros(fused.shape[0])
    den = fused.new_zeros(fused.shape[0])
    for source in (ir, vis):
        g_s, a_s = _edge_strength_and_orientation(source, eps)
        rel = torch.minimum(g_s, g_f) / torch.maximum(g_s, g_f)
        ang = 1.0 - (a_s - a_f).abs() / (torch.pi / 2)
        q = 0.9994 * torch.sigmoid(15.0 * (rel - 0.5)) * 0.9879 * torch.sigmoid(22.0 * (ang - 0.8))
        num = num + (q * g_s).sum(dim=(1, 2, 3))
        den = den + g_s.sum(dim=(1, 2, 3))
    return num / den.clamp_min(1e-30)


def qabf_loss(fused: Tensor, ir: Tensor, vis: Tensor) -> Tensor:
    """``mean_n(1 - Qabf_n)``, the paper's Qabf column (:func:`qabf`, 0-255 scale) made a loss
    (0 at best, 1 at worst)."""
    return (1.0 - qabf(fused * 255.0, ir * 255.0, vis * 255.0)).mean()


def halo_loss(fused: Tensor, ir: Tensor, vis: Tensor, radius: int = 2) -> Tensor:
    """``mean(relu(lo - F) + relu(F - hi))``: how far the fused image leaves the sources' local
    range, ``lo`` / ``hi`` the minimum of ``min(I, V)`` / maximum of ``max(I, V)`` over the
    ``(2 radius + 1)``-square window (HA of ``docs/metrics.md`` on [0, 1] images, all pixels).
    0 for every per-pixel blend of the sources; dark rings and light halos cost their depth."""
    size = 2 * radius + 1
    with torch.no_grad():
        lo = -F.max_pool2d(-torch.minimum(ir, vis), size, stride=1, padding=radius)
        hi = F.max_pool2d(torch.maximum(ir, vis), size, stride=1, padding=radius)
    return (torch.relu(lo - fused) + torch.relu(fused - hi)).mean()


#: The terms beyond the paper's, in the order they are added; each has the weight ``<name>_weight``
#: (:func:`fusion_loss`, ``TrainConfig``) and is off at weight 0.
EXTRA_TERMS = {
    "flat": flat_texture_loss,
    "scd": scd_loss,
    "halo": halo_loss,
    "max_int": max_intensity_loss,
    "vif": vif_loss,
    "qabf": qabf_loss,
}


def fusion_loss(
    fused: Tensor,
    ir: Tensor,
    vis: Tensor,
    salient: Tensor | None = None,
    *,
    setting: str = "full",
    lam: float = 5.0,
    kernel_size: int = 9,
    sigma: float = 1.5,
    flat_weight: float = 0.0,
    scd_weight: float = 0.0,
    halo_weight: float = 0.0,
    max_int_weight: float = 0.0,
    vif_weight: float = 0.0,
    qabf_weight: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its terms ``{"int", "tex"}`` (scalars; ``tex`` is 0 for setting C),
    plus each of :data:`EXTRA_TERMS` whose weight is above 0."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown loss setting {setting!r}; choose one of {SETTINGS}")
    if not fused.shape == ir.shape == vis.shape:
        raise ValueError(f"shape mismatch: fused {tuple(fused.shape)}, ir {tuple(ir.shape)}, vis {tuple(vis.shape)}")
    fused, ir, vis = fused.float(), ir.float(), vis.float()
    if setting == "A":
        l_int = conventional_intensity_loss(fused, ir, vis)
    elif setting == "B":
        l_int = max_intensity_loss(fused, ir, vis)
    else:
        mask = ir_mask(ir, vis, None if salient is None else salient.float(), kernel_size, sigma)
        l_int = intensity_loss(fused, ir, vis, mask)
    l_tex = fused.new_zeros(()) if setting == "C" else texture_loss(fused, ir, vis)
    total, terms = l_int + lam * l_tex, {"int": l_int, "tex": l_tex}
    weights = {
        "flat": flat_weight,
        "scd": scd_weight,
        "halo": halo_weight,
        "max_int": max_int_weight,
        "vif": vif_weight,
        "qabf": qabf_weight,
    }
    for name, term in EXTRA_TERMS.items():
        if weights[name] > 0:
            terms[name] = term(fused, ir, vis)
            total = total + weights[name] * terms[name]
    return total, terms


class FusionLoss(nn.Module):
    """Module form of :func:`fusion_loss`: ``total, terms = FusionLoss()(fused, ir, vis, salient)``.

    Args:
        setting: ``"full"`` (paper), ``"A"``, ``"B"`` or ``"C"`` (Table 8 ablations).
        lam: weight of the texture term (paper: 5).
        kernel_size, sigma: Gaussian window of the contrast mask (9, 1.5).
        **extra_weights: ``<name>_weight`` for each of :data:`EXTRA_TERMS` (``flat_weight``, ``scd_weight``,
            ``halo_weight``, ``max_int_weight``, ``vif_weight``, ``qabf_weight``); each is 0, the paper's loss,
            unless given.
    """

    def __init__(
        self, setting: str = "full", lam: float = 5.0, kernel_size: int = 9, sigma: float = 1.5, **extra_weights: float
    ) -> None:
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f"unknown loss setting {setting!r}; choose one of {SETTINGS}")
        known = [f"{name}_weight" for name in EXTRA_TERMS]
        unknown = sorted(set(extra_weights) - set(known))
        if unknown:
            raise TypeError(f"FusionLoss: unknown weight(s) {', '.join(unknown)}; known: {', '.join(known)}")
        self.setting, self.lam, self.kernel_size, self.sigma = setting, float(lam), kernel_size, sigma
        self.extra_weights = {key: float(extra_weights.get(key, 0.0)) for key in known}

    def forward(
        self, fused: Tensor, ir: Tensor, vis: Tensor, salient: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return fusion_loss(
            fused,
            ir,
            vis,
            salient,
            setting=self.setting,
            lam=self.lam,
            kernel_size=self.kernel_size,
            sigma=self.sigma,
            **self.extra_weights,
        )

    def extra_repr(self) -> str:
        weights = ", ".join(f"{key}={value}" for key, value in self.extra_weights.items())
        return (
            f"setting={self.setting!r}, lam={self.lam}, kernel_size={self.kernel_size}, sigma={self.sigma}, {weights}"
        )
