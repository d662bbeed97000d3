"""Image files: the one reading function, atomic writing, and pairing of folders.

Conventions (used everywhere in the package):
- ``read_image`` returns ``uint8``: ``(H, W)`` for grey images, ``(H, W, 3)`` **RGB** for
  colour. Grey stored as three identical channels is returned as ``(H, W)``; an alpha
  channel is dropped; 16-bit images are scaled to 8 bits.
- ``write_image`` writes to a temporary file in the target folder and renames it, so a
  crash or bad input never leaves a half-written output. Temporary names start with
  :data:`TEMP_PREFIX`; :func:`remove_stale_temps` deletes those a killed run left behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, TypeVar

import cv2
import numpy as np

from .errors import InputError

T = TypeVar("T")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TEMP_PREFIX = ".refinefuse-tmp-"  # every temporary file this package writes starts with this
TEMP_SUFFIX = ".tmp"


class _Silence(TypedDict):
    depth: int  # nesting of _native_stderr_silenced
    saved: int | None  # a duplicate of the real fd 2 while silenced


_silence_lock = threading.Lock()
_silence: _Silence = {"depth": 0, "saved": None}  # fd 2 is per process: threads share one redirection


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: libpng/libjpeg and OpenCV's logger
    print their own lines there on a damaged file, beside the one-line error we raise.
    Reference-counted, so overlapping uses from several threads restore fd 2 once, last."""
    with _silence_lock:
        if _silence["depth"] == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            saved = None
            try:
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
            except OSError:  # no fd 2 (e.g. a GUI process) or no /dev/null: nothing to silence
                if saved is not None:
                    os.close(saved)
                saved = None
            else:
                os.dup2(devnull, 2)
                os.close(devnull)
            _silence["saved"] = saved
        _silence["depth"] += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silence["depth"] -= 1
            if _silence["depth"] == 0 and _silence["saved"] is not None:
                os.dup2(_silence["saved"], 2)
                os.close(_silence["saved"])
                _silence["saved"] = None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB.

    Raises :class:`InputError` naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return decode_image(np.fromfile(str(path), dtype=np.uint8), str(path))


