"""Labels of a fused image: the union of the infrared and visible boxes, duplicates merged."""

from __future__ import annotations

import numpy as np
import pytest

from refinefuse.data.masks import read_yolo_boxes
from refinefuse.detection.boxes import box_iou, format_yolo_boxes, merge_boxes, write_yolo_boxes, xywh_to_xyxy


def test_box_iou_known_values() -> None:
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 1.0, 0.0, 0.0]])


def test_xywh_to_xyxy() -> None:
    np.testing.assert_allclose(xywh_to_xyxy(np.array([[0.5, 0.5, 0.2, 0.4]])), [[0.4, 0.3, 0.6, 0.7]])


def test_same_object_in_both_sources_becomes_one_box_at_the_mean() -> None:
    ir = np.array([[0, 0.50, 0.50, 0.20, 0.40]])
    vis = np.array([[0, 0.52, 0.50, 0.20, 0.40]])
    np.testing.assert_allclose(merge_boxes(ir, vis), [[0, 0.51, 0.50, 0.20, 0.40]])


def test_objects_in_one_source_only_are_kept() -> None:
    ir = np.array([[0, 0.2, 0.2, 0.1, 0.1]])  # a pedestrian only the infrared sees
    vis = np.array([[2, 0.8, 0.8, 0.1, 0.1]])  # a car only the visible image annotates
    out = merge_boxes(ir, vis)
    np.testing.assert_allclose(out, np.concatenate([ir, vis]))


def test_other_class_or_small_overlap_does_not_merge() -> None:
    ir = np.array([[0, 0.5, 0.5, 0.2, 0.2]])
    same_place_other_class = np.array([[1, 0.5, 0.5, 0.2, 0.2]])
    assert len(merge_boxes(ir, same_place_other_class)) == 2
    shifted = np.array([[0, 0.62, 0.5, 0.2, 0.2]])  # IoU 0.25 < 0.5
    assert len(merge_boxes(ir, shifted)) == 2
    assert len(merge_boxes(ir, shifted, iou=0.2)) == 1


def test_greedy_matching_takes_the_best_overlap_and_each_box_once() -> None:
    ir = np.array([[0, 0.50, 0.5, 0.2, 0.2], [0, 0.53, 0.5, 0.2, 0.2]])
    vis = np.array([[0, 0.53, 0.5, 0.2, 0.2]])  # identical to ir[1]
    out = merge_boxes(ir, vis)
    assert len(out) == 2
    np.testing.assert_allclose(out[1], ir[1])  # merged with its identical twin, not with ir[0]
    np.testing.assert_allclose(out[0], ir[0])


@pytest.mark.parametrize("k, m", [(0, 0), (0, 2), (3, 0)])
def test_empty_lists(k: int, m: int) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((k, 5)), rng.random((m, 5))
    assert merge_boxes(a, b).shape == (k + m, 5)


def test_label_file_round_trip(tmp_path) -> None:
    boxes = np.array([[2, 0.25, 0.5, 0.125, 0.0625], [0, 0.9, 0.1, 0.05, 0.2]])
    path = tmp_path / "a.txt"
    write_yolo_boxes(path, boxes)
    np.testing.assert_allclose(read_yolo_boxes(path), boxes, atol=1e-6)
    assert format_yolo_boxes(np.zeros((0, 5))) == ""


def test_msrs_labels_merge_real_duplicates(data_dir) -> None:
    """On MSRS test, an object annotated in both sources appears once in the merged labels."""
    ir = read_yolo_boxes(data_dir / "msrs/test/boxes_ir/00004N.txt")
    vis = read_yolo_boxes(data_dir / "msrs/test/boxes_vi/00004N.txt")
    merged = merge_boxes(ir, vis)
    assert max(len(ir), len(vis)) <= len(merged) < len(ir) + len(vis)
