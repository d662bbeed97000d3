"""Paired infrared-visible training data with salient masks.

Layout of a dataset folder (pairs match by file stem, extensions may differ)::

    DIR/ir/       infrared images (grey; colour IR is reduced to its luminance)
    DIR/vi/       visible images (RGB -> Y, the same conversion as fusion; ``vis/`` also accepted)
    DIR/label/    optional MSRS segmentation PNGs (class ids)          -> mask "labels"
    DIR/boxes_ir/ optional YOLO boxes annotated on ir (``<stem>.txt``) -> mask "boxes_ir"
    DIR/boxes_vi/ optional YOLO boxes annotated on vis                 -> mask "boxes_vi"
    DIR/masks/    optional precomputed masks (non-zero = salient)      -> mask "masks"

``mask="infer"`` (default) takes the first of label/, boxes_ir/, boxes_vi/, masks/ that
exists, else ``"auto"`` (threshold of the infrared image, see
:func:`refinefuse.data.masks.auto_salient_mask`). ``"none"`` gives an empty salient mask
(the loss then uses the contrast mask alone).

Each item is a dict ``{"ir", "vis", "mask"}`` of float32 ``(1, h, w)`` tensors in [0, 1]
plus ``"name"``. Images are read, converted and augmented in ``__getitem__``, i.e. in the
DataLoader workers. With fork-started workers, call ``cv2.setNumThreads(1)`` in the parent
first (the trainer does): a worker forked while OpenCV's thread pool runs can deadlock.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..colour import luminance
from ..errors import InputError
from ..io import Pair, evenly_spaced, list_images, pair_folders, read_image, read_image_header
from . import transforms as T

if TYPE_CHECKING:
    from ..datasets import DatasetSpec
from .masks import (
    MSRS_SALIENT_CLASSES,
    auto_salient_mask,
    mask_from_boxes,
    mask_from_image,
    mask_from_labels,
    read_yolo_boxes,
)

__all__ = ["MASK_SOURCES", "PairedFusionDataset", "collate_pairs"]

MASK_SOURCES = ("infer", "labels", "boxes_ir", "boxes_vi", "masks", "auto", "none")
_VIS_DIRS = ("vi", "vis", "visible")
_LABEL_DIRS = ("label", "labels")


def _first_dir(root: Path, names: Iterable[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


class PairedFusionDataset(Dataset):
    """Aligned ``ir``/``vi`` pairs of a folder, with salient masks and paper augmentation.

    Args:
        root: dataset folder (layout in the module docstring).
        mask: one of :data:`MASK_SOURCES`.
        crop: square crop size (paper: 256); ``None`` keeps whole images.
        augment: random crops + rotations by 90 degrees + flips; otherwise a centre crop.
        small_images: ``"whole"`` (a side shorter than ``crop`` is used whole) or ``"pad"``
            (reflect-padded up to ``crop``).
        multiple: crop sides are rounded down to a multiple of this (network stride).
        salient_classes: label ids counted as salient (MSRS: 1 car, 2 person, 3 bike).
        box_classes: YOLO classes to fill (None: all boxes).
        mask_dir: folder name of precomputed masks.
        auto_k, auto_min_area: parameters of the automatic mask.
        max_pairs: use at most this many pairs, evenly spaced over the sorted names.
        rescale: ``(low, high)``: with ``augment``, resize each pair by a random factor in
            this range before cropping (e.g. ``(1, 4)`` to train shrunk frames at full scale).
        ir_dir, vis_dir: the two image folders, relative to ``root`` (or absolute): default
            ``ir/`` and the first of ``vi/``, ``vis/``, ``visible/`` (e.g. ``CT`` and ``MRI``
            for a medical dataset, as in :class:`refinefuse.datasets.DatasetSpec`).
        flat_patch: with ``augment``, probability of painting one rectangle flat black or
            white in both images (:func:`refinefuse.data.transforms.random_flat_patch`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mask: str = "infer",
        crop: int | None = 256,
        augment: bool = True,
        small_images: str = "whole",
        multiple: int = 16,
        salient_classes: Sequence[int] = MSRS_SALIENT_CLASSES,
        box_classes: Sequence[int] | None = None,
        mask_dir: str = "masks",
        auto_k: float = 2.0,
        auto_min_area: float = 0.001,
        max_pairs: int | None = None,
        rescale: Sequence[float] | None = None,
        flat_patch: float = 0.0,
        ir_dir: str | os.PathLike[str] = "ir",
        vis_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such dataset folder")
        if mask not in MASK_SOURCES:
            raise InputError(f"{self.root}: unknown mask source {mask!r} (choose one of {', '.join(MASK_SOURCES)})")
        if crop is not None and crop < multiple:
            raise InputError(f"crop {crop} is smaller than the network stride {multiple}")
        T.target_size(1, 1, crop, small_images)  # validates small_images
        ir_folder = self.root / ir_dir
        vis_folder = self.root / vis_dir if vis_dir is not None else _first_dir(self.root, _VIS_DIRS)
        if not ir_folder.is_dir() or vis_folder is None or not vis_folder.is_dir():
            wanted = f"'{ir_dir}/' and '{vis_dir if vis_dir is not None else 'vi'}/'"
            raise InputError(f"{self.root}: expected sub-folders {wanted} with paired images")
        pairs = pair_folders(ir_folder, vis_folder, strict=True)
        pairs = evenly_spaced(pairs, max_pairs)
        self.pairs: list[Pair] = pairs
        self._check_headers()
        if rescale is not None and (len(rescale) != 2 or not 0 < rescale[0] <= rescale[1]):
            raise InputError(f"rescale must be two factors 0 < low <= high, got {list(rescale)}")
        self.flat_patch = float(flat_patch)
        self.rescale = None if rescale is None else (float(rescale[0]), float(rescale[1]))
        self.crop, self.augment, self.small_images, self.multiple = crop, augment, small_images, multiple
        self.salient_classes = tuple(salient_classes)
        self.box_classes = None if box_classes is None else tuple(box_classes)
        self.auto_k, self.auto_min_area = auto_k, auto_min_area
        self.mask_source, self.mask_files = self._resolve_masks(mask, mask_dir)

    def _check_headers(self) -> None:
        """Read the header of both images of every pair, so that an unreadable file, an
        unsupported pixel type or channel count, or an ir/vis size mismatch fails here with
        one line naming the file, not in a loader worker mid-epoch (~0.1 s per 1000 pairs)."""
        for pair in self.pairs:
            iw, ih, _ = read_image_header(pair.ir)
            vw, vh, _ = read_image_header(pair.vis)
            if (iw, ih) != (vw, vh):
                raise InputError(f"{pair.vis}: size {vw}x{vh} differs from its infrared image {pair.ir} ({iw}x{ih})")

    @classmethod
    def from_spec(
        cls, spec: DatasetSpec, root: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> PairedFusionDataset:
        """The pairs of a :class:`~refinefuse.datasets.DatasetSpec` (the description that
        ``reproduce`` uses); ``root`` is the data root, ``kwargs`` as for the constructor.
        Mask folders (``label/``, ``boxes_ir/``, ...) are looked for beside the two image folders."""
        ir, vis = spec.folders(root)
        return cls(ir.parent, ir_dir=ir.name, vis_dir=vis if vis.parent != ir.parent else vis.name, **kwargs)

    # ------------------------------------------------------------------ masks
    def _resolve_masks(self, mask: str, mask_dir: str) -> tuple[str, list[Path] | None]:
        dirs = {
            "labels": _first_dir(self.root, _LABEL_DIRS),
            "boxes_ir": _first_dir(self.root, ["boxes_ir"]),
            "boxes_vi": _first_dir(self.root, ["boxes_vi", "boxes_vis"]),
            "masks": _first_dir(self.root, [mask_dir]),
        }
        if mask == "infer":
            mask = next((name for name, d in dirs.items() if d is not None), "auto")
        if mask in ("auto", "none"):
            return mask, None
        folder = dirs[mask]
        if folder is None:
            wanted = {"labels": "label", "masks": mask_dir}.get(mask, mask)
            raise InputError(f"{self.root / wanted}: no such folder (needed by mask source '{mask}')")
        if mask.startswith("boxes"):
            files = {p.stem: p for p in folder.glob("*.txt")}
        else:
            files = {p.stem: p for p in list_images(folder)}
        missing = [p.name for p in self.pairs if p.name not in files]
        if missing:
            extra = f" ({len(missing)} pairs without one)" if len(missing) > 1 else ""
            raise InputError(f"{folder}: no mask file for pair '{missing[0]}'{extra}")
        return mask, [files[p.name] for p in self.pairs]

    def salient_mask(self, index: int, ir: np.ndarray) -> np.ndarray:
        """Float32 {0, 1} ``(H, W)`` salient mask of pair ``index`` (``ir``: its infrared image)."""
        source = self.mask_source
        if source == "none":
            return np.zeros(ir.shape, np.float32)
        if source == "auto":
            return auto_salient_mask(ir, self.auto_k, self.auto_min_area)
        assert self.mask_files is not None  # every file-based mask source has its files
        path = self.mask_files[index]
        if source.startswith("boxes"):
            return mask_from_boxes(read_yolo_boxes(path), ir.shape, self.box_classes)
        img = read_image(path)
        if img.shape[:2] != ir.shape:
            raise InputError(
                f"{path}: mask is {img.shape[1]}x{img.shape[0]} but the image pair is {ir.shape[1]}x{ir.shape[0]}"
            )
        if source == "labels":
            if img.ndim == 3:
                raise InputError(f"{path}: label map must be a single-channel image of class ids")
            return mask_from_labels(img, self.salient_classes)
        return mask_from_image(img)

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> np.ndarray:
        """Un-augmented ``(3, H, W)`` float32 stack ``[ir, vis_y, mask]`` of pair ``index``."""
        pair = self.pairs[index]
        ir = luminance(read_image(pair.ir))
        vis = luminance(read_image(pair.vis))
        if ir.shape != vis.shape:
            raise InputError(
                f"{pair.vis}: size {vis.shape[1]}x{vis.shape[0]} differs from its infrared image "
                f"{pair.ir} ({ir.shape[1]}x{ir.shape[0]})"
            )
        return np.stack([ir, vis, self.salient_mask(index, ir)])

    def __getitem__(self, key: int | tuple[int, int | Sequence[int]]) -> dict[str, Any]:
        """``key``: an index, or ``(index, seed)`` to fix the augmentation (``seed``: int or ints)."""
        seed: int | Sequence[int]
        if isinstance(key, tuple):
            index, seed = key
        else:
            index, seed = key, int(torch.randint(2**62, ()))  # torch RNG: seeded per DataLoader worker
        stack = self.load(index)
        rng = np.random.default_rng(seed)
        if self.augment and self.rescale is not None:
            stack = T.random_rescale(stack, *self.rescale, rng)
        h, w = T.target_size(stack.shape[1], stack.shape[2], self.crop, self.small_images, self.multiple)
        if h == 0 or w == 0:
            raise InputError(f"{self.pairs[index].ir}: image smaller than the network stride {self.multiple}")
        if self.augment:
            stack = T.random_rot90_flip(T.random_crop(stack, h, w, rng), rng)
            stack = T.random_flat_patch(stack, self.flat_patch, rng)
        else:
            stack = T.center_crop(stack, h, w)
        tensor = torch.from_numpy(np.ascontiguousarray(stack))
        return {"ir": tensor[0:1], "vis": tensor[1:2], "mask": tensor[2:3], "name": self.pairs[index].name}

    # ------------------------------------------------------------------ splitting
    def subset(self, indices: Sequence[int], **overrides: Any) -> PairedFusionDataset:
        """A copy restricted to ``indices`` with some attributes replaced (e.g. ``augment=False``)."""
        new = copy.copy(self)
        new.pairs = [self.pairs[i] for i in indices]
        new.mask_files = None if self.mask_files is None else [self.mask_files[i] for i in indices]
        for key, value in overrides.items():
            if not hasattr(new, key):
                raise AttributeError(key)
            setattr(new, key, value)
        return new

    def split(self, n_val: int) -> tuple[PairedFusionDataset, PairedFusionDataset | None]:
        """Hold out ``n_val`` evenly spaced pairs as a validation set (no augmentation, centre crop)."""
        if n_val <= 0:
            return self, None
        if n_val >= len(self):
            raise InputError(f"{self.root}: {len(self)} pairs cannot spare {n_val} for validation (lower val_pairs)")
        val_idx = sorted(set(np.linspace(0, len(self) - 1, n_val + 2)[1:-1].round().astype(int).tolist()))
        train_idx = [i for i in range(len(self)) if i not in set(val_idx)]
        return self.subset(train_idx), self.subset(val_idx, augment=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, pairs={len(self)}, mask={self.mask_source!r}, "
            f"crop={self.crop}, augment={self.augment})"
        )


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items; when their sizes differ (whole small images), crop all to the common size."""
    h = min(it["ir"].shape[1] for it in items)
    w = min(it["ir"].shape[2] for it in items)
    batch: dict[str, Any] = {key: torch.stack([it[key][:, :h, :w] for it in items]) for key in ("ir", "vis", "mask")}
    batch["name"] = [it["name"] for it in items]
    return batch
