"""Make the shipped weights and their model card from a training run.

    python scripts/release_weights.py --run ~/runs/cur-s2 [--checkpoint best.pt] \
        [--table results/msrs/table.md] [--notes NOTES.md] [--out src/refinefuse/weights]

A run started from another run's checkpoint (``--set init=...``) is a later stage of one
schedule: the card follows the ``init`` chain back and lists every stage. A chain may start
from an earlier *release* (weights without a run folder, e.g. the previously shipped file):
its recorded stages (commands, epochs, wall time in its metadata) are counted, and
``--previous-card`` quotes that release's per-stage tables.

Writes ``refinefuse_msrs.safetensors`` (float16 weights + metadata in its header, see
``refinefuse.checkpoint.release_checkpoint``) and ``MODEL_CARD.md``. Every figure in the
card is read from the run (its ``log.csv`` and checkpoint) or from a table written by
``refinefuse reproduce``; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
from pathlib import Path

import torch

from refinefuse.checkpoint import read_checkpoint, release_checkpoint
from refinefuse.losses import EXTRA_TERMS
from refinefuse.paths import data_root

#: How the card's schedule names each loss term beyond the paper's (one per ``losses.EXTRA_TERMS`` entry).
TERM_DESCRIPTIONS = {
    "flat": "flat-region texture penalty",
    "scd": "2 - SCD term",
    "halo": "out-of-range (halo) term",
    "max_int": "max(I, V) intensity term (Table 8's loss B)",
    "vif": "2 - VIF term",
    "qabf": "1 - Qabf term",
}


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
    # a packaged config read from another checkout (e.g. a code copy a long run used) -> the repo path
    words = [re.sub(r"^\S*/(src/refinefuse/configs/[\w.-]+\.yaml)$", r"\1", w) for w in words]
    command = " ".join(words)
    command = command.replace(str(data_root().resolve()), "../shared")
    return command.replace(str(Path.home()), "~")


def lineage(checkpoint: Path) -> list[dict]:
    """The training stages behind ``checkpoint``, oldest first: each stage is a run whose
    ``init`` names the checkpoint of the stage before it. A chain that starts from a release
    (no training state) begins with ``{"release": path, "state": state}``."""
    stages, path = [], checkpoint
    while path is not None:
        state = read_checkpoint(path)
        if "epoch" not in state or "train_config" not in state:  # a released file: its stages are in its meta
            stages.insert(0, {"release": path, "state": state})
            break
        run = path.parent
        with open(run / "log.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= int(state["epoch"])]
        cfg = state.get("train_config", {})
        stages.insert(0, {"run": run, "checkpoint": path.name, "state": state, "cfg": cfg, "rows": rows})
        path = Path(cfg["init"]).expanduser() if cfg.get("init") else None
    return stages


def _data(cfg: dict, pairs: object, note: str | None = None) -> str:
    """A stage's training data: its folder as a reader can find it, the number of pairs and the masks."""
    folder = portable_command(str(Path(str(cfg.get("data", "?"))).expanduser()))
    inferred = (
        "MSRS boxes_ir -> salient masks" if "msrs" in folder else "`mask: infer` (labels or boxes, else automatic)"
    )
    masks = {"masks": "masks from the folder's `masks/`", "infer": inferred}.get(
        str(cfg.get("mask", "infer")), f"masks: {cfg.get('mask')}"
    )
    return f"`{folder}` ({pairs} training pairs, {masks})" + (f"; {note}" if note else "")


