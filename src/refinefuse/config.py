"""Training configuration: a dataclass with the paper's settings as defaults, YAML files,
and ``key=value`` overrides (values parsed as YAML: ``lr=1e-3``, ``model_overrides={channels: [8, 8, 16, 16]}``).

Precedence (lowest first): dataclass defaults < YAML file (``--config``) < command-line
flags / ``--set key=value``. On ``--resume`` the configuration saved in ``last.pt`` takes
the place of the defaults, so a resumed run keeps its settings unless a file or flag
changes them (e.g. ``--epochs 400`` to extend a finished run).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .io import write_text

__all__ = [
    "TrainConfig",
    "field_help",
    "parse_flag_value",
    "load_config",
    "save_config",
    "apply_overrides",
    "parse_overrides",
    "default_config_path",
]


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the paper's (Sect. 4.1) where it gives them.

    Optimiser: SGD, lr 1e-3, batch 8, 300 epochs, crop 256, lambda 5 (paper). Not in the
    paper, our choices: momentum 0.9 (standard for SGD on conv nets), no weight decay, and
    a cosine learning-rate decay from ``lr`` to ``min_lr = lr / 100`` over all epochs after
    ``warmup_epochs`` of linear warm-up (1). ``optimizer: adam`` (lr 1e-3 fits too) converges
    faster on short CPU schedules.
    """

    # data
    data: str = ""  #: dataset folder with ir/ and vi/ (required)
    ir_dir: str = "ir"  #: folder of the ir slot under data (e.g. CT, PET)
    vis_dir: str | None = None  #: folder of the vis slot under data (None: vi, vis or visible)
    out: str = "runs/refinefuse"  #: run folder: checkpoints, log.csv, TensorBoard events, val grids
    mask: str = "infer"  #: salient mask source: infer|labels|boxes_ir|boxes_vi|masks|auto|none
    mask_dir: str = "masks"  #: folder of precomputed masks (mask: masks)
    salient_classes: list[int] = field(default_factory=lambda: [1, 2, 3])  #: MSRS label ids: car, person, bike
    box_classes: list[int] | None = None  #: YOLO classes to fill (None: all)
    auto_mask_k: float = 2.0  #: automatic mask: IR > mean + k * std
    auto_mask_min_area: float = 0.001  #: automatic mask: smallest component (fraction of the image)
    crop: int = 256  #: random square crop (paper: 256)
    small_images: str = "whole"  #: images smaller than the crop: whole | pad
    augment: bool = True  #: random crops, 90-degree rotations and flips (False: centre crops)
    rescale: list[float] | None = (
        None  #: [low, high]: random resize factor before cropping (None: off; not in the paper)
    )
    flat_patch: float = 0.0  #: probability of a flat black/white rectangle in both images (0: off; not in the paper)
    max_pairs: int | None = None  #: use at most N pairs (evenly spaced), e.g. for quick runs
    val_pairs: int = 4  #: held-out pairs for validation (0: none; best.pt then follows the train loss)
    val_every: int = 1  #: validate every N epochs (and after the last one)
    workers: int | None = None  #: DataLoader workers (None: min(4, CPUs per process))
    # model and loss
    model: str = "refinefuse"  #: registered model name
    model_overrides: dict[str, Any] = field(
        default_factory=dict
    )  #: constructor kwargs, e.g. {channels: [8, 8, 16, 16]}
    loss: str = "full"  #: full | A | B | C (paper Table 8)
    lam: float = 5.0  #: texture weight lambda (paper: 5)
    flat_weight: float = (
        0.0  #: weight of the flat-region texture penalty (0: the paper's loss; losses.flat_texture_loss)
    )
    scd_weight: float = 0.0  #: weight of the 2 - SCD term (0: the paper's loss; losses.scd_loss)
    halo_weight: float = 0.0  #: weight of the out-of-range term (0: the paper's loss; losses.halo_loss)
    max_int_weight: float = 0.0  #: weight of a max(I, V) intensity term (0: the paper's; losses.max_intensity_loss)
    vif_weight: float = 0.0  #: weight of the 2 - VIF term (0: the paper's loss; losses.vif_loss)
    qabf_weight: float = 0.0  #: weight of the 1 - Qabf term (0: the paper's loss; losses.qabf_loss)
    # optimisation
    optimizer: str = "sgd"  #: sgd (paper) | adam
    lr: float = 1e-3  #: initial learning rate (paper: 1e-3)
    momentum: float = 0.9  #: SGD momentum (our choice)
    weight_decay: float = 0.0  #: L2 weight decay (paper: none)
    scheduler: str = "cosine"  #: cosine | step | none
    warmup_epochs: int = 1  #: linear warm-up epochs (from lr / 10)
    min_lr: float | None = None  #: cosine floor (None: lr / 100)
    step_size: int = 100  #: step schedule: decay every N epochs
    gamma: float = 0.1  #: step schedule: decay factor
    grad_clip: float | None = None  #: clip the gradient norm (None: off)
    ema_decay: float = 0.0  #: keep an exponential moving average of the weights (e.g. 0.998; 0: off; not in the paper)
    epochs: int = 300  #: paper: 300
    batch_size: int = 8  #: per process (DDP: the global batch is batch_size * world size)
    # runtime
    seed: int = 0  #: seeds torch, numpy and Python random, and every augmentation
    device: str = "auto"  #: auto (CUDA when available) | cpu | cuda | cuda:1
    amp: bool = True  #: automatic mixed precision on CUDA; on the CPU only with amp_dtype bfloat16
    amp_dtype: str = "float16"  #: float16 (with a gradient scaler) | bfloat16
    channels_last: bool | None = (
        None  #: NHWC memory format; None: on CUDA only (measured slower on CPU, docs/training.md)
    )
    threads: int | None = None  #: torch.set_num_threads (None: CPUs per process)
    keep_last: int = 2  #: also keep epoch_XXXX.pt for the last N epochs (0: only last.pt/best.pt)
    tensorboard: bool = True  #: write TensorBoard events in RUN_DIR/tb
    val_metrics: list[str] = field(default_factory=lambda: ["VIF", "Qabf", "SCD"])  #: if refinefuse.metrics exists
    progress: bool = True  #: tqdm progress bars
    resume: bool = False  #: continue from RUN_DIR/last.pt (a fresh start when there is none)
    init: str | None = (
        None  #: start a new run from this checkpoint's weights (fresh optimizer and schedule; unused when resuming)
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        cfg = cls()
        apply_overrides(cfg, values, source=source)
        return cfg


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def default_config_path() -> Path:
    """The packaged paper configuration ``configs/train_msrs.yaml``."""
    return Path(__file__).with_name("configs") / "train_msrs.yaml"


_KINDS = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check and convert ``value`` for field ``name`` (ints for floats, lists for tuples)."""
    annotation = str(_FIELDS[name].type)  # e.g. "float | None", "list[int]"
    if value is None:
        if "None" in annotation:
            return None
        raise InputError(f"{source}: '{name}' may not be empty")
    kind = _KINDS[annotation.split("|")[0].split("[")[0].strip()]
    if kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, tuple):
        return list(value)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise InputError(f"{source}: '{name}' expects {kind.__name__}, got {value!r}")
    return value


def apply_overrides(cfg: TrainConfig, values: dict[str, Any], *, source: str = "overrides") -> TrainConfig:
    """Set fields of ``cfg`` from a dict, checking names and types; returns ``cfg``."""
    for name, value in values.items():
        if not isinstance(name, str) or name not in _FIELDS:
            raise InputError(f"{source}: unknown training setting '{name}'")
        setattr(cfg, name, _coerce(name, value, source))
    return cfg


def field_help() -> dict[str, str]:
    """Each :class:`TrainConfig` field's ``#:`` comment (its documentation and CLI help), read
    from the class source, so the flags of ``refinefuse train`` are generated from one place."""
    import inspect
    import re

    docs = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        match = re.match(r"\s+(\w+):\s*[^=]+=.*#:\s*(.*)$", line)
        if match:
            docs[match.group(1)] = match.group(2).strip()
    return docs


def parse_flag_value(name: str, text: str) -> Any:
    """A command-line value for field ``name``: plain text for string fields, else YAML
    (``1e-3``, ``[1, 4]``, ``{channels: [8, 8]}``, ``null``)."""
    annotation = str(_FIELDS[name].type)
    if annotation == "str":
        return text
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise InputError(f"--{name.replace('_', '-')} {text!r}: value is not valid YAML") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "model_overrides={channels: [8, 8]}"]`` -> dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise InputError(f"--set {item!r}: value is not valid YAML") from None
    return out


def load_config(path: str | os.PathLike[str], base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML mapping of settings on top of ``base`` (default: the dataclass defaults)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return apply_overrides(base if base is not None else TrainConfig(), values, source=str(path))


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as YAML (atomically)."""
    return write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
