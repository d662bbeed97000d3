"""Paired dataset, salient masks and paired augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from refinefuse.colour import luminance
from refinefuse.data import (
    PairedFusionDataset,
    auto_salient_mask,
    collate_pairs,
    mask_from_boxes,
    mask_from_labels,
    read_yolo_boxes,
)
from refinefuse.errors import InputError
from refinefuse.io import read_image, write_image


def _write_pairs(root: Path, n: int = 3, size: tuple[int, int] = (40, 48), masks: bool = True, seed: int = 0) -> Path:
    """Synthetic dataset: vis = 255 - ir, masks = ir > 128, so alignment is checkable after augmentation."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        ir = rng.integers(0, 256, size, dtype=np.uint8)
        write_image(root / "ir" / f"{i:03d}.png", ir)
        write_image(root / "vi" / f"{i:03d}.png", 255 - ir)
        if masks:
            write_image(root / "masks" / f"{i:03d}.png", ((ir > 128) * 255).astype(np.uint8))
    return root


# ----------------------------------------------------------------------------- masks
def test_mask_from_boxes_hand_case():
    boxes = np.array([[0, 0.5, 0.5, 0.5, 0.5], [2, 0.0625, 0.0625, 0.125, 0.125]], np.float32)
    mask = mask_from_boxes(boxes, (8, 8))
    expected = np.zeros((8, 8), np.float32)
    expected[2:6, 2:6] = 1
    expected[0, 0] = 1
    assert np.array_equal(mask, expected)
    only_class_2 = mask_from_boxes(boxes, (8, 8), classes=[2])
    assert only_class_2.sum() == 1 and only_class_2[0, 0] == 1
    assert mask_from_boxes(np.zeros((0, 5), np.float32), (4, 4)).sum() == 0


