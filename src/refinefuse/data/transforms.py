"""Paired augmentation on stacked arrays (paper Sect. 4.1): every transform is applied
identically to all channels of a ``(C, H, W)`` float32 stack (ir, vis, mask), so the
images and the mask stay aligned.

Randomness comes from an explicit ``numpy.random.Generator``, so that the trainer can
derive each item's augmentation from (seed, epoch, index) and a resumed run sees exactly
the crops an uninterrupted run would, whatever the number of workers or processes.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "target_size",
    "pad_to",
    "crop",
    "random_crop",
    "center_crop",
    "random_rot90_flip",
    "random_rescale",
    "random_flat_patch",
]


def _randint(rng: np.random.Generator, high: int) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(rng.integers(high)) if high > 1 else 0


def target_size(h: int, w: int, size: int | None, small_images: str = "whole", multiple: int = 1) -> tuple[int, int]:
    """Output ``(h, w)`` of a crop of ``size`` on an ``h x w`` image.

    A side shorter than ``size`` stays whole (``small_images="whole"``) or is padded up to
    ``size`` (``"pad"``); ``size=None`` keeps the whole image. Sides are then rounded down
    to a multiple of ``multiple`` (the network's total stride).
    """
    if small_images not in ("whole", "pad"):
        raise ValueError(f"small_images must be 'whole' or 'pad', got {small_images!r}")
    if size is None:
        th, tw = h, w
    elif small_images == "pad":
        th, tw = size, size
    else:
        th, tw = min(size, h), min(size, w)
    th, tw = th - th % multiple, tw - tw % multiple
    return th, tw


def pad_to(stack: np.ndarray, h: int, w: int) -> np.ndarray:
    """Reflect-pad a ``(C, H, W)`` stack at the bottom/right up to at least ``h x w``."""
    ph, pw = max(0, h - stack.shape[1]), max(0, w - stack.shape[2])
    if ph == 0 and pw == 0:
        return stack
    return np.pad(stack, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(stack.shape[1:]) > 1 else "edge")


def crop(stack: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    return stack[:, top : top + h, left : left + w]


def random_crop(stack: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Random ``h x w`` window of a ``(C, H, W)`` stack (padding first if it is smaller)."""
    stack = pad_to(stack, h, w)
    top = _randint(rng, stack.shape[1] - h + 1)
    left = _randint(rng, stack.shape[2] - w + 1)
    return crop(stack, top, left, h, w)


def center_crop(stack: np.ndarray, h: int, w: int) -> np.ndarray:
    """Central ``h x w`` window (padding first if it is smaller)."""
    stack = pad_to(stack, h, w)
    return crop(stack, (stack.shape[1] - h) // 2, (stack.shape[2] - w) // 2, h, w)


def random_rot90_flip(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rotation by a multiple of 90 degrees, then a random horizontal flip.

    Together these give all 8 symmetries of the square (vertical flip = rot180 + hflip).
    Non-square stacks only rotate by 0 or 180 degrees so that their shape is kept.
    """
    square = stack.shape[1] == stack.shape[2]
    k = _randint(rng, 4) if square else 2 * _randint(rng, 2)
    if k:
        stack = np.rot90(stack, k, axes=(1, 2))
    if _randint(rng, 2):
        stack = stack[:, :, ::-1]
    return stack


def random_rescale(stack: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Resize a ``(3, H, W)`` stack ``[ir, vis, mask]`` by a factor drawn log-uniformly from ``[low, high]``.

    Images are resized bilinearly, the mask by nearest neighbour (it stays {0, 1}). Upscaling
    shrunk training images (MSRS ``train128`` frames are about 5x smaller than the test
    frames) shows the network the large smooth regions that it meets at full resolution.
    """
    factor = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else float(low)
    h, w = stack.shape[1:]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))  # cv2: (width, height)
    if size == (w, h):
        return stack
    images = [cv2.resize(np.ascontiguousarray(c), size, interpolation=cv2.INTER_LINEAR) for c in stack[:-1]]
    mask = cv2.resize(np.ascontiguousarray(stack[-1]), size, interpolation=cv2.INTER_NEAREST)
    return np.stack([*images, mask])


def random_flat_patch(stack: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """With probability ``prob``, paint one random rectangle of a ``[ir, vis, mask]`` stack flat.

    The rectangle (a quarter to three quarters of each side) gets the same value in both
    images, 0 or 1 (half each), and mask 0. Such regions (black backgrounds of medical
    scans, saturated skies) must fuse to exactly that value; the training frames rarely
    have them.
    """
    if prob <= 0 or rng.uniform() >= prob:
        return stack
    h, w = stack.shape[1:]
    ph, pw = (int(rng.integers(max(1, s // 4), max(2, 3 * s // 4 + 1))) for s in (h, w))
    top, left = _randint(rng, h - ph + 1), _randint(rng, w - pw + 1)
    stack = stack.copy()
    stack[:2, top : top + ph, left : left + pw] = float(_randint(rng, 2))
    stack[2, top : top + ph, left : left + pw] = 0.0
    return stack
