"""Image reading/writing, grey detection and folder pairing."""

from __future__ import annotations

import numpy as np
import pytest

from refinefuse.colour import grey_255, luminance, rgb_to_ycrcb, ycrcb_to_rgb
from refinefuse.errors import InputError
from refinefuse.io import pair_folders, read_image, write_image


def test_read_real_images(data_dir):
    ir = read_image(data_dir / "msrs/test/ir/00004N.png")
    vis = read_image(data_dir / "msrs/test/vi/00004N.png")
    assert ir.shape == (480, 640) and ir.dtype == np.uint8
    assert vis.shape == (480, 640, 3)
    # TNO stores grey as three identical channels: returned as grey
    assert read_image(data_dir / "tno/ir/01.png").ndim == 2
    assert read_image(data_dir / "medical/MRI_PET/PET/11.png").ndim == 3


def test_read_is_rgb_order(tmp_path):
    import cv2

    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV order
    cv2.imwrite(str(tmp_path / "b.png"), bgr)
    rgb = read_image(tmp_path / "b.png")
    assert rgb[0, 0].tolist() == [0, 0, 200]


def test_write_roundtrip_and_no_temp_left(tmp_path):
    img = (np.arange(30 * 20 * 3) % 256).astype(np.uint8).reshape(20, 30, 3)
    out = write_image(tmp_path / "sub" / "x.png", img)
    np.testing.assert_array_equal(read_image(out), img)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_unreadable_file(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        read_image(bad)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def _folder(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir()
    for f in files:
        write_image(d / f, np.zeros((4, 4), np.uint8))
    return d


def test_pairing_by_stem_across_extensions(tmp_path):
    ir = _folder(tmp_path, "ir", ["a.png", "b.png"])
    vis = _folder(tmp_path, "vi", ["a.jpg", "b.bmp"])
    pairs = pair_folders(ir, vis)
    assert [p.name for p in pairs] == ["a", "b"]
    assert pairs[0].vis.name == "a.jpg"


def test_pairing_errors(tmp_path):
    ir = _folder(tmp_path, "ir", ["a.png", "b.png"])
    vis = _folder(tmp_path, "vi", ["a.png"])
    with pytest.raises(InputError, match=r"b\.png: no image named 'b'"):
        pair_folders(ir, vis)
    assert [p.name for p in pair_folders(ir, vis, strict=False)] == ["a"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="folder contains no images"):
        pair_folders(ir, empty)
    dup = _folder(tmp_path, "dup", ["a.png", "a.jpg", "b.png"])
    with pytest.raises(InputError, match="ambiguous name"):
        pair_folders(ir, dup)


def test_ycrcb_roundtrip_and_matches_opencv_bt601():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    y, crcb = rgb_to_ycrcb(rgb)
    f = rgb.astype(np.float64) / 255
    np.testing.assert_allclose(y, 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2], atol=1e-5)
    np.testing.assert_allclose(ycrcb_to_rgb(y, crcb), f, atol=5e-4)  # OpenCV float coefficients: < 0.13 grey levels
    np.testing.assert_array_equal(luminance(rgb[..., 0]), rgb[..., 0].astype(np.float32) / 255)


def test_grey_255_matches_reference_rounding():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [10, 20, 30]]], np.uint8)
    expected = np.round(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    np.testing.assert_array_equal(grey_255(rgb), expected)
