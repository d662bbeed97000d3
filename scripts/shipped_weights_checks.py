"""Print the measurements that tests/test_shipped_weights.py and tests/test_exact_range.py check.

    python scripts/shipped_weights_checks.py [--weights CKPT]

- the share of the infrared target contrast kept on three MSRS night pairs (labelled cars,
  people and bikes where the infrared is brighter than the visible image by more than 0.1),
  with the mean VIF, Qabf and SCD over those and one daytime pair;
- how many pixels of a flat black / white pair fuse to exactly black / white;
- on the 42 MRI-PET pairs, the share of the pixels where both sources are 0 that fuse to exactly
  0, and their mean grey level.

The data root is ``$REFINEFUSE_DATA_ROOT`` or ``../shared``. The functions below are the
measurements themselves; the tests call them and assert floors a little below these numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from refinefuse.colour import grey_255, luminance
from refinefuse.fuse import fuse_arrays, load_fuser
from refinefuse.io import pair_folders, read_image
from refinefuse.metrics import evaluate
from refinefuse.paths import dataset_dir

# night scenes with people and cars that are bright in infrared and dark in visible light,
# and a daytime scene with glare
NIGHT_PAIRS = ("00004N", "00746N", "00959N")
DAY_PAIRS = ("01380D",)
SALIENT_CLASSES = (1, 2, 3)  # MSRS labels: car, person, bike

#: name -> (infrared, visible, fused, label) images of an MSRS test pair
FusedPairs = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def fuse_msrs_pairs(fuser: Callable, test: Path) -> FusedPairs:
    """Fuse the night and day pairs of ``test`` (the ``msrs/test`` folder)."""
    out = {}
    for name in NIGHT_PAIRS + DAY_PAIRS:
        ir, vis = read_image(test / "ir" / f"{name}.png"), read_image(test / "vi" / f"{name}.png")
        out[name] = (ir, vis, fuse_arrays(ir, vis, fuser), read_image(test / "label" / f"{name}.png"))
    return out


def target_shares(fused_pairs: FusedPairs) -> dict[str, tuple[float, int]]:
    """Per night pair: inside labelled people/cars/bikes that are hotter than they are bright, the
    share of the infrared-minus-visible contrast that the fused luminance keeps (0: visible,
    1: infrared), and how many pixels that region has."""
    shares = {}
    for name in NIGHT_PAIRS:
        ir, vis, fused, label = fused_pairs[name]
        ir_y, vis_y, fused_y = (luminance(x) for x in (ir, vis, fused))
        target = np.isin(label, SALIENT_CLASSES) & (ir_y > vis_y + 0.1)
        share = float((fused_y[target] - vis_y[target]).mean() / (ir_y[target] - vis_y[target]).mean())
        shares[name] = (share, int(target.sum()))
    return shares


def mean_scores(fused_pairs: FusedPairs) -> dict[str, float]:
    """Mean VIF, Qabf and SCD (profile ``paper``) over the pairs."""
    scores = [
        evaluate(grey_255(fused), grey_255(ir), grey_255(vis), metrics=("VIF", "Qabf", "SCD"))
        for ir, vis, fused, _ in fused_pairs.values()
    ]
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


def flat_pair(fuser: Callable, value: int) -> tuple[float, int]:
    """A flat ``value`` pair (96x128): the share of fused pixels exactly ``value``, and the largest difference."""
    flat = np.full((96, 128), value, np.uint8)
    fused = fuse_arrays(flat, flat, fuser)
    return float((fused == value).mean()), int(np.abs(fused.astype(int) - value).max())


def _brightest_channel(image: np.ndarray) -> np.ndarray:
    return image.reshape(*image.shape[:2], -1).max(axis=2)


def mri_pet_background(fuser: Callable, folder: Path) -> dict:
    """Over the MRI-PET pairs of ``folder``, the pixels where both sources are 0 (every channel):
    ``exact`` (share of them fused to exactly 0), ``mean`` (mean over the pairs of their mean grey
    level), ``pairs`` (how many pairs) and ``both_black`` (per pair, the share of such pixels)."""
    exact, total, means, both_black = 0, 0, [], {}
    for pair in pair_folders(folder / "PET", folder / "MRI"):
        pet, mri = read_image(pair.ir), read_image(pair.vis)
        fused = fuse_arrays(pet, mri, fuser, mode="medical")
        black = (_brightest_channel(pet) == 0) & (_brightest_channel(mri) == 0)
        background = _brightest_channel(fused)[black]
        exact += int((background == 0).sum())
        total += background.size
        means.append(float(background.mean()))
        both_black[pair.name] = float(black.mean())
    return {"exact": exact / total, "mean": float(np.mean(means)), "pairs": len(means), "both_black": both_black}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    args = parser.parse_args()
    fuser = load_fuser(weights=args.weights, device="cpu")

    fused = fuse_msrs_pairs(fuser, dataset_dir("msrs") / "test")
    shares = target_shares(fused)
    print("infrared target share (night pairs):", ", ".join(f"{s:.3f}" for s, _ in shares.values()))
    print("mean over the four pairs:", ", ".join(f"{k} {v:.3f}" for k, v in mean_scores(fused).items()))
    for value in (0, 255):
        exact, largest = flat_pair(fuser, value)
        print(f"flat {value}: {exact:.2%} exact, largest difference {largest}")
    background = mri_pet_background(fuser, dataset_dir("medical/MRI_PET"))
    print(f"MRI-PET, both sources 0: {background['exact']:.1%} exactly 0, mean {background['mean']:.3f} grey levels")


if __name__ == "__main__":
    main()
