"""Inference API: fuse image arrays, files or folders with any method of
:mod:`refinefuse.methods` (a registered network or a baseline).

Every method is a *grey fuser*: ``fuser(ir_y, vis_y) -> fused_y`` on float32 ``(H, W)``
arrays in [0, 1]. This module wraps any fuser with the colour and modality handling of
the paper (Sect. 4.1; docs/design.md Sect. 2) and with file handling:

- infrared-visible: a colour visible image is fused through its Y channel and its Cb/Cr
  are put back, so the output is colour; grey inputs give grey output;
- medical: MRI + CT gives grey; MRI + PET/SPECT (colour functional image, passed as
  ``ir``) is fused through the functional image's Y and keeps its Cb/Cr.

``mode="auto"`` takes chroma from whichever source is colour, the visible one first;
``"medical"`` takes it from the functional (``ir``) image first; ``"ir-vis"`` only ever
from the visible image.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .colour import luminance, rgb_to_ycrcb, to_uint8, ycrcb_to_rgb
from .errors import InputError
from .io import IMAGE_EXTENSIONS, TEMP_PREFIX, Pair, pair_folders, read_image, remove_stale_temps, write_image
from .methods import (  # noqa: F401 - re-exported: fusers are built in refinefuse.methods
    BACKENDS,
    DEFAULT_METHOD,
    DEFAULT_WEIGHTS,
    DEVICE_TYPES,
    WEIGHTS_DIR,
    GreyFuser,
    default_weights,
    get_fuser,
    network_fuser,
    onnx_network_fuser,
    resolve_device,
)

MODES = ("auto", "ir-vis", "medical")
EXAMPLE_PAIR = Pair(
    "msrs_00828N",
    Path(__file__).parent / "assets" / "msrs_00828N_ir.png",
    Path(__file__).parent / "assets" / "msrs_00828N_vis.png",
)


# ----------------------------------------------------------------------------- arrays
class NonFiniteOutputError(InputError):
    """The fuser returned NaN or inf (e.g. corrupt weights); file-level callers prefix the
    input's name to the message."""


NON_FINITE_MESSAGE = "the network gave non-finite output (NaN/inf); the weights may be corrupt"


def fuse_arrays(ir: np.ndarray, vis: np.ndarray, fuser: GreyFuser, mode: str = "auto") -> np.ndarray:
    """Fuse two images as returned by :func:`refinefuse.io.read_image`.

    Args:
        ir: uint8 ``(H, W)`` or ``(H, W, 3)`` RGB: infrared, or CT/PET/SPECT in medical mode.
        vis: uint8 ``(H, W)`` or ``(H, W, 3)`` RGB: visible, or MRI.
        fuser: grey fuser, float32 ``(H, W)`` [0, 1] x 2 -> float32 ``(H, W)`` [0, 1].
        mode: ``"auto"``, ``"ir-vis"`` or ``"medical"`` (which source gives the colour).
    Returns:
        uint8 ``(H, W)`` when no source gives colour, else ``(H, W, 3)`` RGB.
    """
    if mode not in MODES:
        raise InputError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    if ir.shape[:2] != vis.shape[:2]:
        raise ValueError(f"size mismatch: ir {ir.shape[1]}x{ir.shape[0]} vs vis {vis.shape[1]}x{vis.shape[0]}")
    order = {"auto": (vis, ir), "ir-vis": (vis,), "medical": (ir, vis)}[mode]
    colour_src = next((img for img in order if img.ndim == 3), None)
    ir_y, vis_y = luminance(ir), luminance(vis)
    fused = np.asarray(fuser(ir_y, vis_y), dtype=np.float32)
    if fused.shape != ir_y.shape:
        raise RuntimeError(f"fuser returned shape {fused.shape}, expected {ir_y.shape}")
    if not np.isfinite(fused).all():
        raise NonFiniteOutputError(NON_FINITE_MESSAGE)
    fused = np.clip(fused, 0.0, 1.0)
    if colour_src is None:
        return to_uint8(fused)
    _, crcb = rgb_to_ycrcb(colour_src)
    return to_uint8(ycrcb_to_rgb(fused, crcb))


def fuse_named(
    ir: np.ndarray, vis: np.ndarray, fuser: GreyFuser, name: str | os.PathLike[str], mode: str = "auto"
) -> np.ndarray:
    """:func:`fuse_arrays` for images read from files: a non-finite output names ``name`` (the input file)."""
    try:
        return fuse_arrays(ir, vis, fuser, mode=mode)
    except NonFiniteOutputError as exc:
        raise NonFiniteOutputError(f"{name}: {exc}") from None


