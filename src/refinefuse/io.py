"""Image files: the one reading function, atomic writing, and pairing of folders.

Conventions (used everywhere in the package):
- ``read_image`` returns ``uint8``: ``(H, W)`` for grey images, ``(H, W, 3)`` **RGB** for
  colour. Grey stored as three identical channels is returned as ``(H, W)``; an alpha
  channel is dropped; 16-bit images are scaled to 8 bits.
- ``write_image`` writes to a temporary file in the target folder and renames it, so a
  crash or bad input never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB.

    Raises :class:`InputError` naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = img[:, :, :3]
        elif img.shape[2] != 3:
            raise InputError(f"{path}: unsupported channel count {img.shape[2]}")
    if img.ndim == 3:
        if is_grey_rgb(img):
            img = img[:, :, 0]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def is_grey_rgb(img: np.ndarray) -> bool:
    """True when a ``(H, W, 3)`` image has three identical channels."""
    return bool(np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2]))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The one way this package writes files (images, checkpoints, configs, ONNX models):
    readers never see a half-written file, and a failure leaves no temporary behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB atomically (temp file + rename)."""
    path = Path(path)
    if img.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8, got {img.dtype}")
    ext = path.suffix.lower() or ".png"
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{path}: unsupported output extension '{path.suffix}'")
    out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(ext, out)
    if not ok:
        raise InputError(f"{path}: could not encode image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
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


def images_by_stem(folder: str | os.PathLike) -> dict[str, Path]:
    """``{stem: path}`` of the images in ``folder``; two images with one stem are an error."""
    files: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in files:
            raise InputError(f"{p}: ambiguous name, {files[p.stem].name} has the same stem")
        files[p.stem] = p
    return files


def pair_folders(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike, *, strict: bool = True) -> list[Pair]:
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
