"""Make one training folder out of several datasets (issue 13: scale-aware training data).

    python scripts/mix_training_sets.py --out ~/data/mix --sets msrs/train128 roadscene
    python scripts/mix_training_sets.py --out ~/data/mix_ho --sets msrs/train128 roadscene --hold-out roadscene=32

For every pair of each set (a folder with ``ir/`` and ``vi/`` under the data root) it links
the two images into ``OUT/ir`` and ``OUT/vi`` as ``<set>_<name>`` and writes the pair's
salient mask to ``OUT/masks/<set>_<name>.png`` (0/255), taken as the trainer would take it
for that set alone (``mask: infer``: MSRS boxes, else the automatic infrared mask). Train on
the result with ``refinefuse train --data OUT --set mask=masks``. Never give it
``msrs/test``, ``tno`` or ``medical``: those are test sets.

``--hold-out SET=N`` leaves out ``N`` evenly spaced pairs of ``SET``: the same pairs that
``refinefuse reproduce --dataset SET --max-pairs N`` scores, so a model trained on the rest
can be validated (and reported) on pairs it never saw.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from refinefuse.data import PairedFusionDataset
from refinefuse.errors import InputError
from refinefuse.io import evenly_spaced, write_image
from refinefuse.paths import dataset_dir

TEST_SETS = ("msrs/test", "tno", "medical")


def mix(
    sets: list[str],
    out: Path,
    root: str | None = None,
    max_pairs: int | None = None,
    hold_out: dict[str, int] | None = None,
) -> int:
    """Link the pairs of ``sets`` into ``out`` with their masks (``max_pairs`` evenly spaced per
    set, default all), leaving out ``hold_out[set]`` evenly spaced pairs of a set (chosen
    among all its pairs, before ``max_pairs``); returns the number of pairs."""
    hold_out = hold_out or {}
    for name in [*sets, *hold_out]:
        if any(name == t or name.startswith(t + "/") for t in TEST_SETS):
            raise InputError(f"{name}: a test set; it must not be trained on")
    for name in hold_out:
        if name not in sets:
            raise InputError(f"--hold-out {name}: not one of the sets ({', '.join(sets)})")
    for sub in ("ir", "vi", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = 0
    for name in sets:
        data = PairedFusionDataset(dataset_dir(name, root), mask="infer", crop=None, augment=False)
        held = {p.name for p in evenly_spaced(data.pairs, hold_out[name])} if name in hold_out else set()
        kept = evenly_spaced([i for i, p in enumerate(data.pairs) if p.name not in held], max_pairs)
        tag = name.replace("/", "_")
        for i in kept:
            pair = data.pairs[i]
            stem = f"{tag}_{pair.name}"
            for src, sub in ((pair.ir, "ir"), (pair.vis, "vi")):
                link = out / sub / f"{stem}{src.suffix.lower()}"
                if not link.exists():
                    os.symlink(src.resolve(), link)
            mask = data.load(i)[2]  # the mask exactly as training on this set alone would see it
            write_image(out / "masks" / f"{stem}.png", (mask > 0.5).astype(np.uint8) * 255)
            n += 1
        print(f"{name}: {len(kept)} pairs, {len(held)} held out ({data.mask_source} masks)", file=sys.stderr)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=["msrs/train128", "roadscene"])
    parser.add_argument("--max-pairs", type=int, default=None, help="per set, evenly spaced (default: all)")
    parser.add_argument(
        "--hold-out",
        nargs="*",
        default=[],
        metavar="SET=N",
        help="leave out N evenly spaced pairs of SET (the pairs `refinefuse reproduce --max-pairs N` scores)",
    )
    parser.add_argument("--data-root", default=None, help="default: $REFINEFUSE_DATA_ROOT or ../shared")
    args = parser.parse_args(argv)
    try:
        hold_out = {}
        for item in args.hold_out:
            name, sep, count = item.rpartition("=")
            if not sep or not count.isdigit() or int(count) < 1:
                raise InputError(f"--hold-out {item}: expected SET=N with N >= 1")
            hold_out[name] = int(count)
        n = mix(args.sets, args.out.expanduser(), args.data_root, args.max_pairs, hold_out)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{n} pairs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
