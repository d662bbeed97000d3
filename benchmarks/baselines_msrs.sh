#!/usr/bin/env bash
# Fuse the 361 MSRS test pairs with every classical baseline and score them (profile paper).
# Usage: benchmarks/baselines_msrs.sh [OUT_DIR]   (default /tmp/baselines_msrs; data from ../shared)
# Needs the package importable (pip install -e . or PYTHONPATH=src).
set -euo pipefail
out=${1:-/tmp/baselines_msrs}
data=${REFINEFUSE_DATA_ROOT:-../shared}/data/msrs/test
fused=()
for m in mst mean max lp dwt gff; do
  python -m refinefuse fuse --ir "$data/ir" --vis "$data/vi" --out "$out/$m" --method "$m" --quiet --overwrite
  fused+=(--fused "$m=$out/$m")
done
python -m refinefuse eval "${fused[@]}" --ir "$data/ir" --vis "$data/vi" --out "$out/eval.csv"
