"""Training loop: ``train(TrainConfig) -> Path`` of the best checkpoint (``refinefuse train``).

- Data: :class:`~refinefuse.data.PairedFusionDataset`; ``val_pairs`` evenly spaced pairs are
  held out; loading and augmentation run in DataLoader workers. Each item's augmentation
  is seeded by (seed, epoch, index), so a resumed run repeats an uninterrupted one.
- Loss: :class:`~refinefuse.losses.FusionLoss` (paper Eq. 6-9 or an ablation setting).
- Optimiser: SGD (paper; momentum 0.9, our choice) or Adam; per-epoch schedule: linear
  warm-up from lr/10, then cosine decay to ``min_lr`` (or step decay).
- Devices: CPU (``torch.set_num_threads``; contiguous NCHW, measured faster than
  channels_last for this model on CPU); CUDA with automatic mixed precision and channels_last; several GPUs with DistributedDataParallel when started by ``torchrun``
  (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in the environment; NCCL on CUDA, gloo on CPU).
  ``batch_size`` is per process.
- Run folder: ``last.pt`` (every epoch), ``best.pt`` (lowest validation loss, or training
  loss without a validation set), ``epoch_XXXX.pt`` (last ``keep_last``), ``log.csv``,
  ``config.yaml``, ``tb/`` (TensorBoard), ``val/epoch_XXXX.png`` (rows ir | vis | fused).
  Checkpoints are written atomically: killing the process loses at most the current epoch.
  ``best.pt`` and ``epoch_XXXX.pt`` are independent copies of ``last.pt`` (not links), so
  damage to one file leaves the others loadable; a damaged ``last.pt`` on ``--resume`` is an
  error naming the newest intact checkpoint to copy over it.
- The header of every training pair is read before the run folder is created: a bad pair
  fails at once, naming the file.
- A non-finite loss or weight stops the run with :class:`TrainingDiverged`; ``last.pt`` keeps
  the last good epoch.
"""

from __future__ import annotations

import csv
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .checkpoint import model_spec, read_checkpoint, save_checkpoint
from .colour import to_uint8
from .config import TrainConfig, apply_overrides, load_config, save_config
from .data import PairedFusionDataset, collate_pairs
from .errors import InputError, RefineFuseError
from .io import atomic_path, write_image
from .losses import SETTINGS, FusionLoss
from .models import create_model

__all__ = ["train", "build_config", "TrainingDiverged", "EpochSampler", "lr_factor"]

LAST, BEST = "last.pt", "best.pt"


