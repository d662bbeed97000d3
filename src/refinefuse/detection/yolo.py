"""The object detector of the detection study: Ultralytics YOLO, behind the ``detect`` extra.

Everything that touches Ultralytics is here: importing it offline, building a detector from
a model YAML or from a ``.safetensors`` file, training, scoring (mAP per class) and
predicting. Ultralytics stores its own checkpoints as pickles; refinefuse never loads a
``.pt`` file it is given (unpickling can run code). A trained detector is kept as
``detector.safetensors`` (state dict, with the model YAML in the header), Ultralytics'
``.pt`` files of the run are deleted, and a saved detector is rebuilt from its YAML and
safetensors. (During :func:`train_detector` Ultralytics reads back the checkpoint it wrote
moments before in the same call; that is the only pickle involved.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

#: the ``detect`` extra's install hint
EXTRA_HINT = "pip install 'refinefuse[detect]'"
#: smallest YOLOv8 model, from its YAML (no download): trains from scratch
DEFAULT_DETECTOR = "yolov8n.yaml"
_COMPAT_LIBS: list[torch.library.Library] = []


@dataclass(frozen=True)
class DetectorSettings:
    """How every detector of a study is trained: identical for all methods and seeds.

    Defaults follow the paper's Table 4 set-up (YOLO, SGD, batch 16, initial learning rate
    0.01) with a CPU budget: the smallest model, 128 px images and 20 epochs instead of
    YOLOv5s, 640 px and 100 epochs.
    """

    detector: str = DEFAULT_DETECTOR  #: Ultralytics model YAML, or a ``.safetensors`` detector to start from
    epochs: int = 20
    imgsz: int = 128
    batch: int = 16
    optimizer: str = "SGD"
    lr0: float = 0.01
    workers: int = 0  #: data-loader processes (0: in the training process; the CPU is busy training)

    def key(self) -> dict[str, Any]:
        """What makes two trained detectors comparable (stored with each run)."""
        return asdict(self)


# ----------------------------------------------------------------------------- import
@contextmanager
def restored_process_state() -> Iterator[None]:
    """Put back what Ultralytics changes process-wide: torch's and OpenCV's thread counts
    (it sets torch to CPUs - 1 and OpenCV to 0), deterministic algorithms and the RNGs."""
    import cv2

    from ..training.runtime import rng_state, set_rng_state

    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    deterministic, rng = torch.are_deterministic_algorithms_enabled(), rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
        torch.use_deterministic_algorithms(deterministic)
        set_rng_state(rng)


def _torchvision_without_ops() -> None:
    """Make ``import torchvision`` work when its C++ ops cannot load.

    PyPI's torchvision wheel is built against the CUDA build of torch; with the CPU build of
    torch (what this project installs) its ``_C`` library does not load, and ``import
    torchvision`` then fails while registering fake kernels for ``torchvision::nms`` and
    ``qnms``. Defining those two operators first lets the pure-Python part import; ``nms``
    gets Ultralytics' own pure-PyTorch NMS as its CPU kernel. Nothing else of torchvision's
    C++ ops is used by YOLO detection.
    """
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import left half-initialised modules
    from ultralytics.utils.nms import TorchNMS

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", lambda dets, scores, iou: TorchNMS.nms(dets, scores, iou), "CPU")
    _COMPAT_LIBS.append(lib)  # a Library object unregisters its operators when collected
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True  # torchvision.ops.nms checks this before calling the op
    warnings.warn(
        "torchvision's C++ ops do not load with this torch build; detection uses Ultralytics' PyTorch NMS",
        stacklevel=3,
    )


def require_ultralytics() -> Any:
    """Import and return the ``ultralytics`` module, offline; :class:`InputError` when the extra is missing."""
    if importlib.util.find_spec("ultralytics") is None:
        raise InputError(f"detect needs Ultralytics YOLO: {EXTRA_HINT}")
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks, downloads or telemetry
    with restored_process_state():
        try:
            import torchvision  # noqa: F401
        except RuntimeError as exc:
            if "torchvision::" not in str(exc):
                raise
            _torchvision_without_ops()
        import ultralytics

        ultralytics.settings.update({"sync": False})
    return ultralytics


# ----------------------------------------------------------------------------- build / save / load
def _check_spec(spec: str) -> None:
    suffix = Path(spec).suffix.lower()
    if suffix in (".pt", ".pth"):
        raise InputError(
            f"{spec}: refinefuse does not load Ultralytics .pt checkpoints (they are pickles, which can run "
            "code); give a model YAML, or convert the weights you trust to .safetensors (docs/detection.md)"
        )
    if suffix not in (".yaml", ".yml", ".safetensors"):
        raise InputError(f"{spec}: --detector takes an Ultralytics model YAML (e.g. yolov8n.yaml) or a .safetensors")
    if suffix == ".safetensors" and not Path(spec).is_file():
        raise InputError(f"{spec}: no such file")


def read_detector_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a ``.safetensors`` detector: ``{"detector": YAML, "names": {...}, ...}``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise InputError(f"{path}: not a readable .safetensors file ({exc})") from None
    if "detector" not in meta:
        raise InputError(f"{path}: no 'detector' (model YAML) entry in its header; not a refinefuse detector")
    return {"detector": meta["detector"], "names": json.loads(meta.get("names", "{}"))}


def _yolo_from_yaml(yaml_spec: str, names: dict[int, str] | None) -> Any:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    try:
        model: Any = YOLO(yaml_spec, task="detect")
    except (FileNotFoundError, OSError) as exc:
        raise InputError(f"{yaml_spec}: not an Ultralytics model YAML ({exc})") from None
    if names is not None:  # the class count of the study's data (the YAML's nc is COCO's 80)
        model.model = DetectionModel(model.model.yaml, nc=len(names), verbose=False)
        model.model.names = dict(names)
    return model


def build_detector(spec: str, names: dict[int, str] | None = None) -> Any:
    """An Ultralytics ``YOLO`` object from a model YAML (random weights) or a refinefuse
    ``.safetensors`` detector (its YAML, then its weights).

    With ``names`` the detection head has that many classes; weights of another class count
    (e.g. COCO's 80) are loaded where shapes match, as Ultralytics does for pretrained weights.
    A model built from ``.safetensors`` starts training from those weights.
    """
    _check_spec(spec)
    if Path(spec).suffix.lower() != ".safetensors":
        return _yolo_from_yaml(spec, names)
    from safetensors.torch import load_file

    meta = read_detector_meta(spec)
    saved_names = {int(k): v for k, v in meta["names"].items()}
    model = _yolo_from_yaml(meta["detector"], names if names is not None else saved_names or None)
    state = load_file(spec)
    own = model.model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise InputError(f"{spec}: none of its weights fit {meta['detector']}")
    model.model.load_state_dict(matched, strict=False)
    # Ultralytics' train() seeds the new model from `model.model` when a checkpoint is set
    model.ckpt = {"refinefuse_safetensors": str(spec)}
    return model


def save_detector(model: Any, path: str | os.PathLike[str], yaml_spec: str) -> Path:
    """Write the detector's weights as float32 ``.safetensors`` with its YAML and class names in the header."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    net = model.model
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    names = {str(k): v for k, v in dict(net.names).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"detector": yaml_spec, "names": json.dumps(names, sort_keys=True)})
    return Path(path)


