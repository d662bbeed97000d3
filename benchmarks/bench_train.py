"""Training throughput (pairs per second) of the real trainer on CPU.

Runs :func:`refinefuse.training.train` for ``--epochs`` short epochs of ``--pairs`` MSRS
train128 pairs at each crop size and reports the ``pairs_per_s`` column of ``log.csv``
(time of the training loop only: loading in workers, forward, loss, backward, optimiser
step; no validation or checkpoint time) of the last epoch, so worker start-up is excluded.
128x128 train128 images are reflect-padded for crops larger than 128.

Usage::

    PYTHONPATH=src python benchmarks/bench_train.py [--crops 128 256] [--pairs 8] [--batch-size 8]
        [--epochs 2] [--threads 2] [--width paper|small] [--channels-last] [--bf16]

``--width small`` uses ``channels=(8, 8, 16, 16)`` (the test size) instead of the paper's widths.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--pairs", type=int, default=8, help="training pairs per epoch (default 8)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is reported (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--width", choices=("paper", "small"), default="paper")
    parser.add_argument("--channels-last", action="store_true", help="NHWC tensors (the trainer's CPU default is NCHW)")
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast (CPU: AVX-512 BF16 where the CPU has it)"
    )
    parser.add_argument("--data", default=None, help="dataset (default <shared>/data/msrs/train128)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from refinefuse.config import TrainConfig
    from refinefuse.paths import dataset_dir
    from refinefuse.training import train

    data = args.data or str(dataset_dir("msrs/train128"))
    overrides = {} if args.width == "paper" else {"channels": [8, 8, 16, 16]}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"threads {args.threads}, load average {load:.2f}, width {args.width}, "
        f"channels_last {args.channels_last}, bf16 {args.bf16}, batch {args.batch_size}"
    )
    for crop in args.crops:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(
                data=data,
                out=str(Path(tmp) / "run"),
                crop=crop,
                small_images="pad",
                max_pairs=args.pairs,
                val_pairs=0,
                epochs=args.epochs,
                batch_size=args.batch_size,
                model_overrides=overrides,
                workers=args.workers,
                threads=args.threads,
                channels_last=args.channels_last,
                amp=args.bf16,
                amp_dtype="bfloat16",
                tensorboard=False,
                progress=False,
                keep_last=0,
                warmup_epochs=0,
            )
            train(cfg)
            with (Path(tmp) / "run" / "log.csv").open() as fh:
                rows = list(csv.DictReader(fh))
        rate = float(rows[-1]["pairs_per_s"])
        print(f"crop {crop}x{crop}: {rate:.3f} pairs/s ({float(rows[-1]['epoch_s']):.1f} s for {args.pairs} pairs)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