class TrainingDiverged(RefineFuseError):
    """The loss or the weights became NaN/inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- configuration
def build_config(
    config_file: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, *, resume: bool = False
) -> TrainConfig:
    """Merge defaults (or, with ``resume``, the config stored in ``OUT/last.pt``) < file < overrides."""
    overrides = dict(overrides or {})
    cfg = load_config(config_file) if config_file else TrainConfig()
    apply_overrides(cfg, overrides, source="command line")
    cfg.resume = resume
    last = Path(cfg.out) / LAST
    if resume and last.is_file():
        stored = _read_resume_checkpoint(last).get("train_config") or {}
        cfg = TrainConfig.from_dict(stored, source=str(last))
        if config_file:
            cfg = load_config(config_file, cfg)
        apply_overrides(cfg, overrides, source="command line")
        cfg.resume = True
    return cfg


def _check_config(cfg: TrainConfig) -> None:
    if not cfg.data:
        raise InputError("no dataset folder given (--data DIR)")
    checks = [
        (cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"lr must be positive, got {cfg.lr}"),
        (cfg.loss in SETTINGS, f"loss must be one of {', '.join(SETTINGS)}, got {cfg.loss!r}"),
        (cfg.optimizer in ("sgd", "adam"), f"optimizer must be sgd or adam, got {cfg.optimizer!r}"),
        (cfg.scheduler in ("cosine", "step", "none"), f"scheduler must be cosine, step or none, got {cfg.scheduler!r}"),
        (cfg.amp_dtype in ("float16", "bfloat16"), f"amp_dtype must be float16 or bfloat16, got {cfg.amp_dtype!r}"),
        (cfg.val_every >= 1, f"val_every must be at least 1, got {cfg.val_every}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` during 0-based ``epoch``: warm-up, then cosine/step/constant."""
    if epoch < cfg.warmup_epochs:
        return 0.1 + 0.9 * epoch / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return cfg.gamma ** ((epoch - cfg.warmup_epochs) // max(1, cfg.step_size))
    if cfg.scheduler == "cosine":
        floor = (cfg.min_lr if cfg.min_lr is not None else cfg.lr / 100) / cfg.lr
        progress = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


# ----------------------------------------------------------------------------- runtime
@dataclass
class _Runtime:
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


def _setup_runtime(cfg: TrainConfig) -> _Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {cfg.device!r} requested but CUDA is not available")
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cfg.threads or max(1, cpus // max(1, world)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Runtime(rank, world, local_rank, device)


def _worker_init(_: int) -> None:
    # one torch thread per loader worker: the main process owns the cores for compute
    torch.set_num_threads(1)


def _single_threaded_opencv() -> None:
    """Stop OpenCV's thread pool before loader workers are forked.

    A child forked while the parent's OpenCV pool exists deadlocks as soon as it touches
    the pool (``cv2.setNumThreads`` or a parallel function). Training owns its process, and
    OpenCV only decodes and converts images here, so one thread costs nothing.
    """
    import cv2

    cv2.setNumThreads(1)


class EpochSampler(Sampler):
    """Shuffled indices for one process, each paired with its augmentation seed.

    Yields ``(index, (seed, epoch, index))``; the permutation depends only on (seed, epoch).
    With ``world_size > 1`` the permutation is padded to a multiple of the world size and
    split round-robin (as :class:`torch.utils.data.DistributedSampler`).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.n))[:total]
        for index in order[self.rank :: self.world_size]:
            yield index, (self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.per_rank


def _rng_state() -> dict[str, Any]:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    # the numpy state as tensor + numbers: checkpoints load with weights_only=True, no numpy objects
    numpy_state = {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        key = np.asarray(np_state["key"], dtype=np.int64).astype(np.uint32)
        np_state = (np_state["name"], key, np_state["pos"], np_state["has_gauss"], np_state["gauss"])
    np.random.set_state(np_state)  # a tuple in checkpoints of earlier versions
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` an independent copy of ``src`` (a temporary file beside it, then a rename):
    never a hard link, so truncating or overwriting one file leaves the other intact."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _epoch_number(path: Path) -> int:
    digits = path.stem.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else -1


def _resume_hint(out: Path) -> str:
    """Which intact checkpoint of run folder ``out`` to copy over a damaged ``last.pt``:
    the newest readable ``epoch_XXXX.pt``, or ``best.pt`` when that one is newer."""
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


def _read_resume_checkpoint(last: Path) -> dict:
    """``read_checkpoint(last)`` for ``--resume``; a damaged file is a one-line
    :class:`InputError` that names the intact checkpoint to resume from instead."""
    try:
        return read_checkpoint(last)
    except InputError as exc:
        raise InputError(f"{exc}; {_resume_hint(last.parent)}") from None


def _one_line(exc: BaseException) -> str:
    """Last line of a (possibly worker-wrapped, multi-line) error message, without the type prefix."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = lines[-1] if lines else type(exc).__name__
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return line[len(prefix) :] if line.startswith(prefix) else line


# ----------------------------------------------------------------------------- logging
class _RunLog:
    """``log.csv`` (one row per epoch) + TensorBoard, on the main process only."""

    def __init__(self, out: Path, cfg: TrainConfig, start_epoch: int) -> None:
        self.path = out / "log.csv"
        self.columns = ["epoch", "lr", "train_loss", "train_int", "train_tex", "val_loss", "val_int", "val_tex"]
        self.columns += [f"val_{m}" for m in cfg.val_metrics] + ["pairs_per_s", "epoch_s", "time"]
        rows = []
        if start_epoch > 0 and self.path.is_file():  # drop rows of epochs the checkpoint does not cover
            with self.path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= start_epoch]
        self._write(rows, mode="w")
        self.tb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start_epoch + 1 if start_epoch else None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                print("refinefuse: tensorboard not installed; logging to CSV only", file=sys.stderr)

    def _write(self, rows: list[dict], mode: str) -> None:
        with self.path.open(mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, Any], grid: np.ndarray | None = None) -> None:
        self._write([{k: ("" if v is None else v) for k, v in row.items()}], mode="a")
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "time") and isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            if grid is not None:
                self.tb.add_image("val/ir_vis_fused", grid, row["epoch"], dataformats="HW")
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- validation
def _metric_fn():
    try:
        from .metrics import evaluate  # written by the metrics work; optional here
    except ImportError:
        return None
    return evaluate


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, criterion: FusionLoss, rt: _Runtime, cfg: TrainConfig):
    """Mean loss terms over the validation pairs, an ``ir | vis | fused`` uint8 grid, and metrics."""
    model.eval()
    sums, count, rows, metrics = np.zeros(3), 0, [], {}
    evaluate = _metric_fn() if cfg.val_metrics else None
    per_pair: list[dict[str, float]] = []
    for batch in loader:
        ir, vis, mask = (batch[k].to(rt.device) for k in ("ir", "vis", "mask"))
        fused = model(ir, vis).float().clamp(0, 1)
        loss, terms = criterion(fused, ir, vis, mask)
        n = ir.shape[0]
        sums += np.array([loss.item(), terms["int"].item(), terms["tex"].item()]) * n
        count += n
        for a, b, f in zip(ir.cpu().numpy()[:, 0], vis.cpu().numpy()[:, 0], fused.cpu().numpy()[:, 0]):
            a8, b8, f8 = to_uint8(a), to_uint8(b), to_uint8(f)
            gap = np.full((a8.shape[0], 2), 255, np.uint8)
            rows.append(np.hstack([a8, gap, b8, gap, f8]))
            if evaluate is not None:
                try:
                    values = evaluate(f8.astype(np.float64), a8.astype(np.float64), b8.astype(np.float64), metrics=list(cfg.val_metrics))
                except ValueError as exc:  # e.g. a metric that needs larger images than the crop
                    print(f"refinefuse: validation metrics skipped: {exc}", file=sys.stderr)
                    evaluate, per_pair = None, []
                    continue
                per_pair.append({k: float(v) for k, v in values.items()})
    model.train()
    if per_pair:
        metrics = {k: float(np.mean([p[k] for p in per_pair])) for k in per_pair[0]}
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1])), constant_values=255) for r in rows]
    return sums / max(count, 1), np.vstack(rows), metrics


