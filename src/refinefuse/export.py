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

import hashlib
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

__all__ = [
    "export_onnx",
    "OnnxFuser",
    "onnx_fuser",
    "compare_onnx",
    "onnx_available",
    "cached_export",
    "quantize_int8",
    "cached_int8_export",
    "calibration_pairs",
    "DEFAULT_OPSET",
]

DEFAULT_OPSET = 17
#: int8 calibration: this many evenly spaced ``msrs/train128`` pairs (training data only)
CALIBRATION_PAIRS = 32
CALIBRATION_SET = "msrs/train128"
#: names the int8 recipe (format, ranges, float parts) in cache file names and provenance records,
#: so that a changed recipe never reuses an old int8 model or its fused images
INT8_RECIPE = "qop-perchannel-minmax-depthwise-floattail2"
#: version of the exported graph, part of the fp32 cache key: bumped when the network's forward
#: changes the graph for the same weights (2: SFIM as two depthwise convs, PSIM's K/V ungrouped)
EXPORT_GRAPH = 2


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
        / f"{Path(weights).stem}-{digest}-g{EXPORT_GRAPH}-opset{opset}-torch{tag}.onnx"
    )
    stamp = path.with_name(path.name + ".sha256")
    if not _matches_stamp(path, stamp):
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path, opset=opset)
        write_text(stamp, file_sha256(path) + "\n")
    return path


