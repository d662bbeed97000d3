"""Side-by-side crops of several images of one scene, enlarged: the detail figures of
``docs/RESULTS.md`` (e.g. the TNO 01 sky, one panel per set of weights).

    python scripts/crop_compare.py A.png B.png C.png --box 148,0,425,201 --scale 1.6 \
        --out docs/figures/tno_sky.jpg

Every input is cropped to the same ``X,Y,W,H`` box, resized by ``--scale`` (cubic) and the
panels are joined left to right with ``--gap`` white pixels between them. A ``.jpg`` output
is written at quality 85. Bad input (unreadable file, box outside an image, images of
different sizes) stops with one line naming the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from refinefuse.errors import InputError
from refinefuse.io import read_image, write_image


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> four ints (W, H > 0)."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--box {text!r}: expected X,Y,W,H (four integers)") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise InputError(f"--box {text!r}: X, Y must be >= 0 and W, H > 0")
    return x, y, w, h


def crop_compare(
    images: list[np.ndarray], box: tuple[int, int, int, int], scale: float = 1.6, gap: int = 5
) -> np.ndarray:
    """Crop every ``(H, W)`` / ``(H, W, 3)`` uint8 image to ``box``, enlarge by ``scale`` and
    join left to right with ``gap`` white columns; grey images are joined as grey."""
    x, y, w, h = box
    colour = any(im.ndim == 3 for im in images)
    panels = []
    for im in images:
        if colour and im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        panel = im[y : y + h, x : x + w]
        size = (round(w * scale), round(h * scale))
        panels.append(cv2.resize(panel, size, interpolation=cv2.INTER_CUBIC))
    white = np.full((panels[0].shape[0], gap, *panels[0].shape[2:]), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [white, panel]
    return np.concatenate(row, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--box", required=True, help="X,Y,W,H of the crop in pixels")
    parser.add_argument("--scale", type=float, default=1.6)
    parser.add_argument("--gap", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        box = parse_box(args.box)
        images = [read_image(p) for p in args.images]
        for path, im in zip(args.images, images):
            if im.shape[:2] != images[0].shape[:2]:
                raise InputError(f"{path}: size {im.shape[1]}x{im.shape[0]} differs from {args.images[0]}")
            if box[0] + box[2] > im.shape[1] or box[1] + box[3] > im.shape[0]:
                raise InputError(f"{path}: --box {args.box} lies outside its {im.shape[1]}x{im.shape[0]} pixels")
        figure = crop_compare(images, box, args.scale, args.gap)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_image(args.out, figure, quality=85)
    except InputError as exc:
        print(f"crop_compare: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({figure.shape[1]}x{figure.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
