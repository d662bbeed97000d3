"""docs/reliability.md: every bad input in its table is run here through the command line,
and the table is rebuilt from what each actually got, so the page cannot drift.

Regenerate the page after a deliberate change of a message::

    REFINEFUSE_WRITE_DOCS=1 python -m pytest tests/test_reliability.py
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from refinefuse.checkpoint import save_checkpoint
from refinefuse.cli import main
from refinefuse.models import create_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
ASSETS = Path(__file__).resolve().parents[1] / "src" / "refinefuse" / "assets"


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo payload-ran",))


@dataclass
class Case:
    what: str
    setup: Callable[[Path], list[str]]  # builds the inputs under a folder, returns the CLI argv


def _pair(root: Path, name: str = "a", size=(32, 24), vis_size=None) -> tuple[Path, Path]:
    (root / "ir").mkdir(parents=True, exist_ok=True)
    (root / "vi").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ir, vi = root / "ir" / f"{name}.png", root / "vi" / f"{name}.png"
    cv2.imwrite(str(ir), rng.integers(0, 256, size[::-1], dtype=np.uint8))
    cv2.imwrite(str(vi), rng.integers(0, 256, (vis_size or size)[::-1], dtype=np.uint8))
    return ir, vi


def _fuse(ir: Path, vi: Path, out: Path, *extra: str) -> list[str]:
    return ["fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--method", "max", *extra]


def _missing(d):
    ir, _ = _pair(d)
    return _fuse(ir, d / "nope.png", d / "o.png")


def _truncated(d):
    ir, vi = _pair(d)
    vi.write_bytes(vi.read_bytes()[: len(vi.read_bytes()) // 2])
    return _fuse(ir, vi, d / "o.png")


def _not_image(d):
    ir, vi = _pair(d)
    vi.write_text("hello")
    return _fuse(ir, vi, d / "o.png")


def _size_mismatch(d):
    ir, vi = _pair(d, vis_size=(30, 24))
    return _fuse(ir, vi, d / "o.png")


def _empty_folder(d):
    (d / "ir").mkdir()
    (d / "vi").mkdir()
    return _fuse(d / "ir", d / "vi", d / "out")


def _unpaired(d):
    _pair(d, "a")
    ir, _ = _pair(d, "b")
    ir.rename(ir.with_name("c.png"))
    return _fuse(d / "ir", d / "vi", d / "out")


def _output_exists(d):
    ir, vi = _pair(d)
    (d / "o.png").write_bytes(b"x")
    return _fuse(ir, vi, d / "o.png")


def _output_is_input(d):
    ir, vi = _pair(d)
    return _fuse(ir, vi, vi)


def _out_under_file(d):
    ir, vi = _pair(d)
    (d / "file").write_text("x")
    return _fuse(d / "ir", d / "vi", d / "file" / "sub")


def _skip_and_overwrite(d):
    _pair(d)
    return _fuse(d / "ir", d / "vi", d / "out", "--skip-existing", "--overwrite")


def _bad_device(d):
    ir, vi = _pair(d)
    return _fuse(ir, vi, d / "o.png", "--device", "tpu")


def _tiny_ckpt(d: Path, edit=None) -> Path:
    model = create_model("refinefuse", channels=[8, 8, 16, 16])
    path = save_checkpoint(d / "w.pt", model)
    if edit is not None:
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
    return path


def _network(d: Path, ckpt: Path) -> list[str]:
    ir, vi = _pair(d)
    return [
        "fuse",
        "--ir",
        str(ir),
        "--vis",
        str(vi),
        "--out",
        str(d / "o.png"),
        "--weights",
        str(ckpt),
        "--backend",
        "torch",
    ]


def _hostile_ckpt(d):
    return _network(d, _tiny_ckpt(d, lambda s: s["meta"].update(note=_Payload())))


def _unknown_model(d):
    return _network(d, _tiny_ckpt(d, lambda s: s["model"].update(name="mystery_net")))


def _unknown_key(d):
    return _network(d, _tiny_ckpt(d, lambda s: s["model"]["config"].update(wings=2)))


def _garbage_ckpt(d):
    (d / "w.pt").write_bytes(b"\x00garbage" * 50)
    return _network(d, d / "w.pt")


def _nan_weights(d):
    def poison(state):
        for value in state["state_dict"].values():
            if value.is_floating_point():
                value.fill_(float("nan"))

    return _network(d, _tiny_ckpt(d, poison))


def _eval_decimals(d):
    _pair(d)
    return ["eval", "--fused", str(d / "vi"), "--ir", str(d / "ir"), "--vis", str(d / "vi"), "--decimals", "-2"]


def _bad_yaml(d):
    (d / "c.yaml").write_text("lr: [1, 2\n")
    return ["train", "--config", str(d / "c.yaml"), "--data", str(d), "--out", str(d / "run")]


def _unknown_setting(d):
    _pair(d)
    return ["train", "--data", str(d), "--out", str(d / "run"), "--set", "learning_speed=3"]


def _corrupt_last(d):
    _pair(d)
    (d / "run").mkdir()
    (d / "run" / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    return ["train", "--data", str(d), "--out", str(d / "run"), "--resume"]


def _detector_pickle(d):
    (d / "yolov8s.pt").write_bytes(pickle.dumps(_Payload()))
    return ["detect", "--out", str(d / "study"), "--detector", str(d / "yolov8s.pt")]


CASES = [
    Case("missing input file", _missing),
    Case("truncated PNG", _truncated),
    Case("text file named .png", _not_image),
    Case("ir and vis sizes differ", _size_mismatch),
    Case("empty input folders", _empty_folder),
    Case("folders with unpaired names", _unpaired),
    Case("output file exists", _output_exists),
    Case("output would replace an input", _output_is_input),
    Case("output folder cannot be created", _out_under_file),
    Case("--skip-existing with --overwrite", _skip_and_overwrite),
    Case("unknown --device", _bad_device),
    Case("checkpoint with a pickled payload", _hostile_ckpt),
    Case("checkpoint naming an unknown model", _unknown_model),
    Case("checkpoint with an unknown config key", _unknown_key),
    Case("checkpoint that is not one (garbage bytes)", _garbage_ckpt),
    Case("weights that give NaN", _nan_weights),
    Case("`eval --decimals -2`", _eval_decimals),
    Case("training config that is not valid YAML", _bad_yaml),
    Case("unknown training setting", _unknown_setting),
    Case("corrupt `last.pt` on `--resume`", _corrupt_last),
    Case("`detect --detector` given a pickled `.pt`", _detector_pickle),
]

HEADER = """# What bad input gets

