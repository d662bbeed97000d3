"""Checkpoint formats shared by training, fusion and the shipped weights.

Two files hold the same content::

    {
      "format": "refinefuse-checkpoint", "version": 1,
      "model": {"name": "refinefuse", "config": {...constructor kwargs...}},
      "state_dict": {...},            # model weights (CPU tensors)
      "meta": {...},                  # plain JSON data: data, epochs, loss, command, date
      # training checkpoints (.pt only) add: "optimizer", "scheduler", "scaler", "epoch", "rng", "train_config"
    }

- ``.safetensors`` (:func:`save_weights`): the weights only, with ``format``, ``version``,
  ``model`` and ``meta`` as JSON strings in the header. The shipped weights use it.
- ``.pt`` (:func:`save_checkpoint`): a ``torch.save`` dict, for training checkpoints with
  optimizer state.

Loading never runs code: ``.safetensors`` holds tensors and text only, and ``.pt`` files
are read with ``torch.load(weights_only=True)``, which refuses any pickled object other
than tensors and plain containers (plus the few numpy/torch types that older checkpoints
of this package hold, see :data:`_LEGACY_SAFE_GLOBALS`). Which reader applies follows the
file's content, not its name. Checkpoints load on any device (``map_location``) and
rebuild the model from its config, so variants round-trip without extra arguments.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .io import atomic_path

__all__ = [
    "FORMAT",
    "VERSION",
    "model_spec",
    "save_checkpoint",
    "save_weights",
    "read_checkpoint",
    "load_model",
    "release_checkpoint",
    "UnfinishedRunWarning",
    "LAST",
    "BEST",
]

FORMAT = "refinefuse-checkpoint"
VERSION = 1

#: File names of a training run's rolling checkpoint and its best-validation copy (the run folder's).
LAST, BEST = "last.pt", "best.pt"


class UnfinishedRunWarning(UserWarning):
    """A run's ``last.pt`` from before the run's planned last epoch (read while the run goes on, or stopped)."""


#: Types that ``.pt`` files written by earlier versions hold besides tensors: the numpy RNG
#: state (a uint32 array) and ``torch.__version__`` in ``meta``. None of them runs code.
_LEGACY_SAFE_GLOBALS = [
    np.core.multiarray._reconstruct if hasattr(np, "core") else np._core.multiarray._reconstruct,  # type: ignore[attr-defined]
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
    torch.torch_version.TorchVersion,
]


def plain_json(value: Any, *, where: str = "meta") -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None).

    str/int/float subclasses (``torch.__version__``, numpy scalars) become the base type,
    tuples become lists; anything else is a ``TypeError``, so no checkpoint ever stores an
    object that needs code to load.
    """
    try:
        return json.loads(json.dumps(value, default=_json_scalar, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} must hold plain JSON data: {exc}") from None


def _json_scalar(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON data")


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "config"}`` of a model built by :func:`refinefuse.models.create_model`."""
    # nn.Module.__getattr__ is typed as returning Tensor | Module; ``config`` is the constructor kwargs dict
    return {"name": getattr(model, "model_name", "refinefuse"), "config": dict(model.config)}  # type: ignore[arg-type]


def _stored_state_dict(model: nn.Module, weights_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    def stored(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().cpu()
        return (t.to(weights_dtype) if weights_dtype is not None and t.is_floating_point() else t).contiguous()

    return {k: stored(v) for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    meta: dict[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
    **extra: Any,
) -> Path:
    """Atomically write ``model`` (+ ``meta`` and any training state in ``extra``) to a ``.pt`` file.

    ``meta`` must be plain JSON data. ``extra`` may hold tensors, numbers, strings and
    containers of them (optimizer and scheduler state dicts, RNG states as tensors).
    ``weights_dtype`` (e.g. ``torch.float16``) stores floating-point weights in that type
    to halve the file; :func:`load_model` casts them back to the model's float32.
    """
    model = getattr(model, "module", model)  # unwrap DDP
    state = {
        "format": FORMAT,
        "version": VERSION,
        "model": plain_json(model_spec(model), where="model config"),
        "state_dict": _stored_state_dict(model, weights_dtype),
        "meta": plain_json(dict(meta or {})),
        **extra,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # a file object: the archive name inside does not follow the random temp name
    return Path(path)


def save_weights(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    meta: dict[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Atomically write ``model``'s weights as ``.safetensors``; model spec and ``meta`` go in the header.

    The same model and meta always give the same bytes (keys are sorted).
    """
    from safetensors.torch import save

    model = getattr(model, "module", model)
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "model": json.dumps(plain_json(model_spec(model), where="model config"), sort_keys=True),
        "meta": json.dumps(plain_json(dict(meta or {})), sort_keys=True),
    }
    data = _canonical_header(save(_stored_state_dict(model, weights_dtype), metadata=header))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _canonical_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted (the library writes its
    metadata in hash order), padded with spaces to 8 bytes as the format asks."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data[8 + n :]


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with a little-endian u64 header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return head[8:9] == b"{" and 0 < n <= path.stat().st_size - 8


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        state = {
            "format": header.get("format"),
            "version": int(header.get("version", "0")),
            "model": json.loads(header["model"]) if "model" in header else None,
            "meta": json.loads(header.get("meta", "{}")),
        }
    except Exception as exc:  # noqa: BLE001 - corrupt header or data: a user error, never a traceback
        raise InputError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
    state["state_dict"] = {k: v.to(map_location) for k, v in tensors.items()}
    return state


