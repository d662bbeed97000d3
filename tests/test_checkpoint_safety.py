"""A checkpoint carrying a pickled payload is refused by every entry point, and the payload
never runs (issue 11, section 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refinefuse.checkpoint import load_model, read_checkpoint, save_checkpoint, save_weights
from refinefuse.errors import InputError
from refinefuse.models import create_model

ASSETS = Path(__file__).resolve().parents[1] / "src" / "refinefuse" / "assets"
IR, VIS = ASSETS / "msrs_00828N_ir.png", ASSETS / "msrs_00828N_vis.png"


class _Payload:
    """Unpickling this runs ``touch MARKER`` (what a hostile shared checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def hostile(tmp_path):
    """A real, loadable-looking checkpoint whose ``meta`` holds the payload; and its marker file."""
    marker = tmp_path / "PAYLOAD_RAN"
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    path = tmp_path / "shared_weights.pt"
    state = {
        "format": "refinefuse-checkpoint",
        "version": 1,
        "model": {"name": "refinefuse", "config": dict(model.config)},
        "state_dict": model.state_dict(),
        "meta": {"note": _Payload(marker)},
    }
    torch.save(state, path)
    return path, marker


def _cli(args: list[str], cwd: Path, shared: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "REFINEFUSE_DATA_ROOT": str(shared)}
    return subprocess.run(
        [sys.executable, "-m", "refinefuse.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def _assert_refused(proc: subprocess.CompletedProcess, path: Path, marker: Path) -> None:
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and str(path) in err[0] and "refused" in err[0], proc.stderr
    assert not marker.exists(), "the payload ran"


def test_python_loaders_refuse(hostile):
    path, marker = hostile
    for load in (read_checkpoint, load_model):
        with pytest.raises(InputError, match="refused: the file holds Python objects"):
            load(path)
    assert not marker.exists()


def test_control_the_payload_is_real(hostile):
    """The fixture is a genuine threat: an unsafe load would run it (so the tests above can fail)."""
    path, marker = hostile
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "entry",
    ["fuse", "demo", "resume", "init", "export-onnx", "bench", "reproduce"],
)
def test_every_cli_entry_point_refuses(hostile, tmp_path, entry, shared_root):
    path, marker = hostile
    data_dir = shared_root / "data" / "msrs" / "train128"
    out = tmp_path / "out"
    if entry == "resume":
        run = tmp_path / "run"
        run.mkdir()
        (run / "last.pt").write_bytes(path.read_bytes())
        path = run / "last.pt"
    args = {
        "fuse": ["fuse", "--ir", str(IR), "--vis", str(VIS), "--out", str(out / "f.png"), "--weights", str(path)],
        "demo": ["demo", "--out", str(out), "--weights", str(path)],
        "resume": ["train", "--data", str(data_dir), "--out", str(path.parent), "--resume", "--epochs", "1"],
        "init": ["train", "--data", str(data_dir), "--out", str(out), "--epochs", "1", "--set", f"init={path}"],
        "export-onnx": ["export-onnx", "--out", str(out / "m.onnx"), "--weights", str(path)],
        "bench": ["bench", "--quick", "--methods", "refinefuse", "--weights", str(path)],
        "reproduce": [
            "reproduce",
            "--dataset",
            "mri_ct",
            "--methods",
            "refinefuse",
            "--max-pairs",
            "1",
            "--weights",
            str(path),
            "--out",
            str(out),
        ],
    }[entry]
    _assert_refused(_cli(args, tmp_path, shared_root), path, marker)


def test_safetensors_round_trip_and_header(tmp_path):
    model = create_model("refinefuse_l3", channels=[8, 8, 16])
    path = save_weights(tmp_path / "w.safetensors", model, meta={"torch": torch.__version__, "epochs": 3})
    state = read_checkpoint(path)
    assert state["model"] == {"name": "refinefuse_l3", "config": model.config}
    assert state["meta"] == {"torch": str(torch.__version__), "epochs": 3}
    assert type(state["meta"]["torch"]) is str  # plain JSON, not torch's TorchVersion
    loaded = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    again = save_weights(tmp_path / "again.safetensors", model, meta={"torch": torch.__version__, "epochs": 3})
    assert again.read_bytes() == path.read_bytes()  # deterministic bytes


def test_format_follows_content_not_name(tmp_path):
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    pt_named_safetensors = save_checkpoint(tmp_path / "a.safetensors", model)
    safetensors_named_pt = save_weights(tmp_path / "b.pt", model)
    for path in (pt_named_safetensors, safetensors_named_pt):
        assert load_model(path).config == model.config


def test_meta_must_be_plain_json(tmp_path):
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    with pytest.raises(TypeError, match="plain JSON"):
        save_checkpoint(tmp_path / "m.pt", model, meta={"bad": object()})
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["model"].update(name="no_such_net"), "unknown model 'no_such_net'"),
        (lambda s: s["model"]["config"].update(wings=2), "model config does not fit model 'refinefuse'"),
        (lambda s: s.pop("state_dict"), "lacks its weights"),
        (lambda s: s.pop("model"), "lacks its model name and config"),
        (lambda s: s.update(version=99), "version 99 is not supported"),
    ],
)
def test_bad_checkpoint_contents_are_one_line_errors(tmp_path, edit, message):
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    path = save_checkpoint(tmp_path / "m.pt", model)
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    with pytest.raises(InputError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
