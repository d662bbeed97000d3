"""Dataset descriptions: the bundled evaluation datasets and any folder pair, one dataclass.

A :class:`DatasetSpec` says where the pairs of a dataset live (two folders, paired by file
stem), how they are fused (``mode``) and how they are shown (title, slot labels, figure
pair). Relative folders are under ``<data root>/data`` (:func:`refinefuse.paths.dataset_dir`);
absolute folders are used as they are (:func:`folder_dataset`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .paths import dataset_dir

#: how a dataset is fused (see :func:`refinefuse.fuse.fuse_arrays`)
DATASET_MODES = ("ir-vis", "medical")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of ir/vis pairs.

    The ``ir`` slot holds the infrared image, or for medical data the functional / CT image;
    the ``vis`` slot holds the visible image or the MRI. ``boxes_ir`` / ``boxes_vis`` are
    optional folders of YOLO boxes (``<stem>.txt``) annotated on each slot.
    """

    name: str  #: short name; results go to ``OUT/<name>/``
    title: str  #: caption title
    ir: str | Path  #: folder of the ir slot (relative: under ``<data root>/data``)
    vis: str | Path  #: folder of the vis slot
    mode: str = "ir-vis"  #: ``"ir-vis"`` or ``"medical"``
    ir_label: str = "Infrared"
    vis_label: str = "Visible"
    figure_pair: str | None = None  #: default pair of the figure (None: the first pair)
    boxes_ir: str | Path | None = None
    boxes_vis: str | Path | None = None

    def folder(self, path: str | Path, root: str | os.PathLike[str] | None = None) -> Path:
        """``path`` (one of this spec's folders) resolved against the data root when relative."""
        return Path(path) if Path(path).is_absolute() else dataset_dir(str(path), root)

    def folders(self, root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
        """``(ir folder, vis folder)`` under data root ``root`` (default :func:`refinefuse.paths.data_root`)."""
        return self.folder(self.ir, root), self.folder(self.vis, root)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "msrs",
            "MSRS test",
            "msrs/test/ir",
            "msrs/test/vi",
            figure_pair="00828N",
            boxes_ir="msrs/test/boxes_ir",
            boxes_vis="msrs/test/boxes_vi",
        ),
        DatasetSpec("tno", "TNO", "tno/ir", "tno/vi"),
        DatasetSpec("roadscene", "RoadScene", "roadscene/ir", "roadscene/vi"),
        DatasetSpec("mri_ct", "MRI-CT", "medical/MRI_CT/CT", "medical/MRI_CT/MRI", "medical", "CT", "MRI"),
        DatasetSpec("mri_pet", "MRI-PET", "medical/MRI_PET/PET", "medical/MRI_PET/MRI", "medical", "PET", "MRI"),
        DatasetSpec(
            "mri_spect", "MRI-SPECT", "medical/MRI_SPECT/SPECT", "medical/MRI_SPECT/MRI", "medical", "SPECT", "MRI"
        ),
    )
}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset description by its name: ``refinefuse reproduce --dataset NAME`` and
    ``PairedFusionDataset.from_spec`` then use it. Returns ``spec``."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.mode not in DATASET_MODES:
        raise ValueError(f"unknown mode {spec.mode!r} (choose from {', '.join(DATASET_MODES)})")
    DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """Names of the bundled datasets."""
    return list(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """A bundled dataset by name; :class:`InputError` listing the names if unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        raise InputError(
            f"unknown dataset '{name}' (choose from {', '.join(DATASETS)}; "
            "other folders: --ir DIR --vis DIR --name NAME)"
        ) from None


def folder_dataset(
    ir: str | os.PathLike[str], vis: str | os.PathLike[str], name: str, mode: str = "ir-vis"
) -> DatasetSpec:
    """A dataset of any two folders paired by file stem, named ``name`` (a plain folder name).

    Slot labels: ``Infrared`` / ``Visible`` in ``ir-vis`` mode, the folder names in ``medical``
    mode (e.g. ``PET`` / ``MRI``). Folders are made absolute, so they do not depend on the data root.
    """
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise InputError(f"--name '{name}': give a plain folder name (results go to OUT/NAME)")
    if mode not in DATASET_MODES:
        raise InputError(f"unknown mode '{mode}' (choose from {', '.join(DATASET_MODES)})")
    ir, vis = Path(ir).absolute(), Path(vis).absolute()
    for p in (ir, vis):
        if not p.is_dir():
            raise InputError(f"{p}: no such folder")
    labels = (ir.name, vis.name) if mode == "medical" else ("Infrared", "Visible")
    return DatasetSpec(name, name, ir, vis, mode, *labels)
