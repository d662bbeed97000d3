"""Print the measurements that tests/test_shipped_weights.py and tests/test_exact_range.py quote.

    python scripts/shipped_weights_checks.py [--weights CKPT]

- the share of the infrared target contrast kept on three MSRS night pairs (labelled cars,
  people and bikes where the infrared is brighter than the visible image by more than 0.1),
  with the mean VIF, Qabf and SCD over those and one daytime pair;
- how many pixels of a flat black / white pair fuse to exactly black / white;
- on the 42 MRI-PET pairs, the share of the pixels where both sources are 0 that fuse to exactly
  0, and their mean grey level.

The data root is ``$REFINEFUSE_DATA_ROOT`` or ``../shared``; the tests assert floors below these.
"""

from __future__ import annotations

import argparse

import numpy as np

from refinefuse.colour import grey_255, luminance
from refinefuse.fuse import fuse_arrays, load_fuser
from refinefuse.io import pair_folders, read_image
from refinefuse.metrics import evaluate
from refinefuse.paths import dataset_dir

MSRS_PAIRS = ("00004N", "00746N", "00959N", "01380D")  # the tests' night pairs and daytime pair
SALIENT_CLASSES = (1, 2, 3)  # MSRS labels: car, person, bike


def _brightest_channel(image: np.ndarray) -> np.ndarray:
    return image.reshape(*image.shape[:2], -1).max(axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    args = parser.parse_args()
    fuser = load_fuser(weights=args.weights, device="cpu")

    test = dataset_dir("msrs") / "test"
    shares, scores = [], []
    for name in MSRS_PAIRS:
        ir, vis = read_image(test / "ir" / f"{name}.png"), read_image(test / "vi" / f"{name}.png")
        fused = fuse_arrays(ir, vis, fuser)
        if name.endswith("N"):
            ir_y, vis_y, fused_y = (luminance(x) for x in (ir, vis, fused))
            label = read_image(test / "label" / f"{name}.png")
            target = np.isin(label, SALIENT_CLASSES) & (ir_y > vis_y + 0.1)
            shares.append(float((fused_y[target] - vis_y[target]).mean() / (ir_y[target] - vis_y[target]).mean()))
        scores.append(evaluate(grey_255(fused), grey_255(ir), grey_255(vis), metrics=("VIF", "Qabf", "SCD")))
    print("infrared target share (night pairs):", ", ".join(f"{s:.3f}" for s in shares))
    print("mean over the four pairs:", ", ".join(f"{k} {np.mean([s[k] for s in scores]):.3f}" for k in scores[0]))

    for value in (0, 255):
        flat = np.full((96, 128), value, np.uint8)
        fused = fuse_arrays(flat, flat, fuser)
        largest = np.abs(fused.astype(int) - value).max()
        print(f"flat {value}: {(fused == value).mean():.2%} exact, largest difference {largest}")

    folder = dataset_dir("medical/MRI_PET")
    exact = total = 0
    means = []
    for pair in pair_folders(folder / "PET", folder / "MRI"):
        pet, mri = read_image(pair.ir), read_image(pair.vis)
        fused = fuse_arrays(pet, mri, fuser, mode="medical")
        background = _brightest_channel(fused)[(_brightest_channel(pet) == 0) & (_brightest_channel(mri) == 0)]
        exact += int((background == 0).sum())
        total += background.size
        means.append(float(background.mean()))
    print(f"MRI-PET, both sources 0: {exact / total:.1%} exactly 0, mean {np.mean(means):.3f} grey levels")


if __name__ == "__main__":
    main()
