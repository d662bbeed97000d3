"""Make the shipped weights and their model card from a training run.

    python scripts/release_weights.py --run ~/runs/msrs-adam [--checkpoint best.pt] \
        [--table results/msrs/table.md] [--out src/refinefuse/weights]

Writes ``refinefuse_msrs.pt`` (float16 weights + metadata, see
``refinefuse.checkpoint.release_checkpoint``) and ``MODEL_CARD.md``. Every figure in the
card is read from the run (its ``log.csv`` and checkpoint) or from a table written by
``refinefuse reproduce``; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from pathlib import Path

import torch

from refinefuse.checkpoint import read_checkpoint, release_checkpoint
from refinefuse.paths import data_root


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def portable_command(command: str) -> str:
    """The recorded command as a reader can rerun it: ``refinefuse`` instead of the
    interpreter's path, ``../shared`` for the data root and ``~`` for the home folder."""
    words = command.split(" ")
    if words and (words[0].endswith("__main__.py") or words[0].endswith("/refinefuse")):
        words[0] = "refinefuse"
    command = " ".join(words)
    command = command.replace(str(data_root().resolve()), "../shared")
    return command.replace(str(Path.home()), "~")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="training run folder (log.csv, best.pt, last.pt)")
    parser.add_argument("--checkpoint", default="best.pt", help="checkpoint in the run folder to ship")
    parser.add_argument("--table", type=Path, help="results/msrs/table.md from refinefuse reproduce")
    parser.add_argument("--out", type=Path, default=Path("src/refinefuse/weights"))
    parser.add_argument("--device", default=f"CPU ({_cpu_name()}), {os.cpu_count()} cores, no GPU")
    args = parser.parse_args()

    src = args.run.expanduser() / args.checkpoint
    state = read_checkpoint(src)
    meta, cfg = state.get("meta", {}), state.get("train_config", {})
    with open(args.run.expanduser() / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= int(state["epoch"])]
    wall_h = sum(float(r["epoch_s"]) for r in rows) / 3600
    epoch_min = wall_h * 60 / len(rows)
    last = rows[-1]
    data = "msrs/train128 (" + str(meta.get("pairs")) + " training pairs, YOLO boxes_ir -> salient masks)"
    release = {
        "data": data,
        "command": portable_command(meta.get("command", "")),
        "epochs": int(state["epoch"]),
        "planned_epochs": cfg.get("epochs"),
        "wall_time_h": round(wall_h, 2),
        "device": args.device,
        "torch": torch.__version__,
        "train_loss": float(last["train_loss"]),
        "val_loss": float(last["val_loss"]) if last.get("val_loss") else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    dst = release_checkpoint(src, args.out / "refinefuse_msrs.pt", meta=release)
    size_mb = dst.stat().st_size / 1e6

    lines = [
        "# RefineFuse, trained on MSRS (the package's default weights)",
        "",
        f"`refinefuse_msrs.pt` ({size_mb:.1f} MB, float16 weights; loaded as float32): the paper's",
        "configuration (`RefineFuse()`, 2.20 M parameters) trained by this project's own trainer.",
        "`refinefuse fuse` and `refinefuse demo` use it when no `--weights` is given.",
        "",
        "| | |",
        "|---|---|",
        f"| data | `../shared/data/{data.split(' ')[0]}` {data.split(' ', 1)[1]}; 4 of them held out for validation. Never msrs/test, tno or medical. |",
        f"| command | `{release['command']}` (the same command continues the run after an interruption) |",
        f"| schedule | Adam, lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, {cfg.get('warmup_epochs')} warm-up epoch(s), cosine to {cfg.get('min_lr')} over {cfg.get('epochs')} epochs; whole 128x128 images (crop {cfg.get('crop')} > image), 90-degree rotations and flips; loss `{cfg.get('loss')}` (L_int + {cfg.get('lam')} L_tex) |",
        f"| epochs | {release['epochs']} (checkpoint `{args.checkpoint}`) |",
        f"| wall time | {wall_h:.2f} h of training (sum of the epochs in `log.csv`) |",
        f"| device | {release['device']}; torch {torch.__version__} |",
        f"| final loss | train {release['train_loss']:.4f}, validation {release['val_loss']:.4f} (epoch {last['epoch']}) |",
        "",
        "Why not the paper's schedule (SGD, 300 epochs, 256x256 crops): this project had only a",
        f"2-core CPU (about {epoch_min:.1f} minutes per epoch over the {meta.get('pairs')} pairs at 128x128). Adam converges in",
        "far fewer epochs than SGD. The paper's schedule is `train_msrs.yaml` as it stands (no",
        "`--optimizer`/`--lr`/`--epochs` overrides), meant for a GPU.",
        "",
        "## Training log",
        "",
        "| epoch | lr | train loss | val loss | val VIF | val Qabf | val SCD | pairs/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["epoch"], f"{float(r['lr']):.2e}", f"{float(r['train_loss']):.4f}"]
        cells += [f"{float(r[k]):.4f}" if r.get(k) else "" for k in ("val_loss", "val_VIF", "val_Qabf", "val_SCD")]
        cells.append(r["pairs_per_s"])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "(Validation metrics on the 4 held-out 128x128 training pairs, so only a trend.)", ""]
    if args.table:
        lines += [
            "## Evaluation: MSRS test, all 361 pairs, profile `paper`",
            "",
            "Output of `refinefuse reproduce --dataset msrs --out results` (see `docs/RESULTS.md`):",
            "",
            args.table.read_text().strip(),
            "",
        ]
    (args.out / "MODEL_CARD.md").write_text("\n".join(lines))
    print(f"wrote {dst} ({size_mb:.1f} MB) and {args.out / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
