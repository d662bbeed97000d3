"""The training loop: ``train(TrainConfig) -> Path`` of the best checkpoint.

- Data: :class:`~refinefuse.data.PairedFusionDataset`; ``val_pairs`` evenly spaced pairs are
  held out; loading and augmentation run in DataLoader workers. Each item's augmentation is
  seeded by (seed, epoch, index), so a resumed run repeats an uninterrupted one.
- Loss: :class:`~refinefuse.losses.FusionLoss` (paper Eq. 6-9, an ablation setting, or with
  the flat-region penalty).
- Optimiser: SGD (paper; momentum 0.9, our choice) or Adam; per-epoch schedule: linear
  warm-up from lr/10, then cosine decay to ``min_lr`` (or step decay).
- Weight averaging (``ema_decay > 0``, not in the paper): an exponential moving average of the
  weights after every step (:class:`torch.optim.swa_utils.AveragedModel`). Validation scores the
  average and checkpoints hold it as their weights (what ``init``, fusion and releases use);
  the raw weights travel along as ``train_state_dict`` so that ``--resume`` continues both.
- Devices (:mod:`.runtime`): the CPU (NCHW, optional bfloat16 autocast); CUDA with mixed
  precision and channels_last; several processes with DistributedDataParallel under
  ``torchrun`` (``batch_size`` is per process).
- Run folder (:mod:`.run_folder`): ``last.pt`` every epoch, ``best.pt`` (lowest validation
  loss, or training loss without a validation set), ``epoch_XXXX.pt`` (last ``keep_last``),
  ``log.csv``, ``config.yaml``, ``tb/``, ``val/epoch_XXXX.png`` (rows ir | vis | fused).
  Killing the process loses at most the current epoch.
- The header of every training pair is read before the run folder is created.
- A non-finite loss or weight stops the run with :class:`TrainingDiverged`; ``last.pt`` keeps
  the last good epoch.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Sampler

from ..checkpoint import save_checkpoint
from ..colour import to_uint8
from ..config import TrainConfig, apply_overrides, load_config, save_config
from ..data import PairedFusionDataset, collate_pairs
from ..errors import InputError, RefineFuseError
from ..io import available_cpus, write_image
from ..losses import EXTRA_TERMS, SETTINGS, VIF_MIN_SIZE, FusionLoss
from ..models import create_model
from .run_folder import (
    BEST,
    LAST,
    LOSS_TERMS,
    RunLog,
    checked_weights,
    keep_recent,
    load_init,
    logged_loss_terms,
    prepare_out,
    read_resume_checkpoint,
)
from .runtime import Runtime, rng_state, set_rng_state, training_runtime

__all__ = ["train", "build_config", "TrainingDiverged", "EpochSampler", "lr_factor", "validate"]


class TrainingDiverged(RefineFuseError):
    """The loss or the weights became NaN/inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- configuration
def build_config(
    config_file: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None, *, resume: bool = False
) -> TrainConfig:
    """Merge defaults (or, with ``resume``, the config stored in ``OUT/last.pt``) < file < overrides."""
    overrides = dict(overrides or {})
    cfg = load_config(config_file) if config_file else TrainConfig()
    apply_overrides(cfg, overrides, source="command line")
    cfg.resume = resume
    last = Path(cfg.out) / LAST
    if resume and last.is_file():
        stored = read_resume_checkpoint(last).get("train_config") or {}
        cfg = TrainConfig.from_dict(stored, source=str(last))
        if config_file:
            cfg = load_config(config_file, cfg)
        apply_overrides(cfg, overrides, source="command line")
        cfg.resume = True
    return cfg


