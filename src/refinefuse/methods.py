"""The one registry of fusion methods: every registered network and every baseline, by name.

A method is built as a *grey fuser*: ``fuser(ir_y, vis_y) -> fused_y`` on float32 ``(H, W)``
arrays in [0, 1]. Networks are the names of :func:`refinefuse.models.list_models` (a
checkpoint, ``weights``, holds their trained parameters); baselines are those of
:func:`refinefuse.baselines.list_baselines` (no weights). ``fuse``, ``reproduce`` and
``bench`` build every fuser through :func:`get_fuser` / :func:`load_network`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InputError

GreyFuser = Callable[[np.ndarray, np.ndarray], np.ndarray]
BACKENDS = ("auto", "torch", "onnx")
#: network precisions: fp32 (default), bf16 (PyTorch autocast), int8 (ONNX Runtime, CPU)
PRECISIONS = ("fp32", "bf16", "int8")
#: the method used when none is named (the paper's network)
DEFAULT_METHOD = "refinefuse"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "refinefuse_msrs.safetensors"
#: registered model name -> the weights shipped for it (the name the checkpoint holds)
SHIPPED_WEIGHTS: dict[str, Path] = {"refinefuse": DEFAULT_WEIGHTS}


# ----------------------------------------------------------------------------- registry
def list_methods() -> list[str]:
    """Every method name: the registered networks (sorted), then the baselines."""
    from .baselines import list_baselines
    from .models import list_models

    return [*list_models(), *list_baselines()]


def is_network(name: str) -> bool:
    """True when ``name`` is a registered network (it needs weights), False for a baseline or unknown name."""
    from .models import list_models

    return name in list_models()


def check_method(name: str) -> str:
    """``name`` when it is a method, else an :class:`InputError` listing them."""
    if name not in list_methods():
        raise InputError(f"unknown fusion method '{name}' (choose from {', '.join(list_methods())})")
    return name


def default_weights(method: str = DEFAULT_METHOD) -> Path | None:
    """The weights shipped inside the package for network ``method``, or ``None`` when none ship."""
    path = SHIPPED_WEIGHTS.get(method)
    return path if path is not None and path.is_file() else None


def load_network(method: str, weights: str | os.PathLike[str] | None = None) -> tuple[nn.Module, Path]:
    """Network ``method`` on the CPU, eval mode, from ``weights`` (default: its shipped weights).

    Returns ``(model, checkpoint path)``. :class:`InputError` (one line) when no weights are
    given and none ship, or when the checkpoint holds another model than ``method``.
    """
    from .checkpoint import load_model

    check_method(method)
    if not is_network(method):
        raise InputError(f"method '{method}' is not a network (it has no weights)")
    path = Path(weights) if weights is not None else default_weights(method)
    if path is None:
        raise InputError(
            f"no trained weights ship for method '{method}': pass --weights CKPT "
            f"(a checkpoint from `refinefuse train --model {method}`)"
        )
    model = load_model(path, map_location="cpu")
    held = getattr(model, "model_name", None)
    if held != method:
        raise InputError(f"{path}: holds model '{held}', not '{method}' (pass --method {held})")
    return model, path


# ----------------------------------------------------------------------------- devices / network fusers
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; else ``cpu``, ``cuda``, ``cuda:N``, ``mps``
    or ``xpu[:N]``. A malformed, unsupported or unavailable device is an :class:`InputError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"--device: unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type not in DEVICE_TYPES:
        raise InputError(f"--device: unsupported device '{device}' (use auto, cpu, cuda, cuda:N or mps)")
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, dev.type, None)
        available = bool(backend is not None and backend.is_available())
        count = backend.device_count() if backend is not None and available else 0
    if not available:
        raise InputError(f"--device {device} requested but no {dev.type.upper()} device is available")
    if dev.index is not None and dev.index >= count:
        raise InputError(f"--device {device}: no such device ({count} {dev.type.upper()} device(s) available)")
    return dev


def network_fuser(
    model: nn.Module, device: str | torch.device = "auto", precision: str = "fp32", **tiling: Any
) -> GreyFuser:
    """Wrap a network as a grey fuser (inference mode, tiled for large images); ``precision``
    ``"bf16"`` runs it under bfloat16 autocast (CPU, or CUDA with bf16)."""
    from .models.inference import fuse_tensor

    dev = resolve_device(device)
    model = model.to(dev).eval()
    if precision not in ("fp32", "bf16"):
        raise InputError(f"PyTorch runs the network in fp32 or bf16, not {precision}")
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"precision bf16 is not supported by {torch.cuda.get_device_name(dev)}")

    def fuse(ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        ir_t = torch.from_numpy(np.ascontiguousarray(ir_y))[None, None].to(dev)
        vis_t = torch.from_numpy(np.ascontiguousarray(vis_y))[None, None].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = fuse_tensor(model, ir_t, vis_t, **tiling)
        return out[0, 0].float().cpu().numpy()

    return fuse


def onnx_network_fuser(model: nn.Module, weights: str | os.PathLike[str], precision: str = "fp32") -> GreyFuser:
    """The network through ONNX Runtime on the CPU (fp32: about twice as fast as PyTorch eager
    there, same output to 1e-6; int8: static quantisation, see docs/efficiency.md). The export
    is cached per checkpoint (:func:`refinefuse.export.cached_export`,
    :func:`~refinefuse.export.cached_int8_export`). Images larger than the tiling threshold
    are fused in tiles through the same session, which bounds memory."""
    from .export import cached_export, cached_int8_export, onnx_fuser

    if precision == "int8":
        path = cached_int8_export(model, weights)
    elif precision == "fp32":
        path = cached_export(model, weights)
    else:
        raise InputError(f"ONNX Runtime runs the network in fp32 or int8, not {precision}")
    return onnx_fuser(path, threads=torch.get_num_threads())


# ----------------------------------------------------------------------------- fusers by name
def get_fuser(
    name: str = DEFAULT_METHOD,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    backend: str = "auto",
    precision: str = "fp32",
) -> GreyFuser:
    """The grey fuser of method ``name`` (see :func:`list_methods`).

    A network loads ``weights`` (default: its shipped weights, see :func:`default_weights`);
    the checkpoint must hold that network. ``backend`` (networks only): ``"auto"`` runs ONNX
    Runtime when the device is the CPU and the ``onnx`` extra is installed (falling back to
    PyTorch, with a warning, if the export fails), else PyTorch; ``"torch"`` always PyTorch;
    ``"onnx"`` ONNX Runtime (CPU) or an error. ``precision`` (networks only): ``"fp32"``;
    ``"bf16"``, PyTorch under bfloat16 autocast; ``"int8"``, ONNX Runtime with the statically
    quantised model (CPU; calibrated once on ``msrs/train128``, then cached). Baselines take
    neither weights, backend nor precision.
    """
    from .export import onnx_available

    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    check_method(name)
    if not is_network(name):
        if weights is not None:
            raise InputError(f"--weights applies to the network only, not to method '{name}'")
        if backend != "auto":
            raise InputError(f"--backend applies to the network only, not to method '{name}'")
        if precision != "fp32":
            raise InputError(f"--precision applies to the network only, not to method '{name}'")
        from .baselines import get_baseline

        return get_baseline(name)
    dev = resolve_device(device)
    if precision == "int8":
        if dev.type != "cpu" or backend == "torch":
            raise InputError("--precision int8 runs through ONNX Runtime on the CPU (use --device cpu, --backend auto)")
        if not onnx_available():
            raise InputError("--precision int8 needs onnx and onnxruntime: pip install 'refinefuse[onnx]'")
        model, path = load_network(name, weights)
        return onnx_network_fuser(model, path, "int8")
    if precision == "bf16":
        if backend == "onnx":
            raise InputError("--precision bf16 runs through PyTorch (use --backend auto or torch)")
        return network_fuser(load_network(name, weights)[0], dev, precision="bf16")
    model, path = load_network(name, weights)
    if backend == "onnx":
        if dev.type != "cpu":
            raise InputError("--backend onnx runs on the CPU only (use --device cpu)")
        return onnx_network_fuser(model, path)
    if backend == "auto" and dev.type == "cpu" and onnx_available():
        try:
            return onnx_network_fuser(model, path)
        except Exception as exc:  # noqa: BLE001 - any export/runtime problem: the PyTorch path still works
            warnings.warn(f"ONNX Runtime path unavailable ({type(exc).__name__}: {exc}); using PyTorch", stacklevel=2)
    return network_fuser(model, dev)
