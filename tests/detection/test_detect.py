"""``refinefuse detect`` end to end on a tiny study, reuse of finished runs, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from refinefuse.cli import main
from refinefuse.io import read_image


def test_tiny_study_writes_table_json_figure_and_no_pickles(tiny_study: dict) -> None:
    out: Path = tiny_study["out"]
    table = (out / "table.md").read_text()
    assert "| ir | 1 |" in table and "| max | 1 |" in table
    assert "RefineFuse (published, M3FD)" in table
    record = json.loads((out / "table.json").read_text())
    assert record["runs_finished"] == record["runs_planned"] == 2
    assert record["pairs"] == {"train": 18, "val": 2, "test": 10}
    for method in ("ir", "max"):
        run = out / "runs" / f"{method}-seed0"
        result = json.loads((run / "result.json").read_text())
        assert 0.0 <= result["map50"]["all"] <= 1.0 and 0.0 <= result["map"]["all"] <= result["map50"]["all"]
        assert set(result["map50"]) == {"person", "bicycle", "car", "all"}
        assert (run / "detector.safetensors").is_file()
        assert not list(run.rglob("*.pt")), "Ultralytics' pickled checkpoints must be removed"
        images = sorted((out / "datasets" / method / "images" / "test").glob("*.png"))
        assert len(images) == 10 and read_image(images[0]).shape[:2] == (128, 128)
        labels = sorted((out / "datasets" / method / "labels" / "test").glob("*.txt"))
        assert [p.stem for p in labels] == [p.stem for p in images]
    # the max images are the pixel-wise maximum of the (resized) sources: made by the fusion code
    name = images[0].name
    ir = read_image(out / "sources" / "test" / "ir" / name)
    fused = read_image(out / "datasets" / "max" / "images" / "test" / name)
    assert fused.shape[:2] == ir.shape[:2]
    figure = read_image(out / "detections.jpg")
    assert figure.shape[1] > 3 * 600  # three full-size (640 px) panels a row: labels, ir, max


def test_rerun_reuses_finished_runs_and_adds_seeds(tiny_study: dict, capsys) -> None:
    out: Path = tiny_study["out"]
    before = (out / "runs" / "ir-seed0" / "result.json").read_text()
    argv = [a if a != "1" or i == 0 else a for i, a in enumerate(tiny_study["argv"])]
    argv[argv.index("--seeds") + 1] = "2"
    argv[argv.index("--methods") + 1] = "ir"
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "ir-seed0: finished already (reused)" in err and "ir-seed1: training" in err
    assert (out / "runs" / "ir-seed0" / "result.json").read_text() == before
    assert "| ir | 2 |" in (out / "table.md").read_text()  # mean ± std over the two seeds
    assert " ± " in (out / "table.md").read_text()


def test_tables_only_trains_nothing(tiny_study: dict, capsys) -> None:
    out: Path = tiny_study["out"]
    argv = list(tiny_study["argv"])
    argv[argv.index("--seeds") + 1] = "3"
    argv[argv.index("--methods") + 1] = "ir"
    assert main([*argv, "--tables-only"]) == 0
    err = capsys.readouterr().err
    assert "training" not in err
    assert not (out / "runs" / "ir-seed2").exists()


def test_saved_detector_reloads_without_pickle(tiny_study: dict) -> None:
    from safetensors.torch import load_file

    from refinefuse.detection.yolo import load_detector, predict_boxes, read_detector_meta

    path = tiny_study["out"] / "runs" / "max-seed0" / "detector.safetensors"
    assert read_detector_meta(path)["names"] == {"0": "person", "1": "bicycle", "2": "car"}
    model = load_detector(path)
    saved = load_file(path)
    state = model.model.state_dict()
    assert set(saved) == set(state)
    for key, value in saved.items():
        torch.testing.assert_close(state[key].float(), value)
    img = read_image(sorted((tiny_study["out"] / "datasets" / "max" / "images" / "test").glob("*.png"))[0])
    a = predict_boxes(model, img, 128, "cpu", conf=0.0)
    b = predict_boxes(load_detector(path), img, 128, "cpu", conf=0.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == 6 and ((a[:, 1:5] >= 0) & (a[:, 1:5] <= 1)).all()


def test_training_starts_from_given_safetensors(tiny_study: dict, tmp_path: Path) -> None:
    """With learning rate 0 the trained detector keeps the weights it started from (fp16-rounded
    by Ultralytics' checkpoint), so --detector X.safetensors really seeds the training."""
    from safetensors.torch import load_file

    from refinefuse.detection.boxes import MSRS_CLASSES
    from refinefuse.detection.yolo import DetectorSettings, train_detector

    start = tiny_study["out"] / "runs" / "max-seed0" / "detector.safetensors"
    data = tiny_study["out"] / "datasets" / "max" / "data.yaml"
    settings = DetectorSettings(detector=str(start), epochs=1, lr0=0.0)
    names = dict(enumerate(MSRS_CLASSES))
    model = train_detector(data, tmp_path / "run", settings, names, seed=1, device="cpu")
    key = "model.0.conv.weight"
    torch.testing.assert_close(model.model.state_dict()[key].float(), load_file(start)[key], atol=2e-3, rtol=2e-3)
    assert not list((tmp_path / "run").rglob("*.pt"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--detector", "yolov8n.pt"], "does not load Ultralytics .pt checkpoints"),
        (["--detector", "model.onnx"], "takes an Ultralytics model YAML"),
        (["--detector", "no_such_model.yaml"], "no_such_model.yaml: not an Ultralytics model YAML"),
        (["--methods", "ir,nosuch"], "nosuch"),
        (["--imgsz", "100"], "multiple of 32"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--max-train", "3"], "at least 10 pairs"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, shared_root: Path, capsys, extra, message) -> None:
    argv = ["detect", "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet", "--data-root", str(shared_root)]
    code = main([*argv, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_missing_extra_is_one_line(monkeypatch, tmp_path: Path, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a))
    assert main(["detect", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "pip install 'refinefuse[detect]'" in capsys.readouterr().err


def test_process_state_is_restored(tiny_study: dict) -> None:
    """Ultralytics sets torch to CPUs - 1 threads and OpenCV to 0; the study puts them back."""
    import cv2

    from refinefuse.detection.boxes import MSRS_CLASSES
    from refinefuse.detection.yolo import DetectorSettings, train_detector

    torch.set_num_threads(2)
    cv2.setNumThreads(3)
    data = tiny_study["out"] / "datasets" / "ir" / "data.yaml"
    train_detector(
        data, tiny_study["out"] / "state", DetectorSettings(epochs=1), dict(enumerate(MSRS_CLASSES)), 0, "cpu"
    )
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 3
    assert not torch.are_deterministic_algorithms_enabled()
