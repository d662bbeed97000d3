"""Memory-bounded inference: whole-image fusion, or overlapping tiles with feathered blending.

Images up to ``max_pixels`` go through the network in one piece. Larger ones are cut into
overlapping tiles; each tile's output is weighted by a linear ramp over the overlap (the
ramp is omitted on image borders) and the weighted outputs are averaged, so seams do not
show. Peak memory then depends on the tile size, not on the image size. PSIM attention is
global within what the network sees, so tiled output differs slightly from whole-image
output (see ``tests/models/test_refinefuse.py`` for the measured tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["fuse_tensor", "fuse_tiles", "tile_starts", "feather_ramp", "DEFAULT_MAX_PIXELS", "DEFAULT_OVERLAP"]

#: Largest image (H * W) fused in one piece: 1024 x 1024. Measured peak RSS on CPU
#: (benchmarks/bench_memory.py, paper-size model): 1024x768 whole 1.8 GiB; 4096x3072 in
#: 1024-px tiles 2.7 GiB.
DEFAULT_MAX_PIXELS = 1024 * 1024
#: Default overlap (pixels) between neighbouring tiles.
DEFAULT_OVERLAP = 64


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap."""
    if tile >= length:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def feather_ramp(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of length ``size``: linear ramp ``1/(o+1) .. 1`` over ``overlap`` px at each ramped end."""
    w = torch.ones(size)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, size)
        if ramp_start:
            w[:n] = torch.minimum(w[:n], ramp[:n])
        if ramp_end:
            w[size - n :] = torch.minimum(w[size - n :], ramp[:n].flip(0))
    return w


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2:
        return x[None, None]
    if x.dim() == 3:
        return x[:, None] if x.shape[0] != 1 else x[None]
    if x.dim() == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"{name}: expected (H, W), (1, H, W) or (N, 1, H, W), got {tuple(x.shape)}")


def fuse_tensor(
    model: nn.Module,
    ir: torch.Tensor,
    vis: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
) -> torch.Tensor:
    """Fuse ``ir`` and ``vis`` (same shape: ``(H, W)``, ``(1, H, W)`` or ``(N, 1, H, W)``, in [0, 1]).

    Runs under :func:`torch.inference_mode` with the model temporarily in eval mode, on the
    model's device; the result (same shape as ``ir``, in [0, 1]) is returned on ``ir``'s
    device. ``tile``: tile side in pixels (forces tiling); by default images with more than
    ``max_pixels`` pixels are tiled with side ``floor(sqrt(max_pixels))``. ``overlap``:
    pixels shared by neighbouring tiles (feathered). ``progress``: tqdm bar over tiles
    (default: only when there are 16 tiles or more).
    """
    if ir.shape != vis.shape:
        raise ValueError(f"ir and vis differ in shape: {tuple(ir.shape)} vs {tuple(vis.shape)}")
    shape, out_device = ir.shape, ir.device
    ir4, vis4 = _as_batch(ir, "ir").float(), _as_batch(vis, "vis").float()
    n, _, h, w = ir4.shape
    param = next(model.parameters(), None)
    device = param.device if param is not None else out_device
    if tile is None and h * w > max_pixels:
        tile = math.isqrt(max_pixels)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if tile is None or (tile >= h and tile >= w):
                out = model(ir4.to(device), vis4.to(device)).to(out_device)
            else:
                out = _fuse_tiled(model, ir4, vis4, int(tile), int(overlap), device, progress)
    finally:
        model.train(was_training)
    return out.reshape(shape)


def _fuse_tiled(
    model: nn.Module,
    ir: torch.Tensor,
    vis: torch.Tensor,
    tile: int,
    overlap: int,
    device: torch.device,
    progress: bool | None,
) -> torch.Tensor:
    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(a.to(device), b.to(device)).to(ir.device)

    return fuse_tiles(run, ir, vis, tile, overlap, progress)


def fuse_tiles(
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ir: torch.Tensor,
    vis: torch.Tensor,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    progress: bool | None = None,
) -> torch.Tensor:
    """Tiled fusion of ``(N, 1, H, W)`` tensors by any runner ``run(ir_tile, vis_tile) -> fused_tile``
    (the network, or an ONNX Runtime session): square tiles of side ``tile`` overlapping by
    ``overlap`` pixels, blended with :func:`feather_ramp` weights."""
    n, _, h, w = ir.shape
    th, tw = min(tile, h), min(tile, w)
    overlap = max(0, min(overlap, th - 1, tw - 1))
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    acc = torch.zeros((n, 1, h, w), device=ir.device)
    weight = torch.zeros((1, 1, h, w), device=ir.device)
    boxes = [(y, x) for y in ys for x in xs]
    show = len(boxes) >= 16 if progress is None else progress
    for y, x in tqdm(boxes, desc="tiles", unit="tile", disable=not show, leave=False):
        wy = feather_ramp(th, overlap, y > 0, y + th < h)
        wx = feather_ramp(tw, overlap, x > 0, x + tw < w)
        wt = (wy[:, None] * wx[None, :]).to(ir.device)
        window = (..., slice(y, y + th), slice(x, x + tw))
        out = run(ir[window], vis[window])
        acc[window] += out * wt
        weight[window] += wt
    return acc / weight
