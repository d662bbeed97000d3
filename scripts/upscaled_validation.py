"""Validation on training data at full-resolution scale: the checkpoint-selection check of
the stage-4 weights (issue 13), never the test sets.

``msrs/train128`` frames are whole 640x480 frames shrunk to 128x128, so a model validated on
them never shows the flat-region texture it paints at full size. This script takes evenly
spaced ``train128`` pairs, upscales them (bilinear, ``--scale``, like the trainer's
``rescale`` augmentation; several factors allowed, 5 is about the full frames' size) and
scores each checkpoint on them: the paper's seven metrics and FA (``docs/metrics.md``), plus
the same on the pairs at their own 128x128 size. Writes ``table.md`` (4 decimals) and
``means.json`` (``{"x4": {label: {metric: mean}}}``, full precision, for selection rules).

    python scripts/upscaled_validation.py --weights A.pt B.safetensors [--pairs 32] [--scale 4 5]
        [--out /tmp/upscaled_validation]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from refinefuse.errors import InputError
from refinefuse.io import pair_folders, read_image, write_image
from refinefuse.metrics import PAPER_METRICS, evaluate_folders, markdown_table
from refinefuse.paths import dataset_dir
from refinefuse.reproduce import fuse_missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", required=True, help="checkpoints to compare")
    parser.add_argument("--labels", nargs="+", help="row names (default: the file names)")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--scale", type=float, nargs="+", default=[4.0], help="upscaling factors (x1 always runs)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/upscaled_validation"))
    args = parser.parse_args(argv)
    labels = args.labels or [Path(w).stem for w in args.weights]

    root = dataset_dir("msrs/train128")
    pairs = pair_folders(root / "ir", root / "vi")
    pick = sorted(set(np.linspace(0, len(pairs) - 1, args.pairs).round().astype(int).tolist()))
    tables, means = [], {}
    for scale in dict.fromkeys((1.0, *args.scale)):
        folder = args.out / f"x{scale:g}"
        for i in pick:
            pair = pairs[i]
            for src, sub in ((pair.ir, "ir"), (pair.vis, "vi")):
                dst = folder / sub / f"{pair.name}.png"
                if not dst.exists():
                    img = read_image(src)
                    size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
                    write_image(dst, img if scale == 1 else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
        methods = {}
        scaled = pair_folders(folder / "ir", folder / "vi")
        # images already there are reused only if made with the same checkpoint (fused_with.json)
        try:
            for label, weights in zip(labels, args.weights):
                methods[label] = folder / label
                fuse_missing(scaled, methods[label], "refinefuse", mode="ir-vis", weights=weights, progress=False)
            for rule in ("max", "mean"):
                methods[rule] = folder / rule
                fuse_missing(scaled, methods[rule], rule, mode="ir-vis", progress=False)
        except InputError as exc:
            print(exc, file=sys.stderr)
            return 2
        res = evaluate_folders(methods, folder / "ir", folder / "vi", metrics=(*PAPER_METRICS, "FA"), progress=False)
        means[f"x{scale:g}"] = res.means()
        tables.append(
            f"train128 pairs x{scale:g} ({len(pick)} pairs)\n\n"
            + markdown_table(means[f"x{scale:g}"], res.metrics, counts=res.counts())
        )
    text = "\n\n".join(tables)
    print(text)
    (args.out / "table.md").write_text(text)
    (args.out / "means.json").write_text(json.dumps(means, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