# ----------------------------------------------------------------------------- fusers
def load_fuser(
    method: str = DEFAULT_METHOD,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    backend: str = "auto",
    precision: str = "fp32",
) -> GreyFuser:
    """Same as :func:`refinefuse.methods.get_fuser` (kept for existing callers)."""
    return get_fuser(method, weights=weights, device=device, backend=backend, precision=precision)


# ----------------------------------------------------------------------------- files
def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read both images of a pair; a size mismatch is an :class:`InputError` naming both files."""
    ir, vis = read_image(pair.ir), read_image(pair.vis)
    if ir.shape[:2] != vis.shape[:2]:
        raise InputError(
            f"{pair.ir}: size {ir.shape[1]}x{ir.shape[0]} does not match {pair.vis} ({vis.shape[1]}x{vis.shape[0]})"
        )
    return ir, vis


@dataclass(frozen=True)
class FuseJob:
    """One pair to fuse and where its result goes."""

    pair: Pair
    out: Path
    replace: bool = False  # out exists but does not decode (skip_existing): redo it in place


#: pairs read ahead of the one being fused, and fused images waiting to be written
PIPELINE_DEPTH = 2


def run_jobs(
    jobs: Sequence[FuseJob],
    fuser: GreyFuser,
    *,
    mode: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    desc: str = "fuse",
) -> list[Path]:
    """Fuse ``jobs`` in order with reading and writing overlapped with fusion.

    Two I/O threads read up to :data:`PIPELINE_DEPTH` pairs ahead and write finished images
    (PNG decoding, encoding and ONNX Runtime release the GIL), so both cores stay busy while
    memory stays bounded by a few pairs. Errors surface in job order, as in a plain loop, and
    every image fused before the error is written before it propagates (each write is atomic).
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    written: list[Path] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="refinefuse-io") as pool:
        reads: deque[Future[tuple[np.ndarray, np.ndarray]]] = deque()
        writes: deque[Future[Path]] = deque()
        ahead = iter(jobs)

        def read_next() -> None:
            job = next(ahead, None)
            if job is not None:
                reads.append(pool.submit(read_pair, job.pair))

        try:
            for _ in range(PIPELINE_DEPTH):
                read_next()
            for job in tqdm(jobs, desc=desc, unit="pair", disable=not progress or len(jobs) < 2):
                ir, vis = reads.popleft().result()
                read_next()
                fused = fuse_named(ir, vis, fuser, job.pair.ir, mode=mode)
                while len(writes) >= PIPELINE_DEPTH:
                    written.append(writes.popleft().result())
                writes.append(pool.submit(write_image, job.out, fused, overwrite=overwrite or job.replace))
            while writes:
                written.append(writes.popleft().result())
        finally:
            for pending_read in reads:
                pending_read.cancel()
            for pending_write in writes:  # images fused before an error are written, as in a plain loop
                pending_write.exception()
    return written


