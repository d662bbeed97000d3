"""Inference API: fuse image arrays, files or folders with RefineFuse or a baseline.

Every method is a *grey fuser*: ``fuser(ir_y, vis_y) -> fused_y`` on float32 ``(H, W)``
arrays in [0, 1]. This module wraps any fuser with the colour and modality handling of
the paper (Sect. 4.1; DESIGN.md Sect. 2) and with file handling:

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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .colour import luminance, rgb_to_ycrcb, to_uint8, ycrcb_to_rgb
from .errors import InputError
from .io import IMAGE_EXTENSIONS, Pair, pair_folders, read_image, write_image

GreyFuser = Callable[[np.ndarray, np.ndarray], np.ndarray]
MODES = ("auto", "ir-vis", "medical")
BACKENDS = ("auto", "torch", "onnx")
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "refinefuse_msrs.pt"
EXAMPLE_PAIR = Pair(
    "msrs_00828N",
    Path(__file__).parent / "assets" / "msrs_00828N_ir.png",
    Path(__file__).parent / "assets" / "msrs_00828N_vis.png",
)


# ----------------------------------------------------------------------------- arrays
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
    fused = np.clip(np.asarray(fuser(ir_y, vis_y), dtype=np.float32), 0.0, 1.0)
    if fused.shape != ir_y.shape:
        raise RuntimeError(f"fuser returned shape {fused.shape}, expected {ir_y.shape}")
    if colour_src is None:
        return to_uint8(fused)
    _, crcb = rgb_to_ycrcb(colour_src)
    return to_uint8(ycrcb_to_rgb(fused, crcb))


# ----------------------------------------------------------------------------- fusers
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    return dev


def network_fuser(model: torch.nn.Module, device: str | torch.device = "auto", **tiling) -> GreyFuser:
    """Wrap a RefineFuse model as a grey fuser (inference mode, tiled for large images)."""
    from .models.inference import fuse_tensor

    dev = resolve_device(device)
    model = model.to(dev).eval()

    def fuse(ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        ir_t = torch.from_numpy(np.ascontiguousarray(ir_y))[None, None].to(dev)
        vis_t = torch.from_numpy(np.ascontiguousarray(vis_y))[None, None].to(dev)
        return fuse_tensor(model, ir_t, vis_t, **tiling)[0, 0].float().cpu().numpy()

    return fuse


def default_weights() -> Path | None:
    """The weights shipped inside the package, or ``None`` when none ship."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None