def load_detector(path: str | os.PathLike[str]) -> Any:
    """A detector saved by :func:`save_detector` (no pickle involved)."""
    return build_detector(str(path))


# ----------------------------------------------------------------------------- train / score / predict
def base_yaml(spec: str) -> str:
    """The model YAML behind ``spec`` (itself, or the one named in a ``.safetensors`` header)."""
    _check_spec(spec)
    return read_detector_meta(spec)["detector"] if spec.lower().endswith(".safetensors") else spec


def check_detector(spec: str) -> None:
    """:class:`InputError` unless ``spec`` names a usable detector: a model YAML that
    Ultralytics finds (its bundled ones by name, or a file), or a refinefuse ``.safetensors``."""
    require_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    yaml_spec = base_yaml(spec)
    try:
        yaml_model_load(yaml_spec)  # resolves scaled names: yolov8n.yaml -> yolov8.yaml, scale n
    except (FileNotFoundError, OSError) as exc:
        raise InputError(f"{yaml_spec}: not an Ultralytics model YAML ({exc})") from None


def train_detector(
    data_yaml: Path,
    run_dir: Path,
    settings: DetectorSettings,
    names: dict[int, str],
    seed: int,
    device: str,
    threads: int | None = None,
) -> Any:
    """Train one detector on ``data_yaml`` (Ultralytics dataset file) into ``run_dir``; returns
    the ``YOLO`` object holding the best epoch by validation fitness (Ultralytics' rule).
    ``run_dir`` keeps ``results.csv`` and ``args.yaml``; its ``.pt`` pickles are removed.
    ``threads``: torch threads while training (default: every CPU; Ultralytics would use CPUs - 1)."""
    from ..io import available_cpus

    require_ultralytics()
    model = build_detector(settings.detector, names)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    n_threads = threads or available_cpus()
    # Ultralytics sets the thread count when the trainer picks its device; this runs after that
    model.add_callback("on_pretrain_routine_start", lambda _trainer: torch.set_num_threads(n_threads))
    with restored_process_state():
        _train(model, data_yaml, run_dir, settings, seed, device)
    shutil.rmtree(run_dir / "weights", ignore_errors=True)
    return model