def output_done(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` exists and decodes as an image (a finished output)."""
    try:
        read_image(path)
    except InputError:
        return False
    return True


def check_writable(folder: Path) -> None:
    """:class:`InputError` unless files can be created in ``folder``. A missing folder is
    created for the test and removed again (writing creates it), so a run that fails later
    leaves nothing behind."""
    created, p = [], folder
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        with tempfile.NamedTemporaryFile(prefix=TEMP_PREFIX, suffix=".tmp", dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None
    finally:
        for d in created:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break


def plan_jobs(
    ir: str | os.PathLike[str],
    vis: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    ext: str = ".png",
    overwrite: bool = False,
    skip_existing: bool = False,
) -> list[FuseJob]:
    """Pair inputs (two files, or two folders paired by file stem) and name the outputs.

    A file pair writes ``out`` (or ``out/<stem><ext>`` when ``out`` is a folder or has no
    suffix); a folder pair writes ``out/<stem><ext>``. Everything is checked before any
    output is written: unpaired names, outputs that exist (unless ``overwrite`` or
    ``skip_existing``), outputs that would replace an input, and that the output folder
    is writable.

    ``skip_existing`` leaves out the pairs whose output exists and decodes; an existing
    output that does not decode is redone (its job has ``replace=True``).
    """
    return _plan(ir, vis, out, ext=ext, overwrite=overwrite, skip_existing=skip_existing)[0]


def _plan(
    ir: str | os.PathLike[str],
    vis: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    ext: str,
    overwrite: bool,
    skip_existing: bool,
) -> tuple[list[FuseJob], int]:
    """:func:`plan_jobs` and how many jobs it left out as already done."""
    if overwrite and skip_existing:
        raise InputError("--skip-existing and --overwrite exclude each other (choose one)")
    ir, vis, out = Path(ir), Path(vis), Path(out)
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"unsupported output extension '{ext}'")
    for p in (ir, vis):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    if ir.is_dir() != vis.is_dir():
        raise InputError(f"{ir} and {vis}: give two files or two folders, not one of each")
    if ir.is_dir():
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder (inputs are folders)")
        jobs = [FuseJob(p, out / f"{p.name}{ext}") for p in pair_folders(ir, vis)]
    else:
        target = out / f"{ir.stem}{ext}" if (out.is_dir() or not out.suffix) else out
        jobs = [FuseJob(Pair(ir.stem, ir, vis), target)]
    inputs = {p.resolve() for j in jobs for p in (j.pair.ir, j.pair.vis)}
    for job in jobs:
        if job.out.resolve() in inputs:
            raise InputError(f"{job.out}: output would overwrite an input image")
        if job.out.exists() and not overwrite and not skip_existing:
            raise InputError(f"{job.out}: output exists (use --overwrite to replace it)")
    check_writable(out if ir.is_dir() else jobs[0].out.parent)
    if not skip_existing:
        return jobs, 0
    # an existing output that does not decode is redone in place
    pending = [FuseJob(job.pair, job.out, replace=job.out.exists()) for job in jobs if not output_done(job.out)]
    return pending, len(jobs) - len(pending)


def fuse_paths(
    ir: str | os.PathLike[str],
    vis: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "fp32",
    mode: str = "auto",
    ext: str = ".png",
    overwrite: bool = False,
    skip_existing: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Fuse a file pair or two folders of pairs; returns the written paths.

    Inputs, the output folder and ``device`` are checked before the model loads; each
    output is written atomically, so an error part-way leaves only complete files. Without
    ``overwrite`` no existing file is ever replaced, even one created during the run.
    ``skip_existing`` fuses only the pairs whose output is missing or does not decode and
    reports the count through ``log`` (e.g. ``print`` to stderr). A folder fusion first
    deletes the temporary files a killed run left in the output folder.
    """
    jobs, n_done = _plan(ir, vis, out, ext=ext, overwrite=overwrite, skip_existing=skip_existing)
    resolve_device(device)
    if skip_existing and log is not None:
        total = len(jobs) + n_done
        log(f"refinefuse: {n_done} of {total} output{'s' if total != 1 else ''} already exist; fusing {len(jobs)}")
    if Path(ir).is_dir():
        remove_stale_temps(out)
    if not jobs:
        return []
    fuser = get_fuser(method, weights=weights, device=device, backend=backend, precision=precision)
    return run_jobs(jobs, fuser, mode=mode, overwrite=overwrite, progress=progress, desc=f"fuse ({method})")


def fuse_images(
    ir: np.ndarray | str | os.PathLike[str],
    vis: np.ndarray | str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    weights: str | os.PathLike[str] | None = None,
    model: torch.nn.Module | None = None,
    device: str = "auto",
    mode: str = "auto",
) -> np.ndarray:
    """Fuse one pair given as arrays (``read_image`` layout) or file paths; returns uint8.

    ``model`` (an in-memory network) takes precedence over ``method``/``weights``.
    """
    if not isinstance(ir, np.ndarray) or not isinstance(vis, np.ndarray):
        pair = (
            Pair("pair", Path(ir), Path(vis))
            if not isinstance(ir, np.ndarray) and not isinstance(vis, np.ndarray)
            else None
        )
        if pair is None:
            raise TypeError("give ir and vis both as arrays or both as paths")
        ir, vis = read_pair(pair)
    fuser = network_fuser(model, device) if model is not None else get_fuser(method, weights=weights, device=device)
    return fuse_arrays(ir, vis, fuser, mode=mode)


def demo(
    out: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Fuse the bundled MSRS example pair into ``out`` (a folder): writes ``<method>.png``
    and ``overview.png`` (ir | vis | fused side by side). Returns the fused image path."""
    out = Path(out)
    fused_path, overview_path = out / f"{method}.png", out / "overview.png"
    for p in (fused_path, overview_path):
        if p.exists() and not overwrite:
            raise InputError(f"{p}: output exists (use --overwrite to replace it)")
    resolve_device(device)
    ir, vis = read_pair(EXAMPLE_PAIR)
    fused = fuse_named(ir, vis, get_fuser(method, weights=weights, device=device), EXAMPLE_PAIR.ir)
    write_image(fused_path, fused, overwrite=overwrite)
    as_rgb = [np.dstack([img] * 3) if img.ndim == 2 else img for img in (ir, vis, fused)]
    write_image(overview_path, np.hstack(as_rgb), overwrite=overwrite)
    return fused_path
