"""Side-by-side figure of two precisions' fused images (issue 16): ``docs/figures/int8_vs_fp32_00828N.jpg``.

Usage (after ``python benchmarks/bench_precision.py --no-speed --metrics --out results/precision``)::

    python benchmarks/precision_figure.py [--results results/precision] [--pair 00828N]
        [--other int8] [--box 300 78 200 150] [--out docs/figures/int8_vs_fp32_00828N.jpg]

Top row: the fp32 image (left) and the other precision's (right), the box drawn in yellow.
Bottom row: the boxed region of each, 3x (nearest neighbour, so grain is not smoothed away),
and their absolute difference (largest over the colour channels) x8.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from refinefuse.io import read_image, write_image

GAP = 8  # pixels between panels (white)


def _row(panels: list[np.ndarray]) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    gap = np.full((h, GAP, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for p in panels:
        parts += [p, gap]
    return np.concatenate(parts[:-1], axis=1)


def figure(fp32: np.ndarray, other: np.ndarray, box: tuple[int, int, int, int], zoom: int = 3) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` images of the same size -> the figure (RGB uint8)."""
    x, y, w, h = box
    diff = np.abs(fp32.astype(np.int16) - other.astype(np.int16)).max(axis=2)
    diff = np.clip(diff * 8, 0, 255).astype(np.uint8)
    crops = [img[y : y + h, x : x + w] for img in (fp32, other, np.dstack([diff] * 3))]
    crops = [cv2.resize(c, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST) for c in crops]
    boxed = []
    for img in (fp32, other):
        img = img.copy()
        cv2.rectangle(img, (x, y), (x + w, y + h), (255, 200, 0), 2)
        boxed.append(img)
    top, bottom = _row(boxed), _row(crops)
    width = max(top.shape[1], bottom.shape[1])
    top = cv2.resize(top, (width, round(top.shape[0] * width / top.shape[1])), interpolation=cv2.INTER_AREA)
    bottom = cv2.resize(bottom, (width, round(bottom.shape[0] * width / bottom.shape[1])), interpolation=cv2.INTER_AREA)
    return np.concatenate([top, np.full((GAP, width, 3), 255, np.uint8), bottom], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/precision")
    parser.add_argument("--pair", default="00828N")
    parser.add_argument("--other", default="int8", choices=["int8", "bf16"])
    parser.add_argument("--box", type=int, nargs=4, default=[300, 78, 200, 150], metavar=("X", "Y", "W", "H"))
    parser.add_argument("--out", default="docs/figures/int8_vs_fp32_00828N.jpg")
    args = parser.parse_args(argv)
    root = Path(args.results)
    paths = [root / p / "msrs" / "refinefuse" / f"{args.pair}.png" for p in ("fp32", args.other)]
    for path in paths:
        if not path.is_file():
            print(f"{path}: missing; run benchmarks/bench_precision.py --metrics first", file=sys.stderr)
            return 2
    fp32, other = (read_image(p) for p in paths)
    write_image(args.out, figure(fp32, other, tuple(args.box)))  # type: ignore[arg-type]
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