def check_config(cfg: TrainConfig) -> None:
    """One-line :class:`InputError` for settings no run can use."""
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
        (0 <= cfg.ema_decay < 1, f"ema_decay must be in [0, 1), got {cfg.ema_decay}"),
        (
            not cfg.vif_weight or cfg.crop >= VIF_MIN_SIZE,
            f"vif_weight needs crops of {VIF_MIN_SIZE} px or more, got {cfg.crop}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` during 0-based ``epoch``: warm-up, then cosine/step/constant."""
    if epoch < cfg.warmup_epochs:
        return 0.1 + 0.9 * epoch / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return float(cfg.gamma ** ((epoch - cfg.warmup_epochs) // max(1, cfg.step_size)))
    if cfg.scheduler == "cosine":
        floor = (cfg.min_lr if cfg.min_lr is not None else cfg.lr / 100) / cfg.lr
        progress = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


# ----------------------------------------------------------------------------- data
class EpochSampler(Sampler[tuple[int, tuple[int, int, int]]]):
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
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            ).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.n))[:total]
        for index in order[self.rank :: self.world_size]:
            yield index, (self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.per_rank


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one torch thread per loader worker: the main process owns the cores


def _one_line(exc: BaseException) -> str:
    """Last line of a (possibly worker-wrapped, multi-line) error message, without the type prefix."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = lines[-1] if lines else type(exc).__name__
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return line[len(prefix) :] if line.startswith(prefix) else line


def _dataset(cfg: TrainConfig, stride: int) -> PairedFusionDataset:
    return PairedFusionDataset(
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
        ir_dir=cfg.ir_dir,
        vis_dir=cfg.vis_dir,
        flat_patch=cfg.flat_patch,
    )


def _loaders(cfg: TrainConfig, rt: Runtime, train_set: PairedFusionDataset, val_set: PairedFusionDataset | None):
    workers = cfg.workers if cfg.workers is not None else min(4, max(1, available_cpus() // rt.world_size))
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
    return sampler, loader, val_loader


# ----------------------------------------------------------------------------- set-up
@dataclass
class _Run:
    """Everything the epochs of one run share."""

    cfg: TrainConfig
    rt: Runtime
    out: Path
    model: nn.Module
    net: nn.Module
    dataset: PairedFusionDataset
    n_train: int
    n_val: int
    sampler: EpochSampler
    loader: DataLoader[dict[str, Any]]
    val_loader: DataLoader[dict[str, Any]] | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    criterion: FusionLoss
    memory_format: torch.memory_format
    amp_dtype: torch.dtype
    use_amp: bool
    ema: AveragedModel | None = None
    start_epoch: int = 0
    best: float = math.inf
    log: RunLog | None = field(default=None, repr=False)

    @property
    def weights(self) -> nn.Module:
        """The model that validation scores and checkpoints hold: the weight average when on."""
        return self.model if self.ema is None else self.ema.module


def _model(cfg: TrainConfig, resume_state: dict[str, Any] | None, out: Path) -> nn.Module:
    try:
        model = create_model(cfg.model, **cfg.model_overrides)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model {cfg.model!r} with {cfg.model_overrides}: {exc}") from None
    if resume_state is not None:
        checked_weights(out / LAST, resume_state, model)  # loaded later, with the optimizer state
    elif cfg.init:
        load_init(model, cfg.init, cfg.model)
    return model


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _setup(cfg: TrainConfig, rt: Runtime) -> tuple[_Run, dict[str, Any] | None]:
    out = Path(cfg.out)
    resume_state = prepare_out(out, cfg)  # every rank reads the same checkpoint
    model = _model(cfg, resume_state, out)  # model first: the data crop follows its stride
    dataset = _dataset(cfg, int(getattr(model, "stride", 1)))
    train_set, val_set = dataset.split(cfg.val_pairs)
    sampler, loader, val_loader = _loaders(cfg, rt, train_set, val_set)
    channels_last = cfg.channels_last if cfg.channels_last is not None else rt.device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(rt.device, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stub lacks it
    optimizer = _make_optimizer(model, cfg)
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    use_amp = cfg.amp and (rt.device.type == "cuda" or amp_dtype == torch.bfloat16)  # CPU: bfloat16 only
    net = model
    if rt.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    run = _Run(
        cfg=cfg,
        rt=rt,
        out=out,
        model=model,
        net=net,
        dataset=dataset,
        n_train=len(train_set),
        n_val=0 if val_set is None else len(val_set),
        sampler=sampler,
        loader=loader,
        val_loader=val_loader,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg)),
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16),
        criterion=FusionLoss(
            cfg.loss,
            cfg.lam,
            **{f"{name}_weight": getattr(cfg, f"{name}_weight") for name in EXTRA_TERMS},
        ),
        memory_format=memory_format,
        amp_dtype=amp_dtype,
        use_amp=use_amp,
        ema=(
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
            if cfg.ema_decay > 0
            else None
        ),
    )
    return run, resume_state


def _resume(run: _Run, state: dict[str, Any]) -> None:
    """Load weights, optimizer, schedule, scaler, best score and RNG from a ``--resume`` checkpoint."""
    # with weight averaging the checkpoint's weights are the average and the raw ones are beside them
    run.model.load_state_dict(state.get("train_state_dict") or state["state_dict"])
    if run.ema is not None:  # a run that had no average starts one from its weights
        run.ema.module.load_state_dict(state["state_dict"])
        run.ema.n_averaged.fill_(int(state.get("ema_n_averaged", 1)))
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch = int(state["epoch"])
    run.best = float(state.get("best", math.inf))
    if run.rt.is_main and state.get("rng"):
        set_rng_state(state["rng"])
    # the schedule follows the current config (epochs or lr may have been changed on resume)
    run.scheduler.base_lrs = [run.cfg.lr] * len(run.optimizer.param_groups)
    for group in run.optimizer.param_groups:
        group["initial_lr"] = run.cfg.lr
        group["lr"] = run.cfg.lr * lr_factor(run.start_epoch, run.cfg)


def _open_log(run: _Run) -> None:
    cfg, rt = run.cfg, run.rt
    run.out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.out / "config.yaml")
    run.log = RunLog(run.out, cfg, run.start_epoch)
    print(
        f"refinefuse train: {run.n_train} training pairs ({run.dataset.mask_source} masks), "
        f"{run.n_val} validation pairs, device {rt.device}"
        + (f" x {rt.world_size} processes" if rt.distributed else "")
        + f", epochs {run.start_epoch + 1}..{cfg.epochs}",
        file=sys.stderr,
    )
    if run.start_epoch >= cfg.epochs:
        print(f"refinefuse: {run.out / LAST} already completed {run.start_epoch} epochs", file=sys.stderr)


# ----------------------------------------------------------------------------- epochs
def train(config: TrainConfig) -> Path:
    """Train a fusion model as configured; returns the path of ``best.pt`` in ``config.out``.

    Raises :class:`InputError` for bad data/config and :class:`TrainingDiverged` when the
    loss becomes non-finite (``last.pt`` then holds the last good epoch). Threads, OpenCV
    settings and random states of the calling process are restored afterwards.
    """
    check_config(config)
    with training_runtime(config) as rt:
        run, resume_state = _setup(config, rt)
        if resume_state is not None:
            _resume(run, resume_state)
        if rt.is_main:
            _open_log(run)
            if resume_state is not None:  # the epoch_XXXX.pt copy a kill right after last.pt skipped
                keep_recent(run.out, run.start_epoch, config.keep_last)
        try:
            for epoch in range(run.start_epoch, config.epochs):
                _epoch(run, epoch)
        finally:
            if run.log is not None:
                run.log.close()
    return Path(config.out) / BEST


def _epoch(run: _Run, epoch: int) -> None:
    run.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    sums, seen = _train_epoch(run, epoch)
    epoch_s = time.perf_counter() - t0
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise TrainingDiverged(
            f"weights became non-finite in epoch {epoch + 1}; {run.out / LAST} keeps epoch {epoch} "
            "(lower the learning rate or enable grad_clip)"
        )
    if run.rt.is_main:
        _finish_epoch(
            run,
            epoch,
            sums / max(seen, 1),
            {"lr": lr, "pairs_per_s": round(seen / epoch_s, 3), "epoch_s": round(epoch_s, 3)},
        )
    if run.rt.distributed:
        dist.barrier()


def _train_epoch(run: _Run, epoch: int) -> tuple[np.ndarray, int]:
    """One pass over the loader; returns (sum of [loss, int, tex] * batch, samples seen)."""
    from tqdm.auto import tqdm

    cfg, rt = run.cfg, run.rt
    run.net.train()
    sums, seen = torch.zeros(len(LOSS_TERMS), dtype=torch.float64), 0
    bar = tqdm(
        run.loader,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=not (cfg.progress and rt.is_main),
    )
    try:
        for step, batch in enumerate(bar):
            values, n = _step(run, batch, epoch, step)
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
        return totals[:-1].numpy(), int(totals[-1])  # sums and samples over all processes
    return sums.numpy(), seen


def _term_values(loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(len(LOSS_TERMS),)`` float64: the total loss and each term of ``terms``, 0 where absent."""
    zero = loss.new_zeros(())
    return torch.stack([loss.detach()] + [terms.get(k, zero).detach() for k in LOSS_TERMS[1:]]).double()


def _step(run: _Run, batch: dict[str, Any], epoch: int, step: int) -> tuple[torch.Tensor, int]:
    """One optimiser step; returns the :data:`LOSS_TERMS` values and the batch size."""
    rt = run.rt
    ir, vis, mask = (
        batch[k].to(rt.device, non_blocking=True).contiguous(memory_format=run.memory_format)
        for k in ("ir", "vis", "mask")
    )
    with torch.autocast(rt.device.type, dtype=run.amp_dtype, enabled=run.use_amp):
        fused = run.net(ir, vis)
    loss, terms = run.criterion(fused, ir, vis, mask)
    values = _term_values(loss, terms).cpu()
    bad = torch.tensor([0.0 if bool(torch.isfinite(values).all()) else 1.0], device=rt.device)
    if rt.distributed:
        dist.all_reduce(bad)  # all processes stop together
    if bad.item():
        raise TrainingDiverged(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1}; {run.out / LAST} keeps the last good epoch "
            f"({epoch}). Lower the learning rate or check the data, then --resume"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.grad_clip:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.net.parameters(), run.cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return values, ir.shape[0]


def _finish_epoch(run: _Run, epoch: int, train_terms: np.ndarray, timing: dict[str, float]) -> None:
    """Main process: validate when due, save checkpoints, log the row, print the summary."""
    cfg, out = run.cfg, run.out
    val_terms: np.ndarray | None = None
    grid: np.ndarray | None = None
    metrics: dict[str, float] = {}
    if run.val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
        val_terms, grid, metrics = validate(run.weights, run.val_loader, run.criterion, run.rt, cfg)
        (out / "val").mkdir(exist_ok=True)
        write_image(out / "val" / f"epoch_{epoch + 1:04d}.png", grid)
    # best.pt follows the validation loss (the training loss when there is no validation set)
    score = float(train_terms[0]) if run.val_loader is None else (None if val_terms is None else float(val_terms[0]))
    improved = score is not None and math.isfinite(score) and score < run.best
    if improved:
        run.best = float(score)  # type: ignore[arg-type]
    date = datetime.now(UTC).isoformat(timespec="seconds")
    logged = logged_loss_terms(cfg)
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": timing["lr"],
        **{f"train_{k}": float(v) for k, v in zip(LOSS_TERMS, train_terms) if k in logged},
        "pairs_per_s": timing["pairs_per_s"],
        "epoch_s": timing["epoch_s"],
        "time": date,
    }
    if val_terms is not None:
        row.update({f"val_{k}": float(v) for k, v in zip(LOSS_TERMS, val_terms) if k in logged})
        row.update({f"val_{k}": v for k, v in metrics.items()})
    assert run.log is not None
    # the row goes to log.csv before last.pt moves on: a run killed in between resumes from the
    # previous checkpoint, and RunLog drops the rows past it, so log.csv never lacks an epoch
    run.log.log(row, grid)
    if improved or not (out / BEST).exists():  # best.pt before last.pt, for the same reason
        _save(run, epoch, train_terms, val_terms, date, out / BEST)
    _save(run, epoch, train_terms, val_terms, date, out / LAST)
    keep_recent(out, epoch + 1, cfg.keep_last)
    summary = (
        f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
        f"(int {row['train_int']:.4f}, tex {row['train_tex']:.4f})"
    )
    if val_terms is not None:
        summary += f", val {row['val_loss']:.4f}" + "".join(f", {k} {v:.3f}" for k, v in metrics.items())
    print(
        summary + f", {row['pairs_per_s']:.2f} pairs/s, lr {row['lr']:.2e}" + (" *" if improved else ""),
        file=sys.stderr,
    )


