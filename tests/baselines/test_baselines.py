"""Classical baselines: contract (shape, dtype, range, any size), known properties, registry."""

from __future__ import annotations

import numpy as np
import pytest

from refinefuse.baselines import BASELINES, get_baseline, laplacian_pyramid, list_baselines, reconstruct
from refinefuse.baselines.mst import target_weight
from refinefuse.colour import luminance, to_float
from refinefuse.errors import InputError
from refinefuse.fuse import fuse_arrays
from refinefuse.io import read_image

NAMES = list_baselines()


def _crop(img: np.ndarray, h: int = 160, w: int = 200) -> np.ndarray:
    return np.ascontiguousarray(img[:h, :w])


@pytest.fixture(scope="module")
def msrs(data_dir):
    """A real MSRS test pair (night scene with pedestrians): IR grey, Y of the RGB visible."""
    ir = to_float(read_image(data_dir / "msrs/test/ir/00004N.png"))
    vis = luminance(read_image(data_dir / "msrs/test/vi/00004N.png"))
    return ir, vis


@pytest.fixture(scope="module")
def tno(data_dir):
    """A real TNO pair (grey stored as 3 equal channels, read back as (H, W))."""
    ir_img, vis_img = read_image(data_dir / "tno/ir/01.png"), read_image(data_dir / "tno/vi/01.png")
    assert ir_img.ndim == 2 and vis_img.ndim == 2
    return to_float(ir_img), to_float(vis_img)


def _check_output(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_registry():
    assert NAMES == ["mean", "max", "lp", "dwt", "gff", "mst"]
    assert all(get_baseline(n) is BASELINES[n] for n in NAMES)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(InputError, match="unknown fusion method 'nope'.*mean, max, lp, dwt, gff, mst"):
        get_baseline("nope")


@pytest.mark.parametrize("name", NAMES)
def test_full_msrs_pair(name, msrs):
    """A whole 640x480 MSRS pair: contract holds and the result is not one source copied."""
    ir, vis = msrs
    out = get_baseline(name)(ir, vis)
    _check_output(out, ir.shape)
    if name != "max":  # max may legitimately equal one source where it dominates
        assert not np.allclose(out, ir, atol=1e-3) and not np.allclose(out, vis, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_tno_pair(name, tno):
    ir, vis = tno
    _check_output(get_baseline(name)(ir, vis), ir.shape)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (1, 7), (9, 2), (37, 51), (65, 33)])
def test_odd_and_tiny_sizes(name, shape):
    rng = np.random.default_rng(0)
    ir, vis = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    _check_output(get_baseline(name)(ir, vis), shape)