def decode_image(data: bytes | np.ndarray, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image (file content: PNG, JPEG, ...) exactly like :func:`read_image`.

    ``name`` (a file name, an upload's field) starts every :class:`InputError` message.
    ``max_pixels``: refuse larger images (:class:`ImageTooLargeError`), checked from the
    header before the pixels are decoded where Pillow can read it, so that a small file
    declaring a huge image is never decompressed.
    """
    if isinstance(data, np.ndarray):
        buf, encoded = data, None
    else:
        buf, encoded = np.frombuffer(data, dtype=np.uint8), bytes(data)  # bytes(bytes) is no copy
    if max_pixels is not None and buf.size:
        size = _header_size(encoded if encoded is not None else buf.tobytes())
        if size is not None and size[0] * size[1] > max_pixels:
            raise ImageTooLargeError(f"{name}: {size[0]}x{size[1]} is over the limit of {max_pixels} pixels")
    img = None
    if buf.size:
        with _native_stderr_silenced():
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{name}: not a readable image")
    if max_pixels is not None and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageTooLargeError(f"{name}: {img.shape[1]}x{img.shape[0]} is over the limit of {max_pixels} pixels")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = img[:, :, :3]
        elif img.shape[2] != 3:
            raise InputError(f"{name}: unsupported channel count {img.shape[2]}")
    if img.ndim == 3:
        if is_grey_rgb(img):
            img = img[:, :, 0]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


class ImageTooLargeError(InputError):
    """An image over a caller's pixel limit (:func:`decode_image`)."""


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header (Pillow, no pixel decoding), or None."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with scikit-image
        return None
    import io as _io

    try:
        with Image.open(_io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - not Pillow's format: OpenCV decides
        return None


def encode_image(img: np.ndarray, ext: str = ".png", *, quality: int | None = None) -> bytes:
    """Encode a :func:`read_image`-style array (uint8 grey or RGB) as ``ext`` (e.g. ``.png``) bytes;
    ``quality`` (0-100) sets the JPEG quality (None: OpenCV's default, 95)."""
    out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None and ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, out, params)
    if not ok:
        raise InputError(f"could not encode image as {ext}")
    return bytes(buf.tobytes())


def is_grey_rgb(img: np.ndarray) -> bool:
    """True when a ``(H, W, 3)`` image has three identical channels."""
    return bool(np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2]))


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The one way this package writes files (images, checkpoints, configs, ONNX models):
    readers never see a half-written file, and a failure leaves no temporary behind.

    With ``overwrite=False`` the final step never replaces a file: if ``path`` exists at
    that moment (created meanwhile, e.g. by a second run), :class:`InputError` is raised
    naming it and the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual file mode
        if overwrite:
            os.replace(tmp, path)
        else:
            _rename_no_clobber(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rename_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (checked atomically by the kernel)."""
    exists = InputError(f"{path}: output exists (use --overwrite to replace it)")
    try:
        os.link(tmp, path)  # fails with FileExistsError when path exists
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV):
            raise
        # no hard links on this filesystem: claim the name exclusively, then replace our claim
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise exists from None
        os.replace(tmp, path)
    else:
        tmp.unlink()


def remove_stale_temps(folder: str | os.PathLike[str], *, min_age_s: float = 60.0) -> list[Path]:
    """Delete this package's temporary files (:data:`TEMP_PREFIX`) left in ``folder`` by a
    killed run; returns them. Only files older than ``min_age_s`` seconds go, so a second
    run writing into the same folder right now keeps its temporaries."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, now = [], time.time()
    for p in folder.iterdir():
        if not (p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # gone meanwhile (its run finished)
            continue
    return removed


def write_image(
    path: str | os.PathLike[str], img: np.ndarray, *, overwrite: bool = True, quality: int | None = None
) -> Path:
    """Write uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB atomically (temp file + rename);
    ``quality``: JPEG quality for a ``.jpg`` path (see :func:`encode_image`).

    ``overwrite=False``: an existing ``path`` (even one created while encoding) is never
    replaced; :class:`InputError` "output exists" is raised instead."""
    path = Path(path)
    if img.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8, got {img.dtype}")
    ext = path.suffix.lower() or ".png"
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{path}: unsupported output extension '{path.suffix}'")
    try:
        data = encode_image(img, ext, quality=quality)
    except InputError:
        raise InputError(f"{path}: could not encode image") from None
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return path


# Pillow modes whose pixels read_image decodes (via OpenCV) -> colour channels as stored
_HEADER_CHANNELS = {
    "1": 1, "L": 1, "P": 3, "I;16": 1, "I;16L": 1, "I;16B": 1, "LA": 2, "La": 2, "PA": 2,
    "RGB": 3, "YCbCr": 3, "CMYK": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
}  # fmt: skip
_HEADER_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP"}


def read_image_header(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(width, height, channels)`` of an image file, without decoding its pixels where possible.

    ``channels`` counts the stored channels (1 grey, 2 grey + alpha, 3 colour/palette,
    4 colour + alpha); :func:`read_image` later drops alpha and reduces grey-looking colour.
    Raises :class:`InputError` naming the file, as :func:`read_image` would, when the file is
    missing or not readable by it. Uses Pillow's lazy header (for PNG also its chunk CRC
    check, which catches truncated files) when Pillow is installed; a file Pillow cannot
    vouch for (no Pillow, another format, a pixel type such as float) is decoded in full
    by :func:`read_image`, the authority on what is readable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with scikit-image
        pass
    else:
        try:
            with Image.open(path) as im:
                (width, height), mode, fmt = im.size, im.mode, im.format
                im.verify()
        except Exception:  # decide by decoding below
            pass
        else:
            if fmt in _HEADER_FORMATS and mode in _HEADER_CHANNELS and width > 0 and height > 0:
                return width, height, _HEADER_CHANNELS[mode]
    img = read_image(path)
    return img.shape[1], img.shape[0], 1 if img.ndim == 2 else img.shape[2]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically (temporary file beside it, then a rename); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def evenly_spaced(items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` items, evenly spaced over the sequence, first and last included (all when
    ``n`` is ``None`` or not smaller); ``n < 1`` is an :class:`InputError`."""
    if n is not None and n < 1:
        raise InputError(f"max_pairs must be at least 1, got {n}")
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else max(1, os.cpu_count() or 1)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name); error if missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{folder}: folder contains no images")
    return files


@dataclass(frozen=True)
class Pair:
    """Two aligned source images matched by file stem."""

    name: str
    ir: Path
    vis: Path


def images_by_stem(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{stem: path}`` of the images in ``folder``; two images with one stem are an error."""
    files: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in files:
            raise InputError(f"{p}: ambiguous name, {files[p.stem].name} has the same stem")
        files[p.stem] = p
    return files


def pair_folders(ir_dir: str | os.PathLike[str], vis_dir: str | os.PathLike[str], *, strict: bool = True) -> list[Pair]:
    """Pair images of two folders by file stem (extensions may differ).

    With ``strict`` an image without a partner raises :class:`InputError` naming it;
    otherwise unpaired files are ignored (an empty result is still an error).
    """
    ir_files, vis_files = images_by_stem(ir_dir), images_by_stem(vis_dir)
    if strict:
        for stems, other, present in ((ir_files, vis_files, ir_dir), (vis_files, ir_files, vis_dir)):
            missing = sorted(set(stems) - set(other))
            if missing:
                absent = vis_dir if present == ir_dir else ir_dir
                raise InputError(
                    f"{stems[missing[0]]}: no image named '{missing[0]}' in {absent}"
                    + (f" ({len(missing)} unpaired files)" if len(missing) > 1 else "")
                )
    names = sorted(set(ir_files) & set(vis_files))
    if not names:
        raise InputError(f"{ir_dir} and {vis_dir}: no file names in common")
    return [Pair(n, ir_files[n], vis_files[n]) for n in names]
