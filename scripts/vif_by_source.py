"""VIF split by source: which source's information the fused images lose.

The paper's VIF is ``vifp(A, F) + vifp(B, F)`` (``docs/metrics.md``). For each method's fused
images in a ``refinefuse reproduce`` result folder this prints both halves and, where one
source is brighter than the other by more than ``--margin`` grey levels, the mean of
``F - max(A, B)``: how much of the brighter source's intensity the fused image keeps (0 for
the ``max`` rule). Grey values as the metrics see them (``metrics.as_grey``).

    python scripts/vif_by_source.py --dataset mri_pet [--results results]
        [--methods refinefuse,max,mean] [--margin 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from refinefuse.datasets import get_dataset
from refinefuse.errors import InputError
from refinefuse.io import pair_folders, read_image
from refinefuse.metrics import as_grey
from refinefuse.metrics.functional import vifp


def source_split(fused: np.ndarray, a: np.ndarray, b: np.ndarray, margin: float) -> dict[str, float]:
    """VIF halves and brightness kept for one pair of grey 0-255 images of one size.

    ``vif_a`` / ``vif_b``: ``vifp(A, F)`` / ``vifp(B, F)``; ``kept_a``: mean ``F - max(A, B)``
    where ``A > B + margin`` (NaN where there is no such pixel), ``kept_b`` likewise.
    """
    top = np.maximum(a, b)
    a_brighter, b_brighter = a > b + margin, b > a + margin
    return {
        "vif_a": vifp(a, fused),
        "vif_b": vifp(b, fused),
        "kept_a": float((fused - top)[a_brighter].mean()) if a_brighter.any() else float("nan"),
        "kept_b": float((fused - top)[b_brighter].mean()) if b_brighter.any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a bundled dataset name, e.g. mri_pet")
    parser.add_argument("--results", type=Path, default=Path("results"), help="reproduce's --out (default results)")
    parser.add_argument("--methods", default="refinefuse,max,mean")
    parser.add_argument("--margin", type=float, default=10.0, help="grey levels by which one source must lead")
    args = parser.parse_args(argv)
    try:
        spec = get_dataset(args.dataset)
        pairs = pair_folders(*spec.folders())
        methods = args.methods.split(",")
        scores: dict[str, list[dict[str, float]]] = {method: [] for method in methods}
        for pair in pairs:
            a, b = as_grey(read_image(pair.ir)), as_grey(read_image(pair.vis))  # once per pair, for every method
            for method in methods:
                fused_path = args.results / spec.name / method / f"{pair.name}.png"
                if not fused_path.is_file():
                    raise InputError(f"{fused_path}: no fused image (run refinefuse reproduce --dataset {spec.name})")
                fused = as_grey(read_image(fused_path))
                if fused.shape != a.shape:
                    raise InputError(f"{fused_path}: size {fused.shape} differs from the sources' {a.shape}")
                scores[method].append(source_split(fused, a, b, args.margin))
        rows = []
        for method in methods:
            mean = {k: float(np.nanmean([s[k] for s in scores[method]])) for k in scores[method][0]}
            rows.append(
                f"| {method} | {mean['vif_a']:.4f} | {mean['vif_b']:.4f} | {mean['vif_a'] + mean['vif_b']:.4f} "
                f"| {mean['kept_a']:.2f} | {mean['kept_b']:.2f} |"
            )
    except InputError as exc:
        print(f"vif_by_source: {exc}", file=sys.stderr)
        return 2
    ir_name, vis_name = spec.ir_label, spec.vis_label
    print(f"{spec.title}, {len(pairs)} pairs; F - max(A, B) where one source leads by > {args.margin:g} grey levels\n")
    print(
        f"| method | VIF({ir_name}, F) | VIF({vis_name}, F) | VIF "
        f"| F - max, {ir_name} brighter | F - max, {vis_name} brighter |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