def _read_torch(path: Path, map_location: str | torch.device) -> Any:
    try:
        # a file object: torch.load would pick a reader from a ".safetensors" name, not the content
        with torch.serialization.safe_globals(_LEGACY_SAFE_GLOBALS), open(path, "rb") as fh:
            return torch.load(fh, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # a pickled class or function
            raise InputError(
                f"{path}: refused: the file holds Python objects other than tensors and plain data "
                "(loading it could run code)"
            ) from None
        raise InputError(f"{path}: not a readable checkpoint (UnpicklingError)") from None
    except Exception as exc:  # noqa: BLE001 - corrupt / truncated / not a torch file
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (``.safetensors`` or ``.pt``) as a dict, checking its format.

    Never executes code from the file; :class:`InputError` names the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    state = _read_safetensors(path, map_location) if _is_safetensors(path) else _read_torch(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a refinefuse checkpoint (missing format tag)")
    if not isinstance(state.get("version"), int) or state["version"] > VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')!r} is not supported by this package")
    spec = state.get("model")
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("name"), str)
        or not isinstance(spec.get("config", {}), dict)
    ):
        raise InputError(f"{path}: checkpoint lacks its model name and config")
    if not isinstance(state.get("state_dict"), dict):
        raise InputError(f"{path}: checkpoint lacks its weights (state_dict)")
    return state


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint, weights loaded, in eval mode on ``map_location``."""
    from .models import create_model

    state = read_checkpoint(path, map_location=map_location)
    spec = state["model"]
    try:
        model = create_model(spec["name"], **spec.get("config", {}))
    except ValueError as exc:  # unknown model name, bad value
        raise InputError(f"{path}: {str(exc).splitlines()[0]}") from None
    except TypeError as exc:  # unknown config key
        raise InputError(
            f"{path}: model config does not fit model {spec['name']!r} ({str(exc).splitlines()[0]})"
        ) from None
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the model config ({str(exc).splitlines()[0]})") from None
    _warn_if_unfinished(path, state)
    model.meta = state.get("meta", {})
    return model.to(map_location).eval()


def _warn_if_unfinished(path: Path | str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Warn when a run's ``last.pt`` is from before the run's planned last epoch.

    The trainer rewrites ``last.pt`` after every epoch, so one read while its run is still going
    is an intermediate model, not the run's result. ``best.pt`` and ``epoch_NNNN.pt`` are
    earlier epochs by design and are not checked.
    """
    if Path(path).name != LAST:
        return
    epoch, config = state.get("epoch"), state.get("train_config")
    planned = config.get("epochs") if isinstance(config, dict) else None
    if isinstance(epoch, int) and isinstance(planned, int) and epoch < planned:
        warnings.warn(
            f"{path}: checkpoint from epoch {epoch} of {planned}: its run has not finished (or was stopped)",
            UnfinishedRunWarning,
            stacklevel=3,
        )


def release_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, meta: dict[str, Any] | None = None
) -> Path:
    """Strip a training checkpoint to what fusion needs (model + meta), weights in float16.

    Used to make the weights shipped in ``refinefuse/weights``; ``meta`` is merged over
    the source checkpoint's. ``dst`` ending in ``.safetensors`` writes that format, else ``.pt``.
    """
    state = read_checkpoint(src)
    model = load_model(src)
    merged = {**state.get("meta", {}), **(meta or {})}
    if str(dst).endswith(".safetensors"):
        return save_weights(dst, model, meta=merged, weights_dtype=torch.float16)
    return save_checkpoint(dst, model, meta=merged, weights_dtype=torch.float16)