def calibration_pairs(
    n: int = CALIBRATION_PAIRS, root: str | os.PathLike[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` evenly spaced pairs of ``msrs/train128`` (the fusion training set, 128x128, never a
    test set) as float32 ``(H, W)`` luminance in [0, 1]: the fixed int8 calibration set."""
    from .colour import luminance
    from .io import evenly_spaced, pair_folders, read_image
    from .paths import dataset_dir

    folder = dataset_dir(CALIBRATION_SET, root)
    if not (folder / "ir").is_dir() or not (folder / "vi").is_dir():
        raise InputError(
            f"{folder}: int8 calibration needs {CALIBRATION_SET} (ir/ and vi/) under the data root "
            "(set REFINEFUSE_DATA_ROOT); once built, the int8 model is cached and needs no data"
        )
    pairs = evenly_spaced(pair_folders(folder / "ir", folder / "vi"), n)
    return [(luminance(read_image(p.ir)), luminance(read_image(p.vis))) for p in pairs]


def _float_tail(model_proto, convs: int = 2) -> list[str]:
    """The nodes from the ``convs``-th last convolution to the output (the output decoder's last
    two convs, tanh and the output scaling), in the graph's topological order."""
    nodes = list(model_proto.graph.node)
    conv_at = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    return [node.name for node in nodes[conv_at[-convs] :]] if len(conv_at) >= convs else []


def quantize_int8(
    fp32_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: list[tuple[np.ndarray, np.ndarray]],
) -> Path:
    """Static int8 quantisation of an exported fp32 model with ONNX Runtime's tooling (atomic write).

    QOperator format (QLinearConv and friends), per-channel signed int8 weights, unsigned int8
    activations with MinMax ranges from ``calibration`` (float32 ``(H, W)`` pairs, padded to the
    stride). Every convolution is quantised except the output tail (:func:`_float_tail`:
    quantising it crushes dark regions, docs/efficiency.md), which :class:`OnnxFuser` keeps float
    at run time too (``session.disable_quant_qdq``). The network's graph has no grouped
    convolution with more than one input channel per group (SFIM runs as depthwise convs,
    PSIM's keys and values as plain ones): ONNX Runtime's int8 kernel for those is slower
    than fp32 here.
    """
    onnx = _require("onnx")
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(fp32_path)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    stride = int(meta.get("refinefuse_stride", "1"))
    feeds = [
        {
            name: pad_to_multiple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None], stride)[
                0
            ].numpy()
            for name, x in (("ir", ir), ("vis", vis))
        }
        for ir, vis in calibration
    ]
    if not feeds:
        raise InputError("int8 calibration needs at least one pair")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    out = Path(out)
    import logging

    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = tmp.with_name(tmp.name + ".pre.onnx")
        logging.disable(logging.WARNING)  # the quantiser logs every int64 shape tensor it skips
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            pre_model = onnx.load(str(pre))
            quantize_static(
                str(pre),
                str(tmp),
                _Reader(),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=_float_tail(pre_model),
            )
        finally:
            logging.disable(logging.NOTSET)
            pre.unlink(missing_ok=True)
        _add_metadata(
            str(tmp),
            {
                **meta,
                "refinefuse_precision": "int8",
                "refinefuse_int8_recipe": INT8_RECIPE,
                "refinefuse_calibration": str(len(feeds)),
            },
        )
    return out


def cached_int8_export(
    model: nn.Module,
    weights: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    n_calibration: int = CALIBRATION_PAIRS,
    data_root: str | os.PathLike[str] | None = None,
) -> Path:
    """The int8 model of checkpoint ``weights``, cached next to its fp32 export
    (:func:`cached_export`) under the same key plus ``-int8-c<n>``; built once from
    :func:`calibration_pairs` (which need the data root), then reused without data."""
    fp32 = cached_export(model, weights, cache)
    recipe = hashlib.sha256(INT8_RECIPE.encode()).hexdigest()[:8]
    path = fp32.with_name(f"{fp32.stem}-int8-{recipe}-c{int(n_calibration)}.onnx")
    stamp = path.with_name(path.name + ".sha256")
    if not _matches_stamp(path, stamp):
        quantize_int8(fp32, path, calibration_pairs(n_calibration, data_root))
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
    model's stride, runs the session and crops back; above the tiling threshold it runs
    tile by tile (:meth:`run_tiled`). ``threads``: ONNX Runtime intra-op threads (default:
    its own choice). ``arena``: ONNX Runtime's CPU memory arena, off by default because it
    makes memory grow from pair to pair (docs/efficiency.md). An int8 model
    (:func:`quantize_int8`) is run with its float operators kept float.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, arena: bool = False) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        # ONNX Runtime's CPU arena keeps every block it ever grew: a folder of 1024x768 pairs peaked
        # at 3.8 GiB with it against 1.9 GiB without (benchmarks/bench_folder_memory.py)
        options.enable_cpu_mem_arena = bool(arena)
        # Keep the float ops of an int8 model (the output tail) float, as quantised: ONNX Runtime's
        # QDQ fusions around them gave the same output 7% slower here. No effect on an fp32 model.
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.stride = int(meta.get("refinefuse_stride", "1"))
        self.precision = meta.get("refinefuse_precision", "fp32")

    def run(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """``(N, 1, H, W)`` float32 pair -> fused ``(N, 1, H, W)``."""
        h, w = ir.shape[-2:]
        feeds = {
            name: pad_to_multiple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.stride)[0].numpy()
            for name, x in (("ir", ir), ("vis", vis))
        }
        # ONNX Runtime's Tanh can undershoot -1 by an ulp; keep the documented [0, 1] range
        return np.clip(self.session.run(["fused"], feeds)[0][..., :h, :w], 0.0, 1.0)

    def run_tiled(self, ir: np.ndarray, vis: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
        """:meth:`run`, in overlapping tiles when ``H * W`` exceeds ``max_pixels`` (default:
        the package's tiling threshold): the same tiles and blending as the PyTorch path
        (:func:`refinefuse.models.inference.fuse_tiles`), so memory stays bounded."""
        import math

        from .models.inference import DEFAULT_MAX_PIXELS, fuse_tiles

        limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        h, w = ir.shape[-2:]
        if h * w <= limit:
            return self.run(ir, vis)

        def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.run(a.numpy(), b.numpy()))

        ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))
        vis_t = torch.from_numpy(np.ascontiguousarray(vis, dtype=np.float32))
        return fuse_tiles(run, ir_t, vis_t, math.isqrt(limit)).numpy()

    def __call__(self, ir_y: np.ndarray, vis_y: np.ndarray) -> np.ndarray:
        if ir_y.shape != vis_y.shape:
            raise ValueError(f"ir and vis differ in shape: {ir_y.shape} vs {vis_y.shape}")
        if ir_y.ndim == 4:
            return self.run_tiled(ir_y, vis_y)
        return self.run_tiled(ir_y[None, None], vis_y[None, None])[0, 0]


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