def test_read_yolo_boxes(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("0 0.5 0.5 0.2 0.4\n\n2 0.1 0.1 0.1 0.1\n")
    assert read_yolo_boxes(good).shape == (2, 5)
    empty = tmp_path / "b.txt"
    empty.write_text("")
    assert read_yolo_boxes(empty).shape == (0, 5)
    bad = tmp_path / "c.txt"
    bad.write_text("0 0.5 0.5\n")
    with pytest.raises(InputError, match="c.txt: line 1"):
        read_yolo_boxes(bad)


def test_mask_from_labels_uses_salient_classes():
    labels = np.array([[0, 1, 2], [3, 4, 8]], np.uint8)
    assert np.array_equal(mask_from_labels(labels), [[0, 1, 1], [1, 0, 0]])
    assert np.array_equal(mask_from_labels(labels, classes=[2]), [[0, 0, 1], [0, 0, 0]])


def test_auto_salient_mask_keeps_hot_blobs_and_drops_specks():
    ir = np.full((100, 100), 0.2, np.float32)
    ir[20:32, 40:52] = 0.9  # a hot 12x12 object
    ir[80, 10] = 1.0  # a single hot pixel (noise)
    mask = auto_salient_mask(ir)
    assert mask[20:32, 40:52].all() and mask.sum() == 144
    assert auto_salient_mask(np.full((10, 10), 0.5, np.float32)).sum() == 0


# ----------------------------------------------------------------------------- real layouts
def test_msrs_train128_boxes(data_dir):
    root = data_dir / "msrs" / "train128"
    ds = PairedFusionDataset(root, crop=None, augment=False, max_pairs=5)
    assert ds.mask_source == "boxes_ir" and len(ds) == 5
    item = ds[2]
    pair = ds.pairs[2]
    assert item["ir"].shape == item["vis"].shape == item["mask"].shape == (1, 128, 128)
    assert np.array_equal(item["vis"][0].numpy(), luminance(read_image(pair.vis)))  # Y, as in fusion
    assert np.array_equal(item["ir"][0].numpy(), luminance(read_image(pair.ir)))
    boxes = read_yolo_boxes(root / "boxes_ir" / f"{pair.name}.txt")
    assert np.array_equal(item["mask"][0].numpy(), mask_from_boxes(boxes, (128, 128)))
    # crop 256 on 128x128 images: used whole (default) or reflect-padded
    assert PairedFusionDataset(root, crop=256, max_pairs=2)[0]["ir"].shape == (1, 128, 128)
    assert PairedFusionDataset(root, crop=256, max_pairs=2, small_images="pad")[0]["ir"].shape == (1, 256, 256)
    vi_boxes = PairedFusionDataset(root, mask="boxes_vi", crop=64, max_pairs=2)
    assert vi_boxes.mask_source == "boxes_vi" and vi_boxes[1]["mask"].shape == (1, 64, 64)


def test_msrs_test_labels(data_dir):
    root = data_dir / "msrs" / "test"
    ds = PairedFusionDataset(root, crop=None, augment=False, max_pairs=3)
    assert ds.mask_source == "labels"
    stack = ds.load(1)
    labels = read_image(root / "label" / f"{ds.pairs[1].name}.png")
    assert stack.shape == (3, 480, 640)
    assert np.array_equal(stack[2], mask_from_labels(labels))
    item = PairedFusionDataset(root, crop=256, max_pairs=3)[0]
    assert item["ir"].shape == (1, 256, 256)


def test_plain_folder_roadscene_gets_automatic_masks(data_dir):
    ds = PairedFusionDataset(data_dir / "roadscene", crop=128, max_pairs=3)
    assert ds.mask_source == "auto"
    item = ds[0]
    assert item["ir"].shape == item["mask"].shape == (1, 128, 128)
    assert set(torch.unique(item["mask"]).tolist()) <= {0.0, 1.0}
    # whole images: sides rounded down to the stride multiple
    whole = PairedFusionDataset(data_dir / "roadscene", crop=None, augment=False, multiple=8, max_pairs=1)[0]
    assert whole["ir"].shape[1] % 8 == 0 and whole["ir"].shape[2] % 8 == 0


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_keeps_ir_vis_and_mask_aligned(tmp_path):
    ds = PairedFusionDataset(_write_pairs(tmp_path), crop=24, multiple=8)
    assert ds.mask_source == "masks"
    shapes = set()
    for seed in range(12):
        item = ds[(seed % 3, seed)]
        ir, vis, mask = item["ir"][0], item["vis"][0], item["mask"][0]
        shapes.add(tuple(ir.shape))
        assert torch.allclose(vis, 1 - ir, atol=1e-6)  # vis = 255 - ir survives crop/rotation/flip
        assert torch.equal(mask, (ir > 128 / 255 + 1e-6).float())  # mask = ir > 128 too
    assert shapes == {(24, 24)}


def test_augmentation_is_seeded_and_varied(tmp_path):
    ds = PairedFusionDataset(_write_pairs(tmp_path, n=1, size=(64, 64)), crop=32, multiple=8)
    a, b = ds[(0, (0, 1, 0))], ds[(0, (0, 1, 0))]
    assert torch.equal(a["ir"], b["ir"])
    crops = {ds[(0, s)]["ir"].numpy().tobytes() for s in range(10)}
    assert len(crops) > 5
    plain = PairedFusionDataset(tmp_path, crop=32, multiple=8, augment=False)
    assert torch.equal(plain[0]["ir"], plain[0]["ir"])  # centre crop without augmentation


def test_non_square_whole_images_keep_their_shape(tmp_path):
    ds = PairedFusionDataset(_write_pairs(tmp_path, n=1, size=(40, 56)), crop=None, multiple=8)
    assert {ds[(0, s)]["ir"].shape for s in range(8)} == {(1, 40, 56)}


def test_collate_crops_to_common_size():
    items = [
        {"ir": torch.rand(1, 16, 24), "vis": torch.rand(1, 16, 24), "mask": torch.rand(1, 16, 24), "name": "a"},
        {"ir": torch.rand(1, 24, 16), "vis": torch.rand(1, 24, 16), "mask": torch.rand(1, 24, 16), "name": "b"},
    ]
    batch = collate_pairs(items)
    assert batch["ir"].shape == (2, 1, 16, 16) and batch["name"] == ["a", "b"]


def test_split_holds_out_pairs(tmp_path):
    ds = PairedFusionDataset(_write_pairs(tmp_path, n=10, masks=False), crop=16, multiple=8)
    train, val = ds.split(3)
    assert len(train) == 7 and len(val) == 3 and not val.augment
    assert not {p.name for p in train.pairs} & {p.name for p in val.pairs}
    with pytest.raises(InputError, match="cannot spare"):
        ds.split(10)


# ----------------------------------------------------------------------------- bad input
def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(InputError, match="no such dataset folder"):
        PairedFusionDataset(tmp_path / "nope")
    (tmp_path / "ir").mkdir()
    with pytest.raises(InputError, match="'ir/' and 'vi/'"):
        PairedFusionDataset(tmp_path)
    (tmp_path / "vi").mkdir()
    with pytest.raises(InputError, match="contains no images"):
        PairedFusionDataset(tmp_path)


def test_unpaired_files_are_named(tmp_path):
    _write_pairs(tmp_path, n=2)
    write_image(tmp_path / "ir" / "extra.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(InputError, match="extra"):
        PairedFusionDataset(tmp_path)


def test_missing_mask_file_and_folder(tmp_path):
    _write_pairs(tmp_path, n=2)
    (tmp_path / "masks" / "001.png").unlink()
    with pytest.raises(InputError, match="no mask file for pair '001'"):
        PairedFusionDataset(tmp_path)
    with pytest.raises(InputError, match="label: no such folder"):
        PairedFusionDataset(tmp_path, mask="labels")
    with pytest.raises(InputError, match="unknown mask source"):
        PairedFusionDataset(tmp_path, mask="magic")


def test_mask_of_wrong_size_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)
    write_image(tmp_path / "masks" / "001.png", np.zeros((10, 10), np.uint8))
    ds = PairedFusionDataset(tmp_path, crop=16, multiple=8)
    ds[0]
    with pytest.raises(InputError, match=r"001.png: mask is 10x10 but the image pair is 48x40"):
        ds[1]


def test_ir_vis_size_mismatch_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=3, masks=False)
    write_image(tmp_path / "vi" / "001.png", np.zeros((30, 30), np.uint8))
    # found from the headers when the dataset is made, not when the pair is loaded
    with pytest.raises(
        InputError, match=r"vi/001.png: size 30x30 differs from its infrared image .*ir/001.png \(48x40\)$"
    ):
        PairedFusionDataset(tmp_path, crop=16, multiple=8)
    # max_pairs leaves the bad pair out: then it is not read
    assert len(PairedFusionDataset(tmp_path, crop=16, multiple=8, max_pairs=2)) == 2


