"""scripts/mix_training_sets.py: several training sets as one folder with their masks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from refinefuse.data import PairedFusionDataset
from refinefuse.errors import InputError
from refinefuse.io import read_image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mix_training_sets.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("mix_training_sets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mixed_folder_trains_with_each_sets_masks(script, shared_root, tmp_path):
    out = tmp_path / "mix"
    assert script.mix(["msrs/train128", "roadscene"], out, str(shared_root), max_pairs=3) == 6
    data = PairedFusionDataset(out, mask="masks", crop=96)
    names = [p.name for p in data.pairs]
    assert len(names) == 6 and sum(n.startswith("msrs_train128_") for n in names) == 3
    for i, name in enumerate(names):
        mask = read_image(out / "masks" / f"{name}.png")
        assert set(np.unique(mask).tolist()) <= {0, 255}
        source = "msrs/train128" if name.startswith("msrs_") else "roadscene"
        alone = PairedFusionDataset(shared_root / "data" / source, mask="infer", crop=None, augment=False)
        j = [p.name for p in alone.pairs].index(name.split("_", 2)[-1] if source != "roadscene" else name[10:])
        np.testing.assert_array_equal(data.load(i)[2], alone.load(j)[2])  # the set's own mask
    batch = data[0]
    assert batch["ir"].shape[-2:] == (96, 96)


def test_test_sets_are_refused(script, shared_root, tmp_path):
    for name in ("msrs/test", "tno", "medical/MRI_CT"):
        with pytest.raises(InputError, match="test set"):
            script.mix([name], tmp_path / "x", str(shared_root))