Each row below was produced by running the command line on that input (the inputs are
built by `tests/test_reliability.py`, which also checks that this page matches what the
commands print today; `DIR` stands for the test's temporary folder). Every case exits with
code 2 and one line on stderr, and writes no output file.

Regenerate after a deliberate change: `REFINEFUSE_WRITE_DOCS=1 python -m pytest tests/test_reliability.py`.

| bad input | command | exit | stderr |
|---|---|---:|---|
"""


def _run(case: Case, root: Path, capsys) -> tuple[str, int, str]:
    root.mkdir()
    argv = case.setup(root)
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    err = out.err.strip()
    text = " ".join(a if not a.startswith(str(root)) else "DIR" + a[len(str(root)) :] for a in argv)
    return text, rc, err.replace(str(root), "DIR")


def test_reliability_table_matches_the_commands(tmp_path, capsys):
    rows, produced = [], []
    for i, case in enumerate(CASES):
        command, rc, err = _run(case, tmp_path / f"case{i}", capsys)
        assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("refinefuse: error: "), (case.what, rc, err)
        assert "payload-ran" not in err
        outputs = [p for p in (tmp_path / f"case{i}").rglob("*") if p.name.startswith(("o.png", ".refinefuse-tmp"))]
        assert not [p for p in outputs if p.stat().st_size > 1], (
            case.what,
            outputs,
        )  # only the pre-existing 1-byte file
        produced.append(err)
        rows.append(f"| {case.what} | `refinefuse {command}` | {rc} | `{err}` |")
    text = HEADER + "\n".join(rows) + "\n"
    if os.environ.get("REFINEFUSE_WRITE_DOCS") == "1":
        DOC.write_text(text)
    assert DOC.read_text() == text, "docs/reliability.md is out of date: rerun with REFINEFUSE_WRITE_DOCS=1"
    assert all(re.search(r"DIR|refinefuse", e) for e in produced)
