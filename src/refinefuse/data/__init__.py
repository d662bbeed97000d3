"""Training data: paired infrared-visible folders, salient masks, paired augmentation."""

from .masks import (
    MSRS_SALIENT_CLASSES,
    auto_salient_mask,
    mask_from_boxes,
    mask_from_image,
    mask_from_labels,
    read_yolo_boxes,
)
from .paired import MASK_SOURCES, PairedFusionDataset, collate_pairs

__all__ = [
    "MASK_SOURCES",
    "MSRS_SALIENT_CLASSES",
    "PairedFusionDataset",
    "auto_salient_mask",
    "collate_pairs",
    "mask_from_boxes",
    "mask_from_image",
    "mask_from_labels",
    "read_yolo_boxes",
]