@pytest.mark.parametrize("name", NAMES)
def test_size_mismatch_and_non_grey_raise(name):
    with pytest.raises(ValueError, match="size mismatch"):
        get_baseline(name)(np.zeros((8, 8), np.float32), np.zeros((8, 9), np.float32))
    with pytest.raises(ValueError, match="grey"):
        get_baseline(name)(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_identical_inputs_give_the_input(name, msrs):
    """Every rule (average, max, max-abs, any weight) returns x when both sources are x."""
    x = _crop(msrs[1])
    np.testing.assert_allclose(get_baseline(name)(x, x), x, atol=1e-5)


def test_max_with_zeros_is_the_other(msrs):
    ir, vis = map(_crop, msrs)
    zeros = np.zeros_like(ir)
    np.testing.assert_array_equal(BASELINES["max"](ir, zeros), ir)
    np.testing.assert_array_equal(BASELINES["max"](zeros, vis), vis)
    np.testing.assert_array_equal(BASELINES["max"](ir, vis), np.maximum(ir, vis))


def test_mean_is_the_average(msrs):
    ir, vis = map(_crop, msrs)
    np.testing.assert_allclose(BASELINES["mean"](ir, vis), (ir + vis) / 2, atol=1e-7)


def test_lp_with_zeros_is_the_other_less_half_its_lowpass(msrs):
    """lp(x, 0): every detail layer of x wins the max-abs rule against zero detail and the
    base is averaged with zero, so lp(x, 0) = x - lowpass(x) / 2 exactly, where lowpass(x)
    is x's pyramid collapsed with its details zeroed. x is mapped to [0.5, 1] so no
    clipping occurs. (With an averaged base, lp(x, 0) is *not* x itself.)"""
    x = 0.5 + 0.5 * _crop(msrs[1])
    pyr = laplacian_pyramid(x, 4)
    lowpass = reconstruct([np.zeros_like(d) for d in pyr[:-1]] + [pyr[-1]])
    for out in (BASELINES["lp"](x, np.zeros_like(x)), BASELINES["lp"](np.zeros_like(x), x)):
        np.testing.assert_allclose(out, x - lowpass / 2, atol=1e-5)
    assert np.abs(BASELINES["lp"](x, np.zeros_like(x)) - x).mean() > 0.1  # the halved base shows


def test_dwt_with_zeros_is_the_other_less_half_its_approximation(msrs):
    """Same property for the wavelet baseline: dwt(x, 0) = x - approx(x) / 2."""
    pywt = pytest.importorskip("pywt")
    x = 0.5 + 0.5 * _crop(msrs[1], 131, 97)
    coeffs = pywt.wavedec2(x, "db2", level=4)
    approx = pywt.waverec2([coeffs[0]] + [tuple(np.zeros_like(b) for b in bands) for bands in coeffs[1:]], "db2")
    approx = approx[: x.shape[0], : x.shape[1]]
    for out in (BASELINES["dwt"](x, np.zeros_like(x)), BASELINES["dwt"](np.zeros_like(x), x)):
        np.testing.assert_allclose(out, x - approx / 2, atol=1e-5)


def test_gff_with_a_blank_source_returns_the_other(msrs):
    """A blank image has zero saliency everywhere, so all weight goes to the other image."""
    ir, vis = map(_crop, msrs)
    zeros = np.zeros_like(ir)
    np.testing.assert_allclose(BASELINES["gff"](ir, zeros), ir, atol=1e-4)
    np.testing.assert_allclose(BASELINES["gff"](zeros, vis), vis, atol=1e-4)


def test_mst_blank_infrared_returns_visible(msrs):
    """No thermal contrast: the target weight is zero and all details come from the visible."""
    vis = _crop(msrs[1])
    np.testing.assert_allclose(BASELINES["mst"](np.zeros_like(vis), vis), vis, atol=1e-5)


def test_mst_weight_follows_infrared_intensity():
    base = np.array([[0.1, 0.3], [0.5, 0.9]], np.float32)
    w = target_weight(base)
    assert w.min() == 0.0 and w.max() == 1.0 and np.all(np.diff(w.ravel()) > 0)
    assert np.all(target_weight(base, gamma=0.5) >= w) and np.all(target_weight(base, gamma=2.0) <= w)
    np.testing.assert_array_equal(target_weight(np.full((3, 3), 0.4, np.float32)), 0.0)


def test_mst_keeps_infrared_targets_brighter_than_mean(msrs):
    """Inside the hottest IR regions (pedestrians in 00004N), mst is brighter than the plain
    average (and than lp) and closer to the infrared intensity."""
    ir, vis = msrs
    hot = ir >= np.quantile(ir, 0.995)
    mst, mean = BASELINES["mst"](ir, vis), BASELINES["mean"](ir, vis)
    assert mst[hot].mean() > mean[hot].mean() + 0.05
    assert np.abs(mst[hot] - ir[hot]).mean() < np.abs(mean[hot] - ir[hot]).mean()
    # lp has the same pyramid and detail rule with an averaged base: the target weight
    # (> 1/2 on hot targets) is what makes mst brighter there
    lp = BASELINES["lp"](ir, vis)
    assert mst[hot].mean() > lp[hot].mean() + 0.01


def test_baseline_through_fuse_api_keeps_colour(data_dir):
    """Colour handling is refinefuse.fuse's: Y fused, chroma of the visible kept."""
    ir = _crop(read_image(data_dir / "msrs/test/ir/00004N.png"))
    vis = _crop(read_image(data_dir / "msrs/test/vi/00004N.png"))
    out = fuse_arrays(ir, vis, get_baseline("mst"))
    assert out.shape == vis.shape and out.dtype == np.uint8
    same = fuse_arrays(vis, vis, get_baseline("mst"))
    assert np.abs(same.astype(int) - vis.astype(int)).max() <= 2
