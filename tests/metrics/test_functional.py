"""Metric functions on synthetic images: edge cases, and cross-checks against direct,
slow transcriptions of the reference definitions on small images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity as skimage_ssim

from refinefuse.colour import grey_255
from refinefuse.errors import InputError
from refinefuse.metrics import as_grey, evaluate, get_profile, markdown_table, rank_marks
from refinefuse.metrics import functional as F


@pytest.fixture(scope="module")
def triplet() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth-ish integer images 0-255 (a structured scene, not white noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:72, 0:88]
    a = 120 + 80 * np.sin(x / 7.0) * np.cos(y / 9.0) + rng.normal(0, 6, x.shape)
    b = 90 + 60 * np.cos((x + y) / 11.0) + 40 * (x > 44) + rng.normal(0, 6, x.shape)
    f = 0.5 * a + 0.5 * b + rng.normal(0, 3, x.shape)
    return tuple(np.clip(np.round(im), 0, 255) for im in (f, a, b))


# ----------------------------------------------------------------------------- edge cases
def test_constant_image_no_reference_metrics() -> None:
    c = np.full((50, 60), 77.0)
    assert F.entropy(c) == 0.0
    assert F.standard_deviation(c) == 0.0
    assert F.spatial_frequency(c) == 0.0
    assert F.average_gradient(c) == 0.0
    assert F.average_gradient(c, convention="cddfuse") == 0.0


def test_vif_nan_guard_constant_reference(triplet) -> None:
    """A constant source makes vifp 0/0; CDDFuse reports 1.0 for it."""
    f, a, b = triplet
    flat = np.full_like(a, 128.0)
    assert F.vifp(flat, f) == 1.0
    assert F.vif(f, flat, b) == pytest.approx(1.0 + F.vifp(b, f), abs=1e-12)
    assert F.vif(flat, flat, flat) == 2.0
    assert math.isfinite(F.vif(f, a, b))


def test_identical_images(triplet) -> None:
    _, a, _ = triplet
    assert F.vifp(a, a) == pytest.approx(1.0, abs=1e-9)
    assert F.ssim(a, a, a) == pytest.approx(2.0, abs=1e-6)  # a sum over the two sources
    assert F.correlation_coefficient(a, a, a) == pytest.approx(1.0, abs=1e-12)
    assert F.mse(a, a, a) == 0.0
    assert F.psnr(a, a, a) == math.inf
    assert F.nabf(a, a, a) == 0.0  # no fused edge is stronger than both sources'
    # Qabf keeps the references' quirk G = gF where gA == gF (so not exactly Tg * Ta)
    assert 0.97 < F.qabf(a, a, a) < 0.9994 * 0.9879


def test_entropy_of_two_equal_halves() -> None:
    img = np.zeros((10, 10))
    img[:, 5:] = 200.0
    assert F.entropy(img) == pytest.approx(1.0)


def test_scd_is_nan_when_fused_equals_a_source(triplet) -> None:
    f, a, b = triplet
    assert math.isnan(F.scd(a, a, b))  # corr2 of the constant image F - A, as the references


def test_shape_mismatch_and_dimension_errors(triplet) -> None:
    f, a, b = triplet
    with pytest.raises(ValueError, match="sizes differ"):
        F.qabf(f[:-1], a, b)
    with pytest.raises(ValueError, match="2-D"):
        F.entropy(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="sizes differ"):
        evaluate(f, a[:, :-2], b)
    with pytest.raises(ValueError, match="at least 41x41"):
        F.vif(f[:40], a[:40], b[:40])
    assert math.isfinite(F.vif(f[:41, :41], a[:41, :41], b[:41, :41]))


# ----------------------------------------------------------------------------- cross-checks
def _mi_by_histogram(x: np.ndarray, y: np.ndarray) -> float:
    joint, _, _ = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[-0.5, 255.5], [-0.5, 255.5]])
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())


def test_mutual_information_conventions(triplet) -> None:
    f, a, b = triplet
    nats = _mi_by_histogram(f, a) + _mi_by_histogram(f, b)
    assert F.mutual_information(f, a, b) == pytest.approx(nats, rel=1e-10)
    # non-integer values: one label per distinct value, like sklearn
    assert F.mutual_information(f + 0.25, a, b) == pytest.approx(nats, rel=1e-10)
    # no grey level 254/255 in these images: Tang's MI is the same in bits
    assert max(f.max(), a.max(), b.max()) < 254
    assert F.mutual_information(f, a, b, convention="tang") == pytest.approx(nats / math.log(2), rel=1e-10)
    # with levels 254 and 255, Tang's joint histogram merges them (his uint8 + 1 saturates)
    f2, a2 = f.copy(), a.copy()
    f2[:10] = 254.0
    f2[:5] = 255.0
    a2[:10] = 255.0
    tang = F.mutual_information(f2, a2, b, convention="tang")
    assert tang != pytest.approx(F.mutual_information(f2, a2, b) / math.log(2), rel=1e-6)


def test_average_gradient_matches_numpy_gradient(triplet) -> None:
    f = triplet[0]
    gy, gx = np.gradient(f)
    s = np.sqrt((gx**2 + gy**2) / 2)
    assert F.average_gradient(f, convention="cddfuse") == pytest.approx(s.mean(), rel=1e-12)
    assert F.average_gradient(f) == pytest.approx(s.sum() / (71 * 87), rel=1e-12)


def _vifp_direct(ref: np.ndarray, dist: np.ndarray) -> float:
    """vifp_mscale transcribed literally: 2-D windows, convolve2d 'valid', log10."""
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        y, x = np.mgrid[:n, :n] - (n - 1) / 2
        win = np.exp(-(x**2 + y**2) / (2 * (n / 5) ** 2))
        win[win < np.finfo(float).eps * win.max()] = 0
        win /= win.sum()
        if scale > 1:
            ref = convolve2d(ref, win, "valid")[::2, ::2]
            dist = convolve2d(dist, win, "valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, "valid"), convolve2d(dist, win, "valid")
        s1 = np.maximum(convolve2d(ref * ref, win, "valid") - mu1**2, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, "valid") - mu2**2, 0)
        s12 = convolve2d(ref * dist, win, "valid") - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.log10(1 + g**2 * s1 / (sv + 2)).sum()
        den += np.log10(1 + s1 / 2).sum()
    return num / den


def test_vif_matches_direct_2d_filtering(triplet) -> None:
    f, a, b = triplet
    assert F.vifp(a, f) == pytest.approx(_vifp_direct(a, f), rel=1e-10)
    assert F.vif(f, a, b) == pytest.approx(_vifp_direct(a, f) + _vifp_direct(b, f), rel=1e-10)


def _qabf_loops(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """analysis_Qabf.m with its per-pixel loops (on a small image)."""
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])

    def edges(img):
        sx, sy = convolve2d(img, h3, "same"), convolve2d(img, h1, "same")
        g = np.sqrt(sx**2 + sy**2)
        al = np.zeros_like(img)
        for i, j in np.ndindex(img.shape):
            al[i, j] = math.pi / 2 if sx[i, j] == 0 else math.atan(sy[i, j] / sx[i, j])
        return g, al

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    nume = deno = 0.0
    for i, j in np.ndindex(a.shape):
        for (
            gs,
            as_,
        ) in ((ga, aa), (gb, ab)):
            if gs[i, j] > gf[i, j]:
                G = gf[i, j] / gs[i, j]
            elif gs[i, j] == gf[i, j]:
                G = gf[i, j]
            else:
                G = gs[i, j] / gf[i, j]
            A = 1 - abs(as_[i, j] - af[i, j]) / (math.pi / 2)
            q = 0.9994 / (1 + math.exp(-15 * (G - 0.5))) * 0.9879 / (1 + math.exp(-22 * (A - 0.8)))
            nume += q * gs[i, j]
            deno += gs[i, j]
    return nume / deno


def test_qabf_matches_per_pixel_loops(triplet) -> None:
    f, a, b = (x[:24, :30] for x in triplet)
    b = b.copy()
    b[5:15, 5:15] = f[5:15, 5:15]  # equal edge strengths: exercises the G = gF quirk
    assert F.qabf(f, a, b) == pytest.approx(_qabf_loops(a, b, f), rel=1e-12)


def test_ssim_matches_scikit_image(triplet) -> None:
    f, a, b = triplet
    ref64 = skimage_ssim(f, a, data_range=2) + skimage_ssim(f, b, data_range=2)
    f32, a32, b32 = (x.astype(np.float32) for x in triplet)
    ref32 = skimage_ssim(f32, a32, data_range=2) + skimage_ssim(f32, b32, data_range=2)
    assert F.ssim(f, a, b) == ref32  # float32 by default, bit-identical
    assert F.ssim(f, a, b, dtype=np.float64) == pytest.approx(ref64, rel=1e-12)
    assert F.structural_similarity(f, a, data_range=255.0, dtype=np.float64) == pytest.approx(
        skimage_ssim(f, a, data_range=255.0), rel=1e-12
    )


def test_psnr_and_mse_conventions(triplet) -> None:
    f, a, b = triplet
    err = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    assert F.mse(f, a, b) == pytest.approx(err)
    assert F.mse(f, a, b, convention="tang") == pytest.approx(err / 255**2)
    assert F.psnr(f, a, b) == pytest.approx(10 * np.log10(f.max() ** 2 / err))
    assert F.psnr(f, a, b, convention="tang") == pytest.approx(20 * np.log10(255 / np.sqrt(err / 255**2)))
    with pytest.raises(ValueError, match="convention"):
        F.mse(f, a, b, convention="matlab")


# ----------------------------------------------------------------------------- evaluate / profiles
def test_colour_input_is_converted_like_opencv(triplet) -> None:
    f, a, b = triplet
    rgb = np.dstack([f, np.roll(f, 3, axis=1), 255 - f]).astype(np.uint8)
    grey = grey_255(rgb)
    r, g, bl = (rgb[..., i].astype(float) for i in range(3))
    assert np.abs(grey - (0.299 * r + 0.587 * g + 0.114 * bl)).max() <= 0.5 + 1e-3
    assert np.array_equal(grey, np.round(grey))
    assert evaluate(rgb, a, b, metrics="all") == evaluate(grey, a, b, metrics="all")
    # uint8 grey is the same image as its float values (as_grey's fast path equals grey_255)
    assert evaluate(f.astype(np.uint8), a, b) == evaluate(f, a, b)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert as_grey(levels).dtype == np.float64 and np.array_equal(as_grey(levels), grey_255(levels))


def test_profiles_and_metric_names(triplet) -> None:
    f, a, b = triplet
    assert tuple(evaluate(f, a, b)) == ("VIF", "AG", "SCD", "Qabf", "SF", "EN", "SSIM")
    assert list(evaluate(f, a, b, metrics="qabf,vif")) == ["Qabf", "VIF"]
    assert set(evaluate(f, a, b, profile="tang", metrics="all")) == {
        "EN",
        "MI",
        "PSNR",
        "MSE",
        "SF",
        "SD",
        "VIF",
        "AG",
        "CC",
        "SCD",
        "Qabf",
        "Nabf",
    }
    paper, cdd = evaluate(f, a, b, metrics="all"), evaluate(f, a, b, profile="cddfuse", metrics="all")
    assert {k for k in paper if paper[k] != cdd[k]} == {"AG"}
    with pytest.raises(InputError, match="Nabf"):
        evaluate(f, a, b, metrics="Nabf")  # not in profile paper
    with pytest.raises(InputError, match="unknown metric profile"):
        get_profile("vifb2")


# ----------------------------------------------------------------------------- tables
def test_markdown_table_marks_best_and_second() -> None:
    rows = {
        "A": {"VIF": 0.5, "MSE": 10.0},
        "B": {"VIF": 0.7, "MSE": 30.0},
        "C": {"VIF": 0.6, "MSE": 20.0},
        "X (published)": {"VIF": 0.9},
    }
    md = markdown_table(rows, ["VIF", "MSE"], exclude_from_ranking=["X (published)"])
    lines = md.strip().splitlines()
    assert lines[0] == "| Method | VIF ↑ | MSE ↓ |"
    assert lines[2] == "| A | 0.5000 | **10.0000** |"
    assert lines[3] == "| B | **0.7000** | 30.0000 |"
    assert lines[4] == "| C | <u>0.6000</u> | <u>20.0000</u> |"
    assert lines[5] == "| X (published) | 0.9000 | - |"
    # ranked with the published row, it takes the best VIF
    marks = rank_marks(rows, ["VIF"])
    assert marks[("X (published)", "VIF")] == "best" and marks[("B", "VIF")] == "second"
    # equal displayed values share the mark
    tie = rank_marks({"p": {"EN": 1.00001}, "q": {"EN": 1.00004}, "r": {"EN": 0.9}}, ["EN"])
    assert tie == {("p", "EN"): "best", ("q", "EN"): "best", ("r", "EN"): "second"}


# ----------------------------------------------------------------------------- FA (artefacts)
def test_flat_region_artefact_flat_pair_fused_flat_scores_zero():
    from refinefuse.metrics.functional import flat_region_artefact

    flat = np.full((40, 50), 90.0)
    assert flat_region_artefact(flat, flat, flat + 30) == 0.0


def test_flat_region_artefact_detects_added_waves_only_where_sources_are_flat():
    from refinefuse.metrics.functional import flat_region_artefact

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    sky = 120 + 0.3 * rng.standard_normal((64, 96))  # sensor noise far below the flatness threshold
    waves = sky + 3 * np.sin(x / 2.0)
    assert flat_region_artefact(sky, sky, sky) == 0.0
    strong = flat_region_artefact(waves, sky, sky)
    weak = flat_region_artefact(sky + 1 * np.sin(x / 2.0), sky, sky)
    assert strong > weak > 0.1
    textured = 120 + 40 * np.sin(x / 1.5) * np.cos(y / 1.7)  # no flat region at all
    assert np.isnan(flat_region_artefact(textured, textured, textured))


def test_flat_region_artefact_is_in_every_profile_and_lower_is_better():
    from refinefuse.metrics import PROFILES, evaluate
    from refinefuse.metrics.profiles import LOWER_IS_BETTER

    img = np.full((20, 20), 10.0)
    assert "FA" in LOWER_IS_BETTER
    for name in PROFILES:
        assert evaluate(img, img, img, metrics="FA", profile=name) == {"FA": 0.0}


# ----------------------------------------------------------------------------- HA (halos)
def _disc_scene(size: int = 96, radius: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A hot disc on a grey-100 background (infrared), a vertical step 60 | 100 (visible), the distance map."""
    y, x = np.mgrid[0:size, 0:size]
    dist = np.hypot(y - size / 2, x - size / 2)
    ir = np.where(dist <= radius, 250.0, 100.0)
    vis = np.where(x < size // 4, 60.0, 100.0)
    return ir, vis, dist


def test_halo_artefact_is_zero_for_per_pixel_blends_and_small_shifts():
    from refinefuse.metrics.functional import halo_artefact

    ir, vis, _ = _disc_scene()
    for fused in (np.maximum(ir, vis), (ir + vis) / 2, 0.3 * ir + 0.7 * vis, np.minimum(ir, vis), ir):
        assert halo_artefact(fused, ir, vis) == 0.0
    assert halo_artefact(np.roll(np.maximum(ir, vis), (2, -2), axis=(0, 1)), ir, vis) == 0.0
    flat = np.full((40, 50), 90.0)
    assert np.isnan(halo_artefact(flat, flat, flat + 30))  # no edge in either source


def test_halo_artefact_measures_a_dark_ring_in_grey_levels():
    """A ring 30 grey levels darker than both sources' background, 3 pixels wide, right outside the disc."""
    from refinefuse.metrics.functional import halo_artefact

    ir, vis, dist = _disc_scene()
    fused = np.maximum(ir, vis)
    ring = (dist > 13) & (dist <= 16)  # beyond the 5x5 window's reach of the disc's own values
    dark = np.where(ring, fused - 30, fused)
    light = np.where(ring, fused + 30, fused)
    score = halo_artefact(dark, ir, vis)
    assert score > 1.0
    assert halo_artefact(light, ir, vis) == pytest.approx(score)  # a light halo counts the same
    assert halo_artefact(np.where(ring, fused - 10, fused), ir, vis) == pytest.approx(score / 3)
    # the ring's pixels that leave [lo, hi] by 30, averaged over the edge band: an exact fraction of 30
    assert 0 < score < 30


def test_halo_artefact_grows_with_unsharp_masking_overshoot():
    import cv2

    from refinefuse.metrics.functional import halo_artefact

    ir, vis, _ = _disc_scene()
    fused = np.maximum(ir, vis)
    blur = cv2.GaussianBlur(fused, (0, 0), 2.0)
    scores = [halo_artefact(fused + k * (fused - blur), ir, vis) for k in (0.0, 0.5, 1.5)]
    assert scores[0] == 0.0 < scores[1] < scores[2]


def test_halo_artefact_is_in_every_profile_and_lower_is_better():
    from refinefuse.metrics import PROFILES, evaluate
    from refinefuse.metrics.profiles import LOWER_IS_BETTER

    ir, vis, _ = _disc_scene(32, 5)
    assert "HA" in LOWER_IS_BETTER
    for name in PROFILES:
        assert evaluate(ir, ir, vis, metrics="HA", profile=name) == {"HA": 0.0}


def test_markdown_table_single_method_marks_nothing():
    """With one row there is nothing to rank: no cell is bold or underlined."""
    md = markdown_table({"only": {"VIF": 0.5, "MSE": 3.0}}, ["VIF", "MSE"])
    assert "**" not in md and "<u>" not in md and "0.5000" in md
