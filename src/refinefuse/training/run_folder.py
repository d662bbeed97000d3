"""The run folder: checkpoints (``last.pt``, ``best.pt``, ``epoch_XXXX.pt``), resuming, and
``log.csv`` + TensorBoard.

Checkpoints are written atomically, and ``best.pt`` and ``epoch_XXXX.pt`` are independent
copies of ``last.pt`` (not links), so damage to one file leaves the others loadable; a
damaged ``last.pt`` on ``--resume`` is an error naming the newest intact checkpoint.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import BEST, LAST, model_spec, read_checkpoint
from ..config import TrainConfig
from ..errors import InputError
from ..io import atomic_path
from ..losses import EXTRA_TERMS

__all__ = [
    "LAST",
    "BEST",
    "RunLog",
    "prepare_out",
    "read_resume_checkpoint",
    "checked_weights",
    "load_init",
    "atomic_copy",
    "keep_recent",
]


def atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` an independent copy of ``src`` (a temporary file beside it, then a rename)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _epoch_number(path: Path) -> int:
    digits = path.stem.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else -1


def keep_recent(out: Path, epoch: int, keep: int) -> None:
    """Copy ``last.pt`` to ``epoch_XXXX.pt`` and delete all but the newest ``keep``."""
    if keep <= 0:
        return
    atomic_copy(out / LAST, out / f"epoch_{epoch:04d}.pt")
    for old in sorted(out.glob("epoch_*.pt"), key=_epoch_number)[:-keep]:
        old.unlink(missing_ok=True)


def _resume_hint(out: Path) -> str:
    """Which intact checkpoint of ``out`` to copy over a damaged ``last.pt``: the newest
    readable ``epoch_XXXX.pt``, or ``best.pt`` when that one is newer."""
    found: list[tuple[int, Path]] = []
    epochs = sorted(out.glob("epoch_*.pt"), key=_epoch_number, reverse=True)
    for group in (epochs, [out / BEST]):
        for path in group:
            if not path.is_file():
                continue
            try:
                state = read_checkpoint(path)
            except InputError:
                continue
            if "optimizer" in state and "epoch" in state:  # a training checkpoint, not a release
                found.append((int(state["epoch"]), path))
                break
    if not found:
        return f"no intact epoch_*.pt or {BEST} in {out} to resume from"
    epoch, path = max(found, key=lambda item: item[0])  # an epoch file wins a tie
    return f"{path} is intact: copy it to {LAST} to resume from epoch {epoch}"


def read_resume_checkpoint(last: Path) -> dict[str, Any]:
    """``read_checkpoint(last)`` for ``--resume``; a damaged file is a one-line
    :class:`InputError` that names the intact checkpoint to resume from instead."""
    try:
        return read_checkpoint(last)
    except InputError as exc:
        raise InputError(f"{exc}; {_resume_hint(last.parent)}") from None


def prepare_out(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    last = out / LAST
    if cfg.resume:
        if last.is_file():
            return read_resume_checkpoint(last)
        print(f"refinefuse: no {last} yet; starting a new run", file=sys.stderr)
        return None
    if last.exists():
        raise InputError(
            f"{last}: run folder already holds a checkpoint; pass --resume to continue or choose another --out"
        )
    return None


def checked_weights(path: Path, state: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``state`` (read from ``path``) after checking it was saved from
    the configured model (``--resume``)."""
    if state["model"] != model_spec(model):
        raise InputError(f"{path}: checkpoint model {state['model']} differs from the configured one")
    return state["state_dict"]


def load_init(model: nn.Module, path: str, model_name: str) -> None:
    """``init``: load a checkpoint's weights only (fresh optimizer and schedule). Any
    checkpoint whose weights fit: its config may differ in parameter-free settings (``out_margin``)."""
    init = Path(path).expanduser()
    try:
        model.load_state_dict(read_checkpoint(init)["state_dict"])  # float16 weights are cast
    except RuntimeError as exc:
        raise InputError(f"{init}: weights do not fit model {model_name!r} ({str(exc).splitlines()[0]})") from None


LOSS_TERMS = ("loss", "int", "tex", *EXTRA_TERMS)
"""The loss values a training step reports: the total and each term (0 for a term the loss leaves out)."""


def logged_loss_terms(cfg: TrainConfig) -> tuple[str, ...]:
    """The :data:`LOSS_TERMS` ``log.csv`` records as ``train_<term>`` / ``val_<term>``: the total,
    the paper's two terms, and each term beyond the paper's that ``cfg`` switches on."""
    return tuple(k for k in LOSS_TERMS if k not in EXTRA_TERMS or getattr(cfg, f"{k}_weight") > 0)


class RunLog:
    """``log.csv`` (one row per epoch) + TensorBoard, on the main process only."""

    def __init__(self, out: Path, cfg: TrainConfig, start_epoch: int) -> None:
        self.path = out / "log.csv"
        terms = logged_loss_terms(cfg)
        self.columns = ["epoch", "lr", *[f"train_{k}" for k in terms], *[f"val_{k}" for k in terms]]
        self.columns += [f"val_{m}" for m in cfg.val_metrics] + ["pairs_per_s", "epoch_s", "time"]
        rows = []
        if start_epoch > 0 and self.path.is_file():  # drop rows of epochs the checkpoint does not cover
            with self.path.open(newline="") as fh:
                rows = [
                    r for r in csv.DictReader(fh) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= start_epoch
                ]
        self._write(rows, mode="w")
        self.tb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start_epoch + 1 if start_epoch else None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                print("refinefuse: tensorboard not installed; logging to CSV only", file=sys.stderr)

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with self.path.open(mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, Any], grid: np.ndarray | None = None) -> None:
        self._write([{k: ("" if v is None else v) for k, v in row.items()}], mode="a")
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "time") and isinstance(value, (int, float)):
                    self.tb.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            if grid is not None:
                self.tb.add_image("val/ir_vis_fused", grid, row["epoch"], dataformats="HW")
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
