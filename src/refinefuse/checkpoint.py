"""Checkpoint format shared by training, fusion and the shipped weights.

A checkpoint is a ``torch.save`` dict::

    {
      "format": "refinefuse-checkpoint", "version": 1,
      "model": {"name": "refinefuse", "config": {...constructor kwargs...}},
      "state_dict": {...},            # model weights (CPU tensors)
      "meta": {...},                  # free-form: data, epochs, loss, command, date
      # training checkpoints add: "optimizer", "scheduler", "scaler", "epoch", "rng", "train_config"
    }

It loads on any device (``map_location``) and rebuilds the model from its config, so
variants (levels, ablations, widths) round-trip without extra arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .io import atomic_path

FORMAT = "refinefuse-checkpoint"
VERSION = 1


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "config"}`` of a model built by :func:`refinefuse.models.create_model`."""
    return {"name": getattr(model, "model_name", "refinefuse"), "config": dict(model.config)}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    meta: dict | None = None,
    weights_dtype: torch.dtype | None = None,
    **extra: Any,
) -> Path:
    """Atomically write ``model`` (+ ``meta`` and any training state in ``extra``) to ``path``.

    ``weights_dtype`` (e.g. ``torch.float16``) stores floating-point weights in that type
    to halve the file; :func:`load_model` casts them back to the model's float32.
    """
    model = getattr(model, "module", model)  # unwrap DDP

    def stored(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().cpu()
        return t.to(weights_dtype) if weights_dtype is not None and t.is_floating_point() else t

    state = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_spec(model),
        "state_dict": {k: stored(v) for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
        **extra,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # a file object: the archive name inside does not follow the random temp name
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict, checking its format; :class:`InputError` names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a refinefuse checkpoint (missing format tag)")
    if state.get("version", 0) > VERSION:
        raise InputError(f"{path}: checkpoint version {state['version']} is newer than this package supports")
    return state


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint, weights loaded, in eval mode on ``map_location``."""
    from .models import create_model

    state = read_checkpoint(path, map_location=map_location)
    spec = state["model"]
    model = create_model(spec["name"], **spec.get("config", {}))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the model config ({str(exc).splitlines()[0]})") from None
    model.meta = state.get("meta", {})
    return model.to(map_location).eval()


def release_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, meta: dict | None = None) -> Path:
    """Strip a training checkpoint to what fusion needs (model + meta), weights in float16.

    Used to make the weights shipped in ``refinefuse/weights``; ``meta`` is merged over
    the source checkpoint's.
    """
    state = read_checkpoint(src)
    model = load_model(src)
    return save_checkpoint(dst, model, meta={**state.get("meta", {}), **(meta or {})}, weights_dtype=torch.float16)