def onnx_network_fuser(model: torch.nn.Module, weights: str | os.PathLike) -> GreyFuser:
    """The network through ONNX Runtime on the CPU (about twice as fast as PyTorch eager there,
    same output to 1e-6; see docs/efficiency.md). The export is cached per checkpoint
    (:func:`refinefuse.export.cached_export`). Images larger than the tiling threshold go
    through the tiled PyTorch path instead, which bounds memory."""
    from .export import cached_export, onnx_fuser
    from .models.inference import DEFAULT_MAX_PIXELS

    runtime = onnx_fuser(cached_export(model, weights), threads=torch.get_num_threads())
    tiled = network_fuser(model, "cpu")

    def fuse(ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        return tiled(ir_y, vis_y) if ir_y.size > DEFAULT_MAX_PIXELS else runtime(ir_y, vis_y)

    return fuse


def load_fuser(
    method: str = "refinefuse",
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    backend: str = "auto",
) -> GreyFuser:
    """A grey fuser by name: ``"refinefuse"`` (network; ``weights`` or the shipped default)
    or a classical baseline from :mod:`refinefuse.baselines` (``mean``, ``max``, ...).

    ``backend`` (network only): ``"auto"`` runs ONNX Runtime when the device is the CPU and
    the ``onnx`` extra is installed (falling back to PyTorch, with a warning, if the export
    fails), else PyTorch; ``"torch"`` always PyTorch; ``"onnx"`` ONNX Runtime (CPU) or an error.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if method == "refinefuse":
        from .checkpoint import load_model
        from .export import onnx_available

        path = Path(weights) if weights is not None else default_weights()
        if path is None:
            raise InputError("no trained weights ship with this version: pass --weights CKPT (a checkpoint from `refinefuse train`)")
        model, dev = load_model(path, map_location="cpu"), resolve_device(device)
        if backend == "onnx":
            if dev.type != "cpu":
                raise InputError("--backend onnx runs on the CPU only (use --device cpu)")
            return onnx_network_fuser(model, path)
        if backend == "auto" and dev.type == "cpu" and onnx_available():
            try:
                return onnx_network_fuser(model, path)
            except Exception as exc:  # noqa: BLE001 - any export/runtime problem: the PyTorch path still works
                warnings.warn(f"ONNX Runtime path unavailable ({type(exc).__name__}: {exc}); using PyTorch", stacklevel=2)
        return network_fuser(model, dev)
    if weights is not None:
        raise InputError(f"--weights applies to the network only, not to method '{method}'")
    if backend != "auto":
        raise InputError(f"--backend applies to the network only, not to method '{method}'")
    from .baselines import get_baseline

    return get_baseline(method)


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


def plan_jobs(ir: str | os.PathLike, vis: str | os.PathLike, out: str | os.PathLike, *, ext: str = ".png", overwrite: bool = False) -> list[FuseJob]:
    """Pair inputs (two files, or two folders paired by file stem) and name the outputs.

    A file pair writes ``out`` (or ``out/<stem><ext>`` when ``out`` is a folder or has no
    suffix); a folder pair writes ``out/<stem><ext>``. Everything is checked before any
    output is written: unpaired names, outputs that exist (unless ``overwrite``) and
    outputs that would replace an input.
    """
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
        if job.out.exists() and not overwrite:
            raise InputError(f"{job.out}: output exists (use --overwrite to replace it)")
    return jobs


def fuse_paths(
    ir: str | os.PathLike,
    vis: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "refinefuse",
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    backend: str = "auto",
    mode: str = "auto",
    ext: str = ".png",
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Fuse a file pair or two folders of pairs; returns the written paths.

    Inputs are checked before the model loads; each output is written atomically, so an
    error part-way leaves only complete files.
    """
    jobs = plan_jobs(ir, vis, out, ext=ext, overwrite=overwrite)
    fuser = load_fuser(method, weights=weights, device=device, backend=backend)
    written = []
    for job in tqdm(jobs, desc=f"fuse ({method})", unit="pair", disable=not progress or len(jobs) < 2):
        ir_img, vis_img = read_pair(job.pair)
        written.append(write_image(job.out, fuse_arrays(ir_img, vis_img, fuser, mode=mode)))
    return written


def fuse_images(
    ir: np.ndarray | str | os.PathLike,
    vis: np.ndarray | str | os.PathLike,
    *,
    method: str = "refinefuse",
    weights: str | os.PathLike | None = None,
    model: torch.nn.Module | None = None,
    device: str = "auto",
    mode: str = "auto",
) -> np.ndarray:
    """Fuse one pair given as arrays (``read_image`` layout) or file paths; returns uint8.

    ``model`` (an in-memory network) takes precedence over ``method``/``weights``.
    """
    if not isinstance(ir, np.ndarray) or not isinstance(vis, np.ndarray):
        pair = Pair("pair", Path(ir), Path(vis)) if not isinstance(ir, np.ndarray) and not isinstance(vis, np.ndarray) else None
        if pair is None:
            raise TypeError("give ir and vis both as arrays or both as paths")
        ir, vis = read_pair(pair)
    fuser = network_fuser(model, device) if model is not None else load_fuser(method, weights=weights, device=device)
    return fuse_arrays(ir, vis, fuser, mode=mode)


def demo(out: str | os.PathLike, *, method: str = "refinefuse", weights: str | os.PathLike | None = None,
         device: str = "auto", overwrite: bool = False) -> Path:
    """Fuse the bundled MSRS example pair into ``out`` (a folder): writes ``<method>.png``
    and ``overview.png`` (ir | vis | fused side by side). Returns the fused image path."""
    out = Path(out)
    fused_path, overview_path = out / f"{method}.png", out / "overview.png"
    for p in (fused_path, overview_path):
        if p.exists() and not overwrite:
            raise InputError(f"{p}: output exists (use --overwrite to replace it)")
    ir, vis = read_pair(EXAMPLE_PAIR)
    fused = fuse_arrays(ir, vis, load_fuser(method, weights=weights, device=device))
    write_image(fused_path, fused)
    as_rgb = [np.dstack([img] * 3) if img.ndim == 2 else img for img in (ir, vis, fused)]
    write_image(overview_path, np.hstack(as_rgb))
    return fused_path