def _schedule(cfg: dict) -> str:
    crop = cfg.get("crop")
    sized = " of the 128x128 images" if str(cfg.get("data", "")).rstrip("/").endswith("train128") else ""
    # a crop of 128 or more is a whole train128 image only when the images are not resized first
    whole = crop is None or (bool(sized) and crop >= 128 and not cfg.get("rescale"))
    crops = f"whole{sized or ' images'}" if whole else f"random {crop}x{crop} crops{sized}"
    loss = {"full": "paper loss `full`", "A": "loss `A`", "B": "loss `B` (max-intensity, Table 8)", "C": "loss `C`"}[
        cfg.get("loss", "full")
    ]
    optimizer = {"sgd": f"SGD (momentum {cfg.get('momentum')})", "adam": "Adam"}[cfg.get("optimizer", "sgd")]
    decay = {
        "cosine": f"cosine to {cfg.get('min_lr')}",
        "step": f"x{cfg.get('gamma')} every {cfg.get('step_size')} epochs",
        "none": "constant",
    }[cfg.get("scheduler", "cosine")]
    extras = []
    if cfg.get("rescale"):
        extras.append(f"each pair resized by a random factor in {cfg['rescale']} before cropping")
    if cfg.get("flat_patch"):
        extras.append(f"flat black/white patches in {cfg['flat_patch']:.0%} of the crops")
    for name in EXTRA_TERMS:
        if cfg.get(f"{name}_weight"):
            extras.append(f"{TERM_DESCRIPTIONS[name]}, weight {cfg[f'{name}_weight']}")
    if (cfg.get("model_overrides") or {}).get("out_margin"):
        extras.append(f"output margin {cfg['model_overrides']['out_margin']}")
    if cfg.get("ema_decay"):
        extras.append(f"moving average of the weights (EMA, decay {cfg['ema_decay']}), which the checkpoint holds")
    if cfg.get("amp") and cfg.get("amp_dtype") == "bfloat16":
        extras.append("bfloat16 autocast")
    return (
        f"{optimizer}, lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, {cfg.get('warmup_epochs')} warm-up epoch(s), "
        f"{decay} over {cfg.get('epochs')} epochs; {crops}, 90-degree rotations and flips; {loss}, lambda {cfg.get('lam')}"
        + "".join(f"; {e}" for e in extras)
    )


