"""Noisy night test: do fusion methods turn sensor noise into spots? (issue 13, section 3)

Adds realistic sensor noise to the visible images of MSRS night test pairs (signal-dependent
Poisson shot noise plus Gaussian read noise, per RGB channel, fixed seed), fuses each noisy
pair with every method and reports the flat-region artefact FA (``docs/metrics.md``), with
the paper's seven metrics for reference. A method that keeps the noise as it is scores about
the same FA as ``max``; one that turns it into dark dots with bright rims scores higher.

    python scripts/noisy_night.py [--pairs 24] [--photons 40] [--read-noise 2]
        [--methods refinefuse,max,mean] [--weights CKPT] [--out results/noisy_night]

The noisy inputs are written under ``--out`` (``ir/``, ``vi/``) with the fused images
(``<method>/``) and ``table.md``; nothing is read from the test set but its images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from refinefuse.errors import InputError
from refinefuse.io import pair_folders, read_image, write_image
from refinefuse.metrics import PAPER_METRICS, as_grey, evaluate_folders, markdown_table
from refinefuse.metrics.functional import flat_region_artefact
from refinefuse.paths import dataset_dir
from refinefuse.reproduce import fuse_missing


def add_sensor_noise(img: np.ndarray, photons: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 image -> uint8 with Poisson noise (``photons`` electrons at full scale) and
    Gaussian read noise (``read_noise`` grey levels)."""
    x = img.astype(np.float64) / 255.0
    shot = rng.poisson(x * photons) / photons * 255.0
    noisy = shot + rng.normal(0.0, read_noise, img.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24, help="night pairs, evenly spaced (default 24)")
    parser.add_argument(
        "--photons", type=float, default=40.0, help="electrons at full scale (default 40: a dark street)"
    )
    parser.add_argument("--read-noise", type=float, default=2.0, help="Gaussian read noise in grey levels (default 2)")
    parser.add_argument("--methods", default="refinefuse,max,mean")
    parser.add_argument("--weights", default=None, help="checkpoint for refinefuse (default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=Path("results/noisy_night"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    test = dataset_dir("msrs/test")
    night = [p for p in pair_folders(test / "ir", test / "vi") if p.name.endswith("N")]
    pick = np.linspace(0, len(night) - 1, min(args.pairs, len(night))).round().astype(int)
    pairs = [night[i] for i in sorted(set(pick.tolist()))]
    rng = np.random.default_rng(args.seed)
    ir_dir, vis_dir = args.out / "ir", args.out / "vi"
    for pair in pairs:
        ir_path, vis_path = ir_dir / f"{pair.name}.png", vis_dir / f"{pair.name}.png"
        noisy = add_sensor_noise(
            read_image(pair.vis), args.photons, args.read_noise, rng
        )  # always drawn: same noise per pair
        if not vis_path.exists():
            write_image(ir_path, read_image(pair.ir))
            write_image(vis_path, noisy)

    folders = {}
    noisy_pairs = pair_folders(ir_dir, vis_dir)
    for method in args.methods.split(","):
        folders[method] = args.out / method
        weights = args.weights if method == "refinefuse" else None
        # images already there are reused only if made with the same checkpoint (fused_with.json)
        try:
            fuse_missing(noisy_pairs, folders[method], method, mode="ir-vis", weights=weights, progress=False)
        except InputError as exc:
            print(exc, file=sys.stderr)
            return 2
    results = evaluate_folders(folders, ir_dir, vis_dir, metrics=(*PAPER_METRICS, "FA", "HA"), progress=False)
    means = results.means()
    for method, folder in folders.items():  # AE: FA's added energy over the whole image (noisy regions are not flat)
        scores = [
            flat_region_artefact(
                as_grey(read_image(folder / f"{p.name}.png")),
                as_grey(read_image(ir_dir / f"{p.name}.png")),
                as_grey(read_image(vis_dir / f"{p.name}.png")),
                flat=np.inf,
            )
            for p in pairs
        ]
        means[method]["AE"] = float(np.mean(scores))
    table = (
        f"MSRS night test pairs with noisy visible images: {len(pairs)} pairs, Poisson {args.photons:g} electrons "
        f"at full scale + Gaussian read noise {args.read_noise:g} grey levels, seed {args.seed}.\n\n"
        + markdown_table(means, (*results.metrics, "AE"), counts=results.counts())
        + "\nAE: gradient energy added anywhere, `flat_region_artefact(..., flat=inf)` (lower is better; the "
        "noisy visible image is nowhere flat, so FA alone misses spots made from its noise). HA: halo artefact, grey "
        "levels by which the fused image leaves both sources' local range near edges (docs/metrics.md).\n"
    )
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
