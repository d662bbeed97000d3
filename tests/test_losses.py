"""Loss tests with hand-computed cases (DESIGN.md Sect. 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinefuse.losses import (
    FusionLoss,
    contrast_mask,
    conventional_intensity_loss,
    fusion_loss,
    intensity_loss,
    ir_mask,
    local_variance,
    max_intensity_loss,
    sobel_magnitude,
    texture_loss,
)


def _checkerboard(h: int = 32, w: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((yy + xx) % 2).float().view(1, 1, h, w)


def _ramp(slope: float, h: int = 16, w: int = 20) -> torch.Tensor:
    return (torch.arange(w).float() * slope).expand(h, w).reshape(1, 1, h, w).clone()


def _train128_grey(data_dir, n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` ``msrs/train128`` pairs as float64 (infrared, visible) grey images, 0-255."""
    from refinefuse.colour import grey_255
    from refinefuse.io import read_image

    folder = data_dir / "msrs" / "train128"
    names = sorted(p.name for p in (folder / "ir").glob("*.png"))[:n]
    grey = lambda path: grey_255(read_image(path)).astype(np.float64)  # noqa: E731
    return [(grey(folder / "ir" / name), grey(folder / "vi" / name)) for name in names]


def _as_batch(img: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(H, W)`` -> ``(1, 1, H, W)`` tensor, values unchanged."""
    return torch.tensor(img, dtype=dtype)[None, None]


def _descend(fused: torch.Tensor, step: float = 0.02) -> np.ndarray:
    """One normalised step down ``fused.grad`` (a [0, 1] image), clamped, as a 0-255 float64 image."""
    stepped = (fused - step * fused.grad / fused.grad.abs().max()).clamp(0, 1)
    return stepped.detach()[0, 0].double().numpy() * 255


def test_local_variance_constant_and_checkerboard():
    flat = torch.full((1, 1, 24, 24), 0.7)
    assert torch.allclose(local_variance(flat), torch.zeros_like(flat), atol=1e-6)
    # a 0/1 checkerboard has variance ~0.25 under any smooth normalised window
    var = local_variance(_checkerboard())
    assert torch.allclose(var[..., 8:-8, 8:-8], torch.full_like(var[..., 8:-8, 8:-8], 0.25), atol=0.01)


def test_contrast_mask_picks_the_textured_source():
    textured, flat = _checkerboard(), torch.full((1, 1, 32, 32), 0.5)
    assert contrast_mask(textured, flat).min() == 1  # ir has more contrast everywhere
    assert contrast_mask(flat, textured).max() == 0
    assert contrast_mask(flat, flat).max() == 0  # ties go to the visible image (strict >)


def test_ir_mask_is_union_of_salient_and_contrast():
    flat, textured = torch.full((1, 1, 32, 32), 0.5), _checkerboard()
    salient = torch.zeros(1, 1, 32, 32)
    salient[..., :10, :10] = 1
    mask = ir_mask(flat, textured, salient)  # C = 0 everywhere: M_ir = S
    assert torch.equal(mask, salient)
    assert ir_mask(textured, flat, salient).min() == 1  # C = 1 everywhere


def test_intensity_loss_zero_when_fused_follows_the_right_source():
    torch.manual_seed(0)
    ir, vis = torch.rand(2, 1, 40, 40), torch.rand(2, 1, 40, 40)
    salient = (torch.rand(2, 1, 40, 40) > 0.8).float()
    mask = ir_mask(ir, vis, salient)
    assert 0 < mask.mean() < 1
    fused = mask * ir + (1 - mask) * vis
    assert intensity_loss(fused, ir, vis, mask).item() == 0.0
    # swapping the sources in the masked region costs exactly mean(M |I - V|)
    wrong = mask * vis + (1 - mask) * vis
    expected = (mask * (ir - vis).abs()).mean()
    assert torch.allclose(intensity_loss(wrong, ir, vis, mask), expected)


def test_intensity_loss_hand_computed():
    ir, vis = torch.full((1, 1, 8, 8), 0.8), torch.full((1, 1, 8, 8), 0.2)
    salient = torch.zeros(1, 1, 8, 8)
    salient[..., :, :4] = 1  # left half salient; flat images give C = 0, so M_ir = S
    fused = torch.full((1, 1, 8, 8), 0.5)
    total, terms = fusion_loss(fused, ir, vis, salient)
    # mean(S * 0.3) + mean((1 - S) * 0.3) = 0.15 + 0.15; flat images have no texture
    assert terms["int"].item() == pytest.approx(0.3, abs=1e-6)
    assert terms["tex"].item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(0.3, abs=1e-6)


def test_sobel_magnitude_is_raw_sobel():
    # x-ramp of slope a: interior |Sx| = 8a (1+2+1 weights, two-pixel span), Sy = 0;
    # replicate border: the first/last columns see a one-pixel span -> 4a
    a = 0.01
    mag = sobel_magnitude(_ramp(a))
    assert torch.allclose(mag[..., 1:-1], torch.full_like(mag[..., 1:-1], 8 * a), atol=1e-6)
    assert torch.allclose(mag[..., [0, -1]], torch.full_like(mag[..., [0, -1]], 4 * a), atol=1e-6)


def test_texture_loss_hand_computed_and_elementwise_max():
    a, w = 0.01, 20
    ramp, flat = _ramp(a, w=w), torch.full((1, 1, 16, w), 0.3)
    fused_flat = torch.full_like(flat, 0.6)
    expected = a * (8 * (w - 2) + 4 * 2) / w
    assert texture_loss(fused_flat, ramp, flat).item() == pytest.approx(expected, rel=1e-5)
    assert texture_loss(fused_flat, flat, ramp).item() == pytest.approx(expected, rel=1e-5)  # symmetric in sources
    assert texture_loss(ramp, ramp, flat).item() == pytest.approx(0.0, abs=1e-7)
    # element-wise max: ir textured on the left, vis on the right; fused = both textures
    left, right = flat.clone(), flat.clone()
    left[..., :, :10] = _ramp(a, w=w)[..., :, :10]
    right[..., :, 10:] = _ramp(a, w=w)[..., :, 10:]
    target = torch.maximum(sobel_magnitude(left), sobel_magnitude(right))
    fused = ramp  # its gradient magnitude differs from the target only near the seam
    assert texture_loss(fused, left, right).item() == pytest.approx(
        (sobel_magnitude(fused) - target).abs().mean().item()
    )
    assert texture_loss(fused, left, right) < texture_loss(fused, left, flat)


def test_ablation_settings():
    torch.manual_seed(1)
    ir, vis = torch.rand(1, 1, 24, 24), torch.rand(1, 1, 24, 24)
    assert conventional_intensity_loss(ir, ir, vis).item() == pytest.approx((ir - vis).abs().mean().item())
    assert max_intensity_loss(torch.maximum(ir, vis), ir, vis).item() == 0.0
    fused = torch.rand(1, 1, 24, 24)
    total_a, terms_a = fusion_loss(fused, ir, vis, setting="A")
    assert terms_a["int"].item() == pytest.approx(conventional_intensity_loss(fused, ir, vis).item())
    total_b, terms_b = fusion_loss(fused, ir, vis, setting="B")
    assert terms_b["int"].item() == pytest.approx(max_intensity_loss(fused, ir, vis).item())
    total_c, terms_c = fusion_loss(fused, ir, vis, setting="C")
    total_full, terms_full = fusion_loss(fused, ir, vis, setting="full")
    assert terms_c["tex"].item() == 0.0 and total_c.item() == pytest.approx(terms_full["int"].item())
    assert total_full.item() == pytest.approx(terms_full["int"].item() + 5 * terms_full["tex"].item(), rel=1e-6)
    total_l1, _ = FusionLoss(lam=1.0)(fused, ir, vis)
    assert total_l1.item() == pytest.approx(terms_full["int"].item() + terms_full["tex"].item(), rel=1e-6)
    with pytest.raises(ValueError):
        FusionLoss(setting="D")
    with pytest.raises(TypeError, match="unknown weight.*halo_wieght; known: flat_weight, scd_weight, halo_weight"):
        FusionLoss(halo_wieght=1.0)  # a misspelt term is an error, not a silent 0
    assert "halo_weight=2.0" in repr(FusionLoss(halo_weight=2))


@pytest.mark.parametrize("setting", ["full", "A", "B", "C"])
def test_gradients_flow_to_the_fused_image(setting):
    torch.manual_seed(2)
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    fused = torch.rand(2, 1, 16, 16, requires_grad=True)
    total, _ = FusionLoss(setting)(fused, ir, vis, (torch.rand(2, 1, 16, 16) > 0.5).float())
    total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0


def test_half_precision_input_is_computed_in_float32():
    torch.manual_seed(3)
    ir, vis, fused = (torch.rand(1, 1, 16, 16) for _ in range(3))
    ref, _ = fusion_loss(fused, ir, vis)
    half, _ = fusion_loss(fused.half(), ir, vis)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(ref.item(), rel=1e-2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        fusion_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_flat_texture_loss_matches_the_fa_measure_and_trains_flat():
    """The penalty is the FA measure on [0, 1] images (same region, energy and normalisation)."""
    import numpy as np

    from refinefuse.losses import FusionLoss, flat_texture_loss
    from refinefuse.metrics.functional import flat_region_artefact

    rng = np.random.default_rng(0)
    x = np.mgrid[0:64, 0:96][1]
    sky = 120 + 0.3 * rng.standard_normal((64, 96))
    waves = sky + 3 * np.sin(x / 2.0)
    t = lambda a: torch.tensor(a / 255, dtype=torch.float32)[None, None]  # noqa: E731
    assert flat_texture_loss(t(sky), t(sky), t(sky)).item() == 0.0
    assert flat_texture_loss(t(waves), t(sky), t(sky)).item() == pytest.approx(
        flat_region_artefact(waves, sky, sky), rel=0.05
    )
    fused = t(waves).requires_grad_(True)
    total, terms = FusionLoss(flat_weight=2.0)(fused, t(sky), t(sky))
    total.backward()
    assert "flat" in terms and terms["flat"].item() > 0.5 and fused.grad.abs().sum() > 0
    assert "flat" not in FusionLoss()(t(waves), t(sky), t(sky))[1]  # the paper's loss by default


def test_scd_loss_is_two_minus_the_scd_metric_and_raises_scd():
    """``scd_loss`` equals ``2 - scd`` of the metrics module per image; a step on it raises SCD."""
    import numpy as np

    from refinefuse.losses import FusionLoss, scd_loss
    from refinefuse.metrics.functional import scd

    rng = np.random.default_rng(1)
    ir = rng.uniform(0, 1, (2, 1, 32, 40)).astype(np.float32)
    vis = rng.uniform(0, 1, (2, 1, 32, 40)).astype(np.float32)
    fused = np.maximum(ir, vis)
    expected = np.mean([2 - scd(fused[n, 0] * 255, ir[n, 0] * 255, vis[n, 0] * 255) for n in range(2)])
    t = torch.from_numpy
    assert scd_loss(t(fused), t(ir), t(vis)).item() == pytest.approx(expected, abs=1e-5)
    # flat inputs give a finite loss, not NaN
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert torch.isfinite(scd_loss(flat, flat, flat))

    f = t(fused).clone().requires_grad_(True)
    total, terms = FusionLoss(scd_weight=1.0)(f, t(ir), t(vis))
    assert "scd" in terms and "scd" not in FusionLoss()(f, t(ir), t(vis))[1]
    terms["scd"].backward()
    stepped = (f - 0.05 * f.grad / f.grad.abs().max()).detach()
    assert scd_loss(stepped, t(ir), t(vis)).item() < terms["scd"].item()


def test_halo_loss_matches_the_ha_measure_off_edges_and_trains_rings_away():
    """``halo_loss`` is 0 for per-pixel blends, costs a ring its depth (in [0, 1] units, averaged over all
    pixels, where HA averages over the edge band), and a step on it makes the ring shallower."""
    import numpy as np

    from refinefuse.losses import FusionLoss, halo_loss
    from refinefuse.metrics.functional import halo_artefact

    y, x = np.mgrid[0:64, 0:64]
    dist = np.hypot(y - 32, x - 32)
    ir = np.where(dist <= 8, 250.0, 100.0)
    vis = np.where(x < 16, 60.0, 100.0)
    t = lambda a: torch.tensor(a / 255, dtype=torch.float32)[None, None]  # noqa: E731
    for blend in (np.maximum(ir, vis), (ir + vis) / 2, 0.2 * ir + 0.8 * vis, vis):
        assert halo_loss(t(blend), t(ir), t(vis)).item() == 0.0
        assert halo_artefact(blend, ir, vis) == 0.0
    ring = (dist > 11) & (dist <= 14)  # out of the 5x5 window's reach of the disc, inside HA's edge band
    dark = np.where(ring, np.maximum(ir, vis) - 30, np.maximum(ir, vis))
    # every ring pixel is 30 grey levels below both sources' range: the loss is 30/255 times the ring's share
    assert halo_loss(t(dark), t(ir), t(vis)).item() == pytest.approx(30 / 255 * ring.mean(), rel=1e-4)
    assert halo_artefact(dark, ir, vis) > 0

    fused = t(dark).requires_grad_(True)
    total, terms = FusionLoss(halo_weight=10.0)(fused, t(ir), t(vis))
    assert "halo" in terms and "halo" not in FusionLoss()(t(dark), t(ir), t(vis))[1]  # off by default
    terms["halo"].backward()
    assert fused.grad[0, 0][torch.from_numpy(~ring)].abs().max() == 0  # only the ring is pushed
    stepped = (fused - 0.05 * fused.grad.sign()).detach()
    assert halo_loss(stepped, t(ir), t(vis)).item() < terms["halo"].item()


def test_max_intensity_term_adds_the_max_rule_pull_to_the_paper_loss():
    """``max_int_weight`` adds ``w * mean|F - max(I, V)|`` (Table 8's loss B) to the paper's loss;
    the max-rule image is its minimum, and where the paper's mask picks the darker source the term
    pulls the fused image up towards the brighter one."""
    g = torch.Generator().manual_seed(0)
    ir, vis = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    fused = torch.rand(2, 1, 32, 32, generator=g)
    paper_total, paper_terms = FusionLoss()(fused, ir, vis)
    total, terms = FusionLoss(max_int_weight=0.5)(fused, ir, vis)
    assert "max_int" not in paper_terms
    assert terms["max_int"].item() == pytest.approx((fused - torch.maximum(ir, vis)).abs().mean().item(), rel=1e-6)
    assert total.item() == pytest.approx(paper_total.item() + 0.5 * terms["max_int"].item(), rel=1e-6)
    assert FusionLoss(max_int_weight=0.5)(torch.maximum(ir, vis), ir, vis)[1]["max_int"].item() == 0.0
    dark = torch.minimum(ir, vis).requires_grad_(True)
    FusionLoss(max_int_weight=1.0)(dark, ir, vis)[1]["max_int"].backward()
    assert (dark.grad[ir != vis] < 0).all()  # descending the gradient brightens every pixel below max(I, V)


def test_vif_loss_is_the_vif_metric_and_its_gradient_raises_vif(data_dir):
    """``losses.vifp`` computes the metric's VIF (``metrics.functional.vifp``) differentiably; one
    step down the gradient of ``vif_loss`` raises the metric's VIF of the fused image."""
    from refinefuse.losses import vif_loss, vifp
    from refinefuse.metrics.functional import vif
    from refinefuse.metrics.functional import vifp as vifp_metric

    t = _as_batch
    for ir, vis in _train128_grey(data_dir):
        for fused in (np.maximum(ir, vis), (ir + vis) / 2, vis):
            for ref in (ir, vis):
                assert vifp(t(ref), t(fused)).item() == pytest.approx(vifp_metric(ref, fused), rel=1e-9, abs=1e-12)
    flat = torch.full((1, 1, 48, 48), 7.0, dtype=torch.float64)
    assert vifp(flat, t(ir[:48, :48])).item() == 1.0  # 0/0 counts 1, as the metric's
    with pytest.raises(ValueError, match="at least 41x41"):
        vifp(flat[..., :40, :40], flat[..., :40, :40])

    mean = _as_batch((ir + vis) / 2 / 255, torch.float32).requires_grad_(True)
    a, b = (_as_batch(x / 255, torch.float32) for x in (ir, vis))
    loss = vif_loss(mean, a, b)
    assert loss.item() == pytest.approx(2 - vif(mean.detach()[0, 0].double().numpy() * 255, ir, vis), rel=1e-4)
    loss.backward()
    assert vif(_descend(mean), ir, vis) > vif(mean.detach()[0, 0].double().numpy() * 255, ir, vis) + 1e-3


def test_qabf_loss_is_the_qabf_metric_and_its_gradient_raises_qabf(data_dir):
    """``losses.qabf`` computes the metric's Qabf (``metrics.functional.qabf``) differentiably, up to the
    references' ``G = g_F`` quirk where the strengths are equal; a step down the gradient of ``qabf_loss``
    raises the metric's Qabf; flat images give a finite loss and gradient."""
    from refinefuse.losses import qabf, qabf_loss
    from refinefuse.metrics.functional import qabf as qabf_metric

    t = _as_batch
    for ir, vis in _train128_grey(data_dir):
        # the mean shares no edge strength with a source exactly: the same value as the metric
        assert qabf(t((ir + vis) / 2), t(ir), t(vis)).item() == pytest.approx(
            qabf_metric((ir + vis) / 2, ir, vis), abs=1e-6
        )
        # max and vis copy a source's edges exactly, where the quirk applies
        for fused in (np.maximum(ir, vis), vis):
            assert qabf(t(fused), t(ir), t(vis)).item() == pytest.approx(qabf_metric(fused, ir, vis), abs=1e-3)

    mean = _as_batch((ir + vis) / 2 / 255, torch.float32).requires_grad_(True)
    a, b = (_as_batch(x / 255, torch.float32) for x in (ir, vis))
    total, terms = FusionLoss(qabf_weight=1.0)(mean, a, b)
    assert terms["qabf"].item() == pytest.approx(1 - qabf_metric((ir + vis) / 2, ir, vis), abs=1e-4)
    terms["qabf"].backward()
    before = qabf_metric(mean.detach()[0, 0].double().numpy() * 255, ir, vis)
    assert qabf_metric(_descend(mean), ir, vis) > before + 0.01

    flat = torch.full((2, 1, 24, 24), 0.5, requires_grad=True)
    loss = qabf_loss(flat, flat.detach(), flat.detach())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(flat.grad).all()