def _previous_stages(previous: dict, card: Path | None) -> list[str]:
    """Stages 1..k of the release the chain starts from: that card's stage sections when
    ``card`` is given, else the commands and epochs recorded in the release's metadata."""
    if card is not None:
        text = card.read_text()
        start = text.index("### Stage 1")
        end = min(i for i in (text.find("(Validation metrics", start), text.find("## Why", start), len(text)) if i >= 0)
        return [text[start:end].rstrip(), ""]
    lines = []
    for i, (command, epochs) in enumerate(zip(previous.get("commands", []), previous.get("stage_epochs", [])), 1):
        lines += [f"### Stage {i}: {epochs} epochs", "", f"- command: `{command}`", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="training run folder (log.csv, best.pt, last.pt)")
    parser.add_argument("--checkpoint", default="best.pt", help="checkpoint in the run folder to ship")
    parser.add_argument("--table", type=Path, help="results/msrs/table.md from refinefuse reproduce")
    parser.add_argument(
        "--notes", type=Path, help="Markdown file with the reasons for the schedule, quoted in the card"
    )
    parser.add_argument(
        "--previous-card", type=Path, help="MODEL_CARD.md of the release the chain starts from (its stage tables)"
    )
    parser.add_argument(
        "--data-note", help="how the last stage's data folder was made, when it is not a folder of the data root"
    )
    parser.add_argument("--out", type=Path, default=Path("src/refinefuse/weights"))
    parser.add_argument("--device", default=f"CPU ({_cpu_name()}), {os.cpu_count()} cores, no GPU")
    args = parser.parse_args()

    src = args.run.expanduser() / args.checkpoint
    stages = lineage(src)
    previous = stages.pop(0)["state"].get("meta", {}) if "release" in stages[0] else {}
    final = stages[-1]
    meta = final["state"].get("meta", {})
    last = final["rows"][-1]
    wall_h = sum(float(r["epoch_s"]) for stage in stages for r in stage["rows"]) / 3600
    wall_h += float(previous.get("wall_time_h", 0.0))
    data = _data(final["cfg"], meta.get("pairs"), args.data_note)
    commands = list(previous.get("commands", []))
    commands += [portable_command(stage["state"].get("meta", {}).get("command", "")) for stage in stages]
    stage_epochs = list(previous.get("stage_epochs", [])) + [int(stage["state"]["epoch"]) for stage in stages]
    n_previous = len(previous.get("stage_epochs", []))
    release = {
        "data": data,
        "command": commands[-1],
        "commands": commands,
        "epochs": sum(stage_epochs),
        "stage_epochs": stage_epochs,
        "planned_epochs": final["cfg"].get("epochs"),
        "wall_time_h": round(wall_h, 2),
        "device": args.device,
        "torch": torch.__version__,
        "train_loss": float(last["train_loss"]),
        "val_loss": float(last["val_loss"]) if last.get("val_loss") else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    dst = release_checkpoint(src, args.out / "refinefuse_msrs.safetensors", meta=release)
    size_mb = dst.stat().st_size / 1e6

    lines = [
        "# RefineFuse, trained on MSRS (the package's default weights)",
        "",
        f"`refinefuse_msrs.safetensors` ({size_mb:.1f} MB, float16 weights, model config and this card's metadata in the header; loaded as float32): the paper's",
        "configuration (`RefineFuse()`, 2.20 M parameters) trained by this project's own trainer.",
        "`refinefuse fuse` and `refinefuse demo` use it when no `--weights` is given.",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data}; {final['cfg'].get('val_pairs', 4)} of them held out for validation (the last stage; each stage's own below). Never msrs/test, tno or medical. |",
        f"| command | `{release['command']}` (the last stage; every stage below; rerunning a command continues it after an interruption) |",
        f"| epochs | {release['epochs']} in {len(stage_epochs)} stage(s): {' + '.join(map(str, stage_epochs))} (checkpoint `{args.checkpoint}` of the last) |",
        f"| wall time | {wall_h:.2f} h of training (sum of the epochs in the stages' `log.csv`) |",
        f"| device | {release['device']}; torch {torch.__version__} |",
        f"| final loss | train {release['train_loss']:.4f}, validation {release['val_loss']:.4f} (epoch {last['epoch']} of the last stage; that stage's whole loss, with any terms beyond the paper's listed under its schedule) |",
        "",
        "## Stages",
        "",
        "Each stage starts from the weights of the one before (`--set init=CHECKPOINT`: fresh optimizer and schedule).",
        "",
    ]
    if n_previous:
        lines += _previous_stages(previous, args.previous_card)
    for i, stage in enumerate(stages, n_previous + 1):
        rows = stage["rows"]
        stage_h = sum(float(r["epoch_s"]) for r in rows) / 3600
        lines += [
            f"### Stage {i}: {int(stage['state']['epoch'])} epochs, {stage_h:.2f} h",
            "",
            f"- command: `{commands[i - 1]}`",
            f"- data: {_data(stage['cfg'], stage['state'].get('meta', {}).get('pairs'))}",
            f"- schedule: {_schedule(stage['cfg'])}",
            f"- checkpoint passed on: `{stage['checkpoint']}` (epoch {stage['state']['epoch']})",
            "",
            "| epoch | lr | train loss | val loss | val VIF | val Qabf | val SCD | pairs/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            cells = [r["epoch"], f"{float(r['lr']):.2e}", f"{float(r['train_loss']):.4f}"]
            cells += [f"{float(r[k]):.4f}" if r.get(k) else "" for k in ("val_loss", "val_VIF", "val_Qabf", "val_SCD")]
            cells.append(r["pairs_per_s"])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "(Validation metrics on each stage's held-out training pairs, so only a trend; the losses are",
        "each stage's own loss.)",
        "",
    ]
    if args.notes:
        lines += ["## Why this schedule", "", args.notes.read_text().strip(), ""]
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
