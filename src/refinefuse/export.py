"""ONNX export of the network and an ONNX Runtime grey fuser (optional extra ``onnx``).

RefineFuse pads its input to a multiple of its total stride (``2 ** (levels - 1)``) with a
shape-dependent branch that tracing cannot keep, so the exported graph contains **no
padding**: it accepts ``(N, 1, H, W)`` inputs with ``H`` and ``W`` multiples of the stride
(batch, height and width are dynamic axes; checked in ``tests/test_export.py``).
:class:`OnnxFuser` does the padding (same reflect/replicate rule as
:func:`refinefuse.models.refinefuse.pad_to_multiple`) and the crop around the session, so
any image size works and outputs match the PyTorch model to float rounding. The stride is
stored in the model's metadata (``refinefuse_stride``).

``onnx``/``onnxruntime`` are imported lazily; without them these functions raise a one-line
:class:`~refinefuse.errors.InputError`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .io import atomic_path, file_sha256, write_text
from .models.refinefuse import pad_to_multiple

__all__ = ["export_onnx", "OnnxFuser", "onnx_fuser", "compare_onnx", "onnx_available", "cached_export", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def _stride(model: nn.Module) -> int:
    return int(getattr(model, "stride", 1))


def _round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    height: int = 480,
    width: int = 640,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model`` to ONNX at ``path`` (atomic write); returns the path.

    The graph is traced at ``height x width`` rounded up to a multiple of the model's stride;
    batch, height and width stay dynamic, but inputs must be stride multiples (``OnnxFuser``
    pads). Inputs ``ir``, ``vis``: float32 ``(N, 1, H, W)`` in [0, 1]; output ``fused``.
    """
    if height < 1 or width < 1:
        raise InputError(f"export size must be positive, got {width}x{height}")
    stride = _stride(model)
    h, w = _round_up(height, stride), _round_up(width, stride)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = (torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device))
    axes = {0: "batch", 2: "height", 3: "width"}
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the padding branch (see module doc)
            torch.onnx.export(
                model,
                example,
                str(tmp),
                input_names=["ir", "vis"],
                output_names=["fused"],
                opset_version=int(opset),
                dynamic_axes={"ir": axes, "vis": axes, "fused": axes},
                dynamo=False,
            )
            _add_metadata(
                str(tmp),
                {
                    "refinefuse_stride": str(stride),
                    "refinefuse_model": json.dumps(
                        {
                            "name": getattr(model, "model_name", "refinefuse"),
                            "config": dict(getattr(model, "config", {})),
                        }
                    ),
                },
            )
    finally:
        model.train(was_training)
    return path


def onnx_available() -> bool:
    """Whether the optional ``onnx`` extra (onnx + onnxruntime) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def cached_export(
    model: nn.Module,
    weights: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """The ONNX export of checkpoint ``weights`` (loaded as ``model``), made once and kept in
    :func:`refinefuse.paths.cache_dir` under the checkpoint's SHA-256, the opset and the
    torch version, so a changed checkpoint is exported anew.

    Beside each export, ``<name>.onnx.sha256`` holds the SHA-256 of its bytes; a cached file
    that does not match it (damaged, truncated, or written before this check) is exported
    anew, so a broken cache is repaired once instead of failing on every run."""
    from .paths import cache_dir

    digest = file_sha256(weights)[:16]
    tag = torch.__version__.split("+")[0]
    path = (
        Path(cache if cache is not None else cache_dir())
        / f"{Path(weights).stem}-{digest}-opset{opset}-torch{tag}.onnx"
    )
    stamp = path.with_name(path.name + ".sha256")
    if not _matches_stamp(path, stamp):
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path, opset=opset)
        write_text(stamp, file_sha256(path) + "\n")
    return path


def _matches_stamp(path: Path, stamp: Path) -> bool:
    """Whether ``path`` exists and its SHA-256 is the one recorded in ``stamp``."""
    try:
        return path.is_file() and stamp.read_text().strip() == file_sha256(path)
    except (OSError, UnicodeDecodeError):
        return False


def _add_metadata(path: str, items: dict[str, str]) -> None:
    onnx = _require("onnx")
    proto = onnx.load(path)
    for key, value in items.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def _require(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise InputError(f"{name} is not installed: pip install 'refinefuse[onnx]'") from None


class OnnxFuser:
    """Grey fuser backed by ONNX Runtime (CPUExecutionProvider): ``fuser(ir_y, vis_y) -> fused_y``.

    Takes float32 ``(H, W)`` (or ``(N, 1, H, W)``) arrays in [0, 1], pads them to the
    model's stride, runs the session and crops back. ``threads``: ONNX Runtime intra-op
    threads (default: its own choice).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.stride = int(meta.get("refinefuse_stride", "1"))

    def run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """``(N, 1, H, W)`` float32 pair -> fused ``(N, 1, H, W)``."""
        h, w = ir.shape[-2:]
        feeds = {
            name: pad_to_multiple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.stride)[0].numpy()
            for name, x in (("ir", ir), ("vis", vis))
        }
        # ONNX Runtime's Tanh can undershoot -1 by an ulp; keep the documented [0, 1] range
        return np.clip(self.session.run(["fused"], feeds)[0][..., :h, :w], 0.0, 1.0)

    def __call__(self, ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        if ir_y.shape != vis_y.shape:
            raise ValueError(f"ir and vis differ in shape: {ir_y.shape} vs {vis_y.shape}")
        if ir_y.ndim == 4:
            return self.run(ir_y, vis_y)
        return self.run(ir_y[None, None], vis_y[None, None])[0, 0]


def onnx_fuser(path: str | os.PathLike[str], threads: int | None = None) -> OnnxFuser:
    """Grey fuser for :func:`refinefuse.fuse.fuse_arrays` from an exported ONNX file."""
    return OnnxFuser(path, threads=threads)


def compare_onnx(model: nn.Module, path: str | os.PathLike[str], ir: np.ndarray, vis: np.ndarray) -> float:
    """Max absolute difference between ``model`` (PyTorch) and the ONNX file on float32 ``(H, W)`` [0, 1] inputs."""
    from .models.inference import fuse_tensor

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32)).to(device)
    vis_t = torch.from_numpy(np.ascontiguousarray(vis, dtype=np.float32)).to(device)
    reference = fuse_tensor(model, ir_t, vis_t, max_pixels=ir.size + 1).cpu().numpy()
    return float(np.abs(onnx_fuser(path)(ir, vis) - reference).max())
