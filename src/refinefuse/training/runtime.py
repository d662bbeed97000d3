"""Where and how a training run executes: device, processes (DDP), threads and seeds.

:func:`training_runtime` sets them for the run and puts back what it changed (torch and
OpenCV thread counts, the torch/numpy/Python random states) when the run ends, so calling
:func:`refinefuse.training.train` from a notebook or a test leaves the caller's process as
it was.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..io import available_cpus

__all__ = ["Runtime", "training_runtime", "rng_state", "set_rng_state"]


@dataclass
class Runtime:
    """This process's place in the run: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _device(cfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """:func:`refinefuse.methods.resolve_device`; under ``torchrun`` each process takes its local GPU."""
    from ..methods import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda" and (world > 1 or cfg.device == "auto"):
        return torch.device("cuda", local_rank)
    return device


def rng_state() -> dict[str, Any]:
    """torch, numpy and Python random states as tensors and plain data (``weights_only`` loadable)."""
    legacy_state = np.random.get_state()  # legacy=True: a tuple for the global MT19937 generator
    assert isinstance(legacy_state, tuple)
    name, key, pos, has_gauss, gauss = legacy_state
    numpy_state = {
        "name": name,
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output (or the tuple numpy state of earlier checkpoints)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        key = np.asarray(np_state["key"], dtype=np.int64).astype(np.uint32)
        np_state = (np_state["name"], key, np_state["pos"], np_state["has_gauss"], np_state["gauss"])
    np.random.set_state(np_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def training_runtime(cfg: TrainConfig) -> Iterator[Runtime]:
    """Set up device, process group, threads and seeds for ``cfg``; restore them afterwards.

    Processes come from ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``; NCCL on CUDA,
    gloo on the CPU). OpenCV runs single-threaded during the run: a loader worker forked
    while OpenCV's thread pool exists deadlocks when it touches the pool.
    """
    import cv2

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, world, local_rank)
    saved_threads, saved_cv2_threads, saved_rng = torch.get_num_threads(), cv2.getNumThreads(), rng_state()
    started_group = False
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.set_num_threads(cfg.threads or max(1, available_cpus() // max(1, world)))
        cv2.setNumThreads(1)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            started_group = True
        yield Runtime(rank, world, local_rank, device)
    finally:
        if started_group and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(saved_threads)
        cv2.setNumThreads(saved_cv2_threads)
        set_rng_state(saved_rng)