def _save(run: _Run, epoch: int, train_terms: np.ndarray, val_terms: np.ndarray | None, date: str, path: Path) -> None:
    """Write the training checkpoint ``path`` (weights, optimizer, schedule, RNG, config), stamped ``date``."""
    cfg = run.cfg
    meta = {
        "data": str(cfg.data),
        "epochs": epoch + 1,
        "train_loss": float(train_terms[0]),
        "val_loss": None if val_terms is None else float(val_terms[0]),
        "loss_setting": cfg.loss,
        "mask_source": run.dataset.mask_source,
        "pairs": run.n_train,
        "world_size": run.rt.world_size,
        "command": shlex.join(["refinefuse", *sys.argv[1:]]),
        "date": date,
    }
    averaged: dict[str, Any] = {}
    if run.ema is not None:
        averaged = {
            "train_state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "ema_n_averaged": int(run.ema.n_averaged),
        }
    save_checkpoint(
        path,
        run.weights,
        meta=meta,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict() if run.scaler.is_enabled() else None,
        epoch=epoch + 1,
        best=run.best,
        rng=rng_state(),
        train_config=cfg.to_dict(),
        **averaged,
    )


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader[dict[str, Any]],
    criterion: FusionLoss,
    rt: Runtime,
    cfg: TrainConfig,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Mean :data:`LOSS_TERMS` over the validation pairs, an ``ir | vis | fused`` uint8 grid,
    and the mean of ``cfg.val_metrics``."""
    from ..metrics import evaluate

    model.eval()
    sums, count, rows = np.zeros(len(LOSS_TERMS)), 0, []
    per_pair: list[dict[str, float]] = []
    score = bool(cfg.val_metrics)
    for batch in loader:
        ir, vis, mask = (batch[k].to(rt.device) for k in ("ir", "vis", "mask"))
        fused = model(ir, vis).float().clamp(0, 1)
        loss, terms = criterion(fused, ir, vis, mask)
        sums += _term_values(loss, terms).cpu().numpy() * ir.shape[0]
        count += ir.shape[0]
        for a, b, f in zip(ir.cpu().numpy()[:, 0], vis.cpu().numpy()[:, 0], fused.cpu().numpy()[:, 0]):
            a8, b8, f8 = to_uint8(a), to_uint8(b), to_uint8(f)
            gap = np.full((a8.shape[0], 2), 255, np.uint8)
            rows.append(np.hstack([a8, gap, b8, gap, f8]))
            if score:
                try:
                    values = evaluate(
                        f8.astype(np.float64),
                        a8.astype(np.float64),
                        b8.astype(np.float64),
                        metrics=list(cfg.val_metrics),
                    )
                except ValueError as exc:  # e.g. a metric that needs larger images than the crop
                    print(f"refinefuse: validation metrics skipped: {exc}", file=sys.stderr)
                    score, per_pair = False, []
                    continue
                per_pair.append({k: float(v) for k, v in values.items()})
    model.train()
    metrics = {k: float(np.mean([p[k] for p in per_pair])) for k in per_pair[0]} if per_pair else {}
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1])), constant_values=255) for r in rows]
    return sums / max(count, 1), np.vstack(rows), metrics