def test_bad_image_files_fail_when_the_dataset_is_made(tmp_path):
    _write_pairs(tmp_path, n=3, masks=False)
    bad = tmp_path / "ir" / "002.png"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated: the header alone still reads
    with pytest.raises(InputError, match=r"ir/002.png: not a readable image$"):
        PairedFusionDataset(tmp_path, crop=16, multiple=8)
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"ir/002.png: not a readable image$"):
        PairedFusionDataset(tmp_path, crop=16, multiple=8)
    bad.write_bytes(good)
    # a float TIFF decodes, but read_image cannot use its pixel type
    from PIL import Image

    (tmp_path / "vi" / "000.png").unlink()
    Image.fromarray(np.zeros((40, 48), np.float32)).save(tmp_path / "vi" / "000.tif")
    with pytest.raises(InputError, match=r"vi/000.tif: unsupported pixel type float32$"):
        PairedFusionDataset(tmp_path, crop=16, multiple=8)


def test_read_image_header_agrees_with_read_image(tmp_path, data_dir):
    from PIL import Image

    from refinefuse.io import read_image_header

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    files = {
        "grey.png": (Image.fromarray(grey), 1),
        "rgb.jpg": (Image.fromarray(np.stack([grey, 255 - grey, grey], -1)), 3),
        "rgba.png": (Image.fromarray(np.stack([grey] * 4, -1), "RGBA"), 4),
        "grey16.tif": (Image.fromarray(grey.astype(np.uint16) * 257), 1),
        "palette.png": (Image.fromarray(grey).convert("P"), 3),
        "grey_alpha.png": (Image.fromarray(np.stack([grey, grey], -1), "LA"), 2),
    }
    for name, (img, channels) in files.items():
        img.save(tmp_path / name)
        assert read_image_header(tmp_path / name) == (30, 20, channels), name
        assert read_image(tmp_path / name).shape[:2] == (20, 30), name
    assert read_image_header(data_dir / "msrs" / "test" / "vi" / "00004N.png") == (640, 480, 3)
    with pytest.raises(InputError, match="no such file"):
        read_image_header(tmp_path / "missing.png")


def test_dataset_from_a_spec_and_named_folders(shared_root, tmp_path):
    """Training reads the same dataset description as reproduce (here MRI-CT: CT/ and MRI/)."""
    from refinefuse.datasets import get_dataset

    ds = PairedFusionDataset.from_spec(get_dataset("mri_ct"), shared_root, crop=64, mask="none")
    assert len(ds) == 21 and ds.pairs[0].ir.parent.name == "CT" and ds.pairs[0].vis.parent.name == "MRI"
    item = ds[(0, 0)]
    assert item["ir"].shape == item["vis"].shape == (1, 64, 64)
    with pytest.raises(InputError, match="expected sub-folders 'PET/' and 'MRI/'"):
        PairedFusionDataset(tmp_path, ir_dir="PET", vis_dir="MRI")
