"""Property tests (hypothesis): random and mutated bytes given to the three readers of
user files (images, checkpoints, training configs) always give an ``InputError`` or a valid
result, never another exception."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refinefuse.checkpoint import read_checkpoint, save_checkpoint, save_weights
from refinefuse.config import load_config
from refinefuse.errors import InputError
from refinefuse.io import read_image
from refinefuse.models import create_model

# Derandomized in the test suite (the same examples every run, so CI cannot flake); set
# REFINEFUSE_FUZZ_EXAMPLES=5000 to search longer with fresh random examples.
_LONG = int(os.environ.get("REFINEFUSE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_LONG or 80, derandomize=not _LONG, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _png() -> bytes:
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return buf.tobytes()


def _checkpoints() -> list[bytes]:
    model = create_model("refinefuse", channels=[4, 4, 4, 4])
    with tempfile.TemporaryDirectory() as tmp:
        pt = save_checkpoint(Path(tmp) / "m.pt", model, meta={"epochs": 1}).read_bytes()
        st_ = save_weights(Path(tmp) / "m.safetensors", model, meta={"epochs": 1}).read_bytes()
    return [pt, st_]


SEEDS = {
    "png": _png(),
    "yaml": b"lr: 1.0e-3\nepochs: 3\ncrop: 64\nsalient_classes: [1, 2]\nmodel_overrides: {levels: 3}\n",
}
CKPTS = _checkpoints()


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with random byte flips, a random cut and random inserted bytes (or pure noise)."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=512))
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


def _feed(suffix: str, data: bytes, reader):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        try:
            return reader(path)
        except InputError as exc:
            assert "\n" not in str(exc)
            return None


@FUZZ
@given(mutated(SEEDS["png"]))
def test_image_reader(data):
    img = _feed(".png", data, read_image)
    assert img is None or (img.dtype == np.uint8 and img.ndim in (2, 3))


@FUZZ
@given(st.sampled_from([0, 1]).flatmap(lambda i: mutated(CKPTS[i])), st.sampled_from([".pt", ".safetensors"]))
def test_checkpoint_reader(data, suffix):
    state = _feed(suffix, data, read_checkpoint)
    assert state is None or isinstance(state["state_dict"], dict)


@FUZZ
@given(mutated(SEEDS["yaml"]))
def test_config_loader(data):
    _feed(".yaml", data, load_config)


def test_seeds_are_valid():
    """The unmutated seeds load, so the properties above exercise the readers' real paths."""
    assert _feed(".png", SEEDS["png"], read_image) is not None
    assert _feed(".yaml", SEEDS["yaml"], load_config).epochs == 3
    for data in CKPTS:
        state = _feed(".pt", data, read_checkpoint)
        assert state is not None and all(isinstance(v, torch.Tensor) for v in state["state_dict"].values())