# ----------------------------------------------------------------------------- training
def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _prepare_out(out: Path, cfg: TrainConfig) -> dict | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    last = out / LAST
    if cfg.resume:
        if last.is_file():
            return _read_resume_checkpoint(last)
        print(f"refinefuse: no {last} yet; starting a new run", file=sys.stderr)
        return None
    if last.exists():
        raise InputError(f"{last}: run folder already holds a checkpoint; pass --resume to continue or choose another --out")
    return None


def _checked_weights(path: Path, state: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of checkpoint ``state`` (read from ``path``), after checking that it was
    saved from the configured model (``--resume``)."""
    if state["model"] != model_spec(model):
        raise InputError(f"{path}: checkpoint model {state['model']} differs from the configured one")
    return state["state_dict"]


def train(config: TrainConfig) -> Path:
    """Train a fusion model as configured; returns the path of ``best.pt`` in ``config.out``.

    Raises :class:`InputError` for bad data/config and :class:`TrainingDiverged` when the
    loss becomes non-finite (``last.pt`` then holds the last good epoch).
    """
    cfg = config
    _check_config(cfg)
    rt = _setup_runtime(cfg)
    try:
        return _train(cfg, rt)
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, rt: _Runtime) -> Path:
    out = Path(cfg.out)
    resume_state = _prepare_out(out, cfg)  # every rank reads the same checkpoint
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    # model first: the data crop follows its stride
    try:
        model = create_model(cfg.model, **cfg.model_overrides)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model {cfg.model!r} with {cfg.model_overrides}: {exc}") from None
    if resume_state is not None:
        _checked_weights(out / LAST, resume_state, model)  # loaded below, with the optimizer state
    elif cfg.init:  # the weights only: optimizer and schedule start fresh
        init = Path(cfg.init).expanduser()
        # any checkpoint whose weights fit: the config may differ in parameter-free settings (out_margin)
        try:
            model.load_state_dict(read_checkpoint(init)["state_dict"])  # float16 weights are cast
        except RuntimeError as exc:
            raise InputError(f"{init}: weights do not fit model {cfg.model!r} ({str(exc).splitlines()[0]})") from None
    stride = int(getattr(model, "stride", 1))

    dataset = PairedFusionDataset(
        cfg.data,
        mask=cfg.mask,
        crop=cfg.crop,
        augment=cfg.augment,
        small_images=cfg.small_images,
        multiple=stride,
        salient_classes=cfg.salient_classes,
        box_classes=cfg.box_classes,
        mask_dir=cfg.mask_dir,
        auto_k=cfg.auto_mask_k,
        auto_min_area=cfg.auto_mask_min_area,
        max_pairs=cfg.max_pairs,
        rescale=cfg.rescale,
        flat_patch=cfg.flat_patch,
    )
    train_set, val_set = dataset.split(cfg.val_pairs)
    _single_threaded_opencv()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = cfg.workers if cfg.workers is not None else min(4, max(1, cpus // rt.world_size))
    sampler = EpochSampler(len(train_set), cfg.seed, shuffle=True, rank=rt.rank, world_size=rt.world_size)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_pairs,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
    val_loader = None
    if val_set is not None and rt.is_main:
        val_loader = DataLoader(val_set, batch_size=1, shuffle=False, num_workers=0, collate_fn=collate_pairs)

    channels_last = cfg.channels_last if cfg.channels_last is not None else rt.device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(rt.device, memory_format=memory_format)
    optimizer = _make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg))
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    # CPU autocast only in bfloat16 (float16 on the CPU is slow and needs a scaler)
    use_amp = cfg.amp and (rt.device.type == "cuda" or amp_dtype == torch.bfloat16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    criterion = FusionLoss(cfg.loss, cfg.lam, flat_weight=cfg.flat_weight)

    start_epoch, best = 0, math.inf
    if resume_state is not None:
        model.load_state_dict(resume_state["state_dict"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        start_epoch = int(resume_state["epoch"])
        best = float(resume_state.get("best", math.inf))
        if rt.is_main and resume_state.get("rng"):
            _set_rng_state(resume_state["rng"])
        # the schedule follows the current config (epochs or lr may have been changed on resume)
        scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"] = cfg.lr
            group["lr"] = cfg.lr * lr_factor(start_epoch, cfg)
    net = model
    if rt.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)

    run_log = None
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        run_log = _RunLog(out, cfg, start_epoch)
        print(
            f"refinefuse train: {len(train_set)} training pairs ({dataset.mask_source} masks), "
            f"{0 if val_set is None else len(val_set)} validation pairs, device {rt.device}"
            + (f" x {rt.world_size} processes" if rt.distributed else "")
            + f", epochs {start_epoch + 1}..{cfg.epochs}",
            file=sys.stderr,
        )
    if start_epoch >= cfg.epochs and rt.is_main:
        print(f"refinefuse: {out / LAST} already completed {start_epoch} epochs", file=sys.stderr)

    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            sums, seen = _train_epoch(net, loader, criterion, optimizer, scaler, rt, cfg, epoch, memory_format, use_amp, amp_dtype)
            epoch_s = time.perf_counter() - t0
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if not _all_finite(model):
                raise TrainingDiverged(
                    f"weights became non-finite in epoch {epoch + 1}; {out / LAST} keeps epoch {epoch} "
                    "(lower the learning rate or enable grad_clip)"
                )
            train_terms = sums / max(seen, 1)
            if not rt.is_main:
                if rt.distributed:
                    dist.barrier()
                continue

            val_terms, grid, metrics = None, None, {}
            if val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                val_terms, grid, metrics = validate(model, val_loader, criterion, rt, cfg)
                (out / "val").mkdir(exist_ok=True)
                write_image(out / "val" / f"epoch_{epoch + 1:04d}.png", grid)
            # best.pt follows the validation loss (the training loss when there is no validation set)
            score = float(train_terms[0]) if val_loader is None else (None if val_terms is None else float(val_terms[0]))
            improved = score is not None and math.isfinite(score) and score < best
            if improved:
                best = score
            meta = {
                "data": str(cfg.data),
                "epochs": epoch + 1,
                "train_loss": float(train_terms[0]),
                "val_loss": None if val_terms is None else float(val_terms[0]),
                "loss_setting": cfg.loss,
                "mask_source": dataset.mask_source,
                "pairs": len(train_set),
                "world_size": rt.world_size,
                "command": shlex.join(["refinefuse", *sys.argv[1:]]),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            last = save_checkpoint(
                out / LAST,
                model,
                meta=meta,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if scaler.is_enabled() else None,
                epoch=epoch + 1,
                best=best,
                rng=_rng_state(),
                train_config=cfg.to_dict(),
            )
            if improved or not (out / BEST).exists():
                _atomic_copy(last, out / BEST)
            _keep_recent(out, epoch + 1, cfg.keep_last)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": float(train_terms[0]),
                "train_int": float(train_terms[1]),
                "train_tex": float(train_terms[2]),
                "pairs_per_s": round(seen / epoch_s, 3),
                "epoch_s": round(epoch_s, 3),
                "time": meta["date"],
            }
            if val_terms is not None:
                row.update(val_loss=float(val_terms[0]), val_int=float(val_terms[1]), val_tex=float(val_terms[2]))
                row.update({f"val_{k}": v for k, v in metrics.items() if f"val_{k}" in run_log.columns})
            run_log.log(row, grid)
            summary = f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} (int {row['train_int']:.4f}, tex {row['train_tex']:.4f})"
            if val_terms is not None:
                summary += f", val {row['val_loss']:.4f}" + "".join(f", {k} {v:.3f}" for k, v in metrics.items())
            print(summary + f", {row['pairs_per_s']:.2f} pairs/s, lr {lr:.2e}" + (" *" if improved else ""), file=sys.stderr)
            if rt.distributed:
                dist.barrier()
    finally:
        if run_log is not None:
            run_log.close()
    return out / BEST


def _train_epoch(net, loader, criterion, optimizer, scaler, rt, cfg, epoch, memory_format, use_amp, amp_dtype):
    """One pass over the loader; returns (sum of [loss, int, tex] * batch, samples seen)."""
    from tqdm.auto import tqdm

    net.train()
    sums, seen = torch.zeros(3, dtype=torch.float64), 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not (cfg.progress and rt.is_main), leave=False, dynamic_ncols=True)
    try:
        for step, batch in enumerate(bar):
            ir, vis, mask = (
                batch[k].to(rt.device, non_blocking=True).contiguous(memory_format=memory_format) for k in ("ir", "vis", "mask")
            )
            with torch.autocast(rt.device.type, dtype=amp_dtype, enabled=use_amp):
                fused = net(ir, vis)
            loss, terms = criterion(fused, ir, vis, mask)
            values = torch.stack([loss.detach(), terms["int"].detach(), terms["tex"].detach()]).double().cpu()
            bad = torch.tensor([0.0 if bool(torch.isfinite(values).all()) else 1.0], device=rt.device)
            if rt.distributed:
                dist.all_reduce(bad)  # all processes stop together
            if bad.item():
                raise TrainingDiverged(
                    f"non-finite loss at epoch {epoch + 1}, step {step + 1}; "
                    f"{Path(cfg.out) / LAST} keeps the last good epoch ({epoch}). "
                    "Lower the learning rate or check the data, then --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            n = ir.shape[0]
            sums += values * n
            seen += n
            bar.set_postfix(loss=f"{values[0]:.4f}", int=f"{values[1]:.4f}", tex=f"{values[2]:.4f}", refresh=False)
    except InputError as exc:  # raised in a loader worker: keep the one-line message
        raise InputError(_one_line(exc)) from None
    finally:
        bar.close()
    if rt.distributed:
        totals = torch.cat([sums, torch.tensor([float(seen)], dtype=torch.float64)]).to(rt.device)
        dist.all_reduce(totals)
        totals = totals.cpu()
        return totals[:3].numpy(), int(totals[3])  # sums and samples over all processes
    return sums.numpy(), seen


def _keep_recent(out: Path, epoch: int, keep: int) -> None:
    """Copy ``last.pt`` to ``epoch_XXXX.pt`` and delete all but the newest ``keep``."""
    if keep <= 0:
        return
    _atomic_copy(out / LAST, out / f"epoch_{epoch:04d}.pt")
    for old in sorted(out.glob("epoch_*.pt"), key=_epoch_number)[:-keep]:
        old.unlink(missing_ok=True)