def _train(model: Any, data_yaml: Path, run_dir: Path, settings: DetectorSettings, seed: int, device: str) -> None:
    model.train(
        data=str(data_yaml),
        epochs=settings.epochs,
        imgsz=settings.imgsz,
        batch=settings.batch,
        optimizer=settings.optimizer,
        lr0=settings.lr0,
        workers=settings.workers,
        seed=seed,
        deterministic=True,
        device=device,
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        plots=False,
        verbose=False,
    )


def score_detector(model: Any, data_yaml: Path, imgsz: int, names: dict[int, str], device: str) -> dict[str, Any]:
    """mAP@0.5 and mAP@[0.5,0.95] on the dataset's ``test`` split, per class and overall.

    Returns ``{"map50": {class name or "all": float}, "map": {...}, "images": N, "instances":
    {class: n}}``; a class without test objects is ``None``.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="refinefuse-val-") as tmp, restored_process_state():
        metrics = model.val(
            data=str(data_yaml),
            split="test",
            imgsz=imgsz,
            batch=16,
            device=device,
            workers=0,
            plots=False,
            verbose=False,
            project=tmp,
            name="val",
        )
    box = metrics.box
    map50: dict[str, float | None] = {n: None for n in names.values()}
    map_: dict[str, float | None] = {n: None for n in names.values()}
    for i, c in enumerate(box.ap_class_index):
        map50[names[int(c)]] = float(box.ap50[i])
        map_[names[int(c)]] = float(box.ap[i])
    map50["all"], map_["all"] = float(box.map50), float(box.map)
    counts = np.asarray(getattr(metrics, "nt_per_class", np.zeros(len(names))))
    return {
        "map50": map50,
        "map": map_,
        "instances": {names[i]: int(counts[i]) for i in range(min(len(names), len(counts)))},
    }


def predict_boxes(model: Any, rgb: np.ndarray, imgsz: int, device: str, conf: float = 0.25) -> np.ndarray:
    """Detections on one RGB uint8 image: ``(K, 6)`` rows ``class x0 y0 x1 y1 confidence``,
    corners normalised to [0, 1]."""
    bgr = np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
    with restored_process_state():
        result = model.predict(bgr, imgsz=imgsz, conf=conf, device=device, verbose=False)[0]
    b = result.boxes
    if b is None or len(b) == 0:
        return np.zeros((0, 6), np.float32)
    return np.concatenate(
        [b.cls.cpu().numpy()[:, None], b.xyxyn.cpu().numpy(), b.conf.cpu().numpy()[:, None]], axis=1
    ).astype(np.float32)
