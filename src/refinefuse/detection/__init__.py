"""Fusion for detection (paper Table 4, Fig. 6): ``refinefuse detect``.

- :mod:`.boxes`: the labels of a fused image (union of the infrared and visible boxes);
- :mod:`.yolo`: the detector, Ultralytics YOLO behind the ``detect`` extra;
- :mod:`.study`: the study: images per method, one detector per method and seed, the table
  and the figure.
"""

from .boxes import MSRS_CLASSES, box_iou, merge_boxes, write_yolo_boxes
from .study import DEFAULT_METHODS, DetectConfig, detect
from .yolo import DetectorSettings

__all__ = [
    "MSRS_CLASSES",
    "DEFAULT_METHODS",
    "DetectConfig",
    "DetectorSettings",
    "box_iou",
    "detect",
    "merge_boxes",
    "write_yolo_boxes",
]
