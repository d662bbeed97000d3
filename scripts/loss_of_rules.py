"""The paper's training loss (DESIGN.md Sect. 3) of a checkpoint's output next to the loss of
simple rules (the sources themselves, pixel-wise max/mean, classical baselines) on training
pairs: tells whether a model is under-trained (a rule reaches a lower loss) or the loss
itself prefers its outputs. SCD, VIF and Qabf (profile ``paper``) of each output come along.

    python scripts/loss_of_rules.py [--data ../shared/data/msrs/train128] [--weights CKPT] \
        [--pairs 64] [--rules ir,vis,max,mean,gff,lp]

Whole images, no augmentation, masks as the trainer makes them (``--mask infer``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from refinefuse.baselines import get_baseline
from refinefuse.checkpoint import load_model
from refinefuse.data import PairedFusionDataset
from refinefuse.fuse import default_weights
from refinefuse.losses import fusion_loss
from refinefuse.metrics import evaluate
from refinefuse.paths import dataset_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(dataset_dir("msrs/train128")))
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--pairs", type=int, default=64, help="evenly spaced training pairs")
    parser.add_argument("--rules", default="ir,vis,max,mean,gff,lp")
    args = parser.parse_args()

    dataset = PairedFusionDataset(args.data, crop=None, augment=False, max_pairs=args.pairs)
    model = load_model(args.weights or default_weights(), map_location="cpu").eval()
    fusers = {"model": lambda ir, vis: model(ir, vis), "ir": lambda ir, vis: ir, "vis": lambda ir, vis: vis}
    for rule in filter(None, args.rules.split(",")):
        if rule not in fusers:
            baseline = get_baseline(rule)
            fusers[rule] = lambda ir, vis, b=baseline: torch.from_numpy(
                np.clip(b(ir[0, 0].numpy(), vis[0, 0].numpy()), 0, 1)
            ).float()[None, None]
    print(f"{len(dataset)} pairs of {args.data}")
    metrics = ("SCD", "VIF", "Qabf")
    print(f"{'output':8s} {'loss':>7s} {'L_int':>7s} {'L_tex':>7s}" + "".join(f" {m:>7s}" for m in metrics))
    with torch.inference_mode():
        for name, fuser in fusers.items():
            terms = []
            for i in range(len(dataset)):
                item = dataset[i]
                ir, vis, mask = item["ir"][None], item["vis"][None], item["mask"][None]
                fused = fuser(ir, vis).clamp(0, 1)
                loss, parts = fusion_loss(fused, ir, vis, mask)
                grey = [np.round(x[0, 0].numpy() * 255) for x in (fused, ir, vis)]
                scores = evaluate(*grey, metrics=metrics)
                terms.append([float(loss), float(parts["int"]), float(parts["tex"]), *(scores[m] for m in metrics)])
            with warnings.catch_warnings():  # SCD of an output equal to a source is undefined (NaN)
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(terms, axis=0)
            print(f"{name:8s}" + "".join(f" {v:7.4f}" if np.isfinite(v) else f" {'n/a':>7s}" for v in mean))


if __name__ == "__main__":
    main()
