"""Image reading/writing, grey detection and folder pairing."""

from __future__ import annotations

import numpy as np
import pytest

from refinefuse.colour import grey_255, luminance, rgb_to_ycrcb, ycrcb_to_rgb
from refinefuse.errors import InputError
from refinefuse.io import TEMP_PREFIX, atomic_path, pair_folders, read_image, remove_stale_temps, write_image


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


def _truncated_png(path):
    import cv2

    img = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    data = buf.tobytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_png_is_input_error_and_native_stderr_silenced(tmp_path, capfd):
    bad = _truncated_png(tmp_path / "cut.png")
    with pytest.raises(InputError, match="cut.png: not a readable image"):
        read_image(bad)
    assert capfd.readouterr().err == ""  # libpng / OpenCV said nothing on fd 2
    import os

    os.write(2, b"fd 2 restored\n")
    assert capfd.readouterr().err == "fd 2 restored\n"


def test_temp_names_carry_the_package_prefix(tmp_path):
    with atomic_path(tmp_path / "x.png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f"{TEMP_PREFIX}x.png.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_write_no_clobber(tmp_path):
    img = np.full((4, 4), 7, np.uint8)
    dst = tmp_path / "x.png"
    write_image(dst, img, overwrite=False)  # missing: written
    np.testing.assert_array_equal(read_image(dst), img)
    with pytest.raises(InputError, match=r"x\.png: output exists \(use --overwrite to replace it\)"):
        write_image(dst, np.zeros((4, 4), np.uint8), overwrite=False)
    np.testing.assert_array_equal(read_image(dst), img)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    write_image(dst, np.zeros((4, 4), np.uint8))  # default: replaces
    assert read_image(dst).max() == 0


def _raise_eperm(src, dst):
    import errno

    raise OSError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize("hard_links", [True, False])
def test_no_clobber_checked_at_rename_time(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # a filesystem without hard links: the O_EXCL fallback
        monkeypatch.setattr("refinefuse.io.os.link", _raise_eperm)
    dst = tmp_path / "x.txt"
    with pytest.raises(InputError, match="x.txt: output exists"):
        with atomic_path(dst, overwrite=False) as tmp:
            tmp.write_text("mine")
            dst.write_text("someone else's")  # appears while we write
    assert dst.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    with atomic_path(tmp_path / "y.txt", overwrite=False) as tmp:
        tmp.write_text("mine")
    assert (tmp_path / "y.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt", "y.txt"]


def test_remove_stale_temps(tmp_path):
    import os
    import time

    old = tmp_path / f"{TEMP_PREFIX}a.png.k3j2.tmp"
    fresh = tmp_path / f"{TEMP_PREFIX}b.png.x9y8.tmp"
    foreign = tmp_path / ".a.png.abcd.tmp"  # not ours
    for p in (old, fresh, foreign, tmp_path / "a.png"):
        p.write_bytes(b"x")
    then = time.time() - 3600
    for p in (old, foreign):
        os.utime(p, (then, then))
    assert remove_stale_temps(tmp_path) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, foreign.name, "a.png"])
    assert remove_stale_temps(tmp_path, min_age_s=0) == [fresh]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_stderr_silencing_is_thread_safe(tmp_path, capfd):
    import os
    from concurrent.futures import ThreadPoolExecutor

    bad = _truncated_png(tmp_path / "cut.png")

    def read(_):
        with pytest.raises(InputError):
            read_image(bad)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(read, range(64)))
    capfd.readouterr()
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_decode_image_matches_read_image_and_names_the_input(data_dir, tmp_path):
    from refinefuse.io import decode_image

    path = data_dir / "msrs" / "test" / "vi" / "00828N.png"
    assert np.array_equal(decode_image(path.read_bytes(), "upload"), read_image(path))
    with pytest.raises(InputError, match=r"^upload: not a readable image$"):
        decode_image(b"GIF89a nonsense", "upload")
    with pytest.raises(InputError, match=r"^upload: not a readable image$"):
        decode_image(b"", "upload")


def test_pixel_limit_is_checked_from_the_header_before_decoding(monkeypatch):
    import cv2

    from refinefuse import io as rio
    from refinefuse.io import ImageTooLargeError, decode_image, encode_image

    png = encode_image(np.zeros((300, 400), np.uint8))  # 120000 pixels
    assert decode_image(png, "x", max_pixels=120_000).shape == (300, 400)

    def no_decode(*_a, **_k):
        raise AssertionError("decoded an image over the limit")

    monkeypatch.setattr(rio.cv2, "imdecode", no_decode)
    with pytest.raises(ImageTooLargeError, match=r"^x: 400x300 is over the limit of 119999 pixels$"):
        decode_image(png, "x", max_pixels=119_999)
    monkeypatch.setattr(rio.cv2, "imdecode", cv2.imdecode)


def test_pixel_limit_also_holds_when_the_header_is_unknown_to_pillow(monkeypatch):
    from refinefuse import io as rio
    from refinefuse.io import ImageTooLargeError, decode_image, encode_image

    monkeypatch.setattr(rio, "_header_size", lambda data: None)  # e.g. a format only OpenCV reads
    png = encode_image(np.zeros((300, 400), np.uint8))
    with pytest.raises(ImageTooLargeError, match="400x300 is over the limit"):
        decode_image(png, "x", max_pixels=1000)


def test_encode_image_round_trips_colour():
    from refinefuse.io import decode_image, encode_image

    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert np.array_equal(decode_image(encode_image(rgb), "x"), rgb)


def test_write_jpeg_quality(tmp_path):
    """``quality`` sets the JPEG quality (smaller file, larger error at 30); PNG ignores it."""
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 255).astype(np.uint8)
    low, high = write_image(tmp_path / "low.jpg", img, quality=30), write_image(tmp_path / "high.jpg", img, quality=95)
    assert low.stat().st_size < high.stat().st_size
    err = lambda p: np.abs(read_image(p).astype(int) - img).mean()  # noqa: E731
    assert err(low) > err(high)
    assert (read_image(write_image(tmp_path / "a.png", img, quality=30)) == img).all()
