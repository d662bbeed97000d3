"""scripts/mix_training_sets.py: several training sets as one folder with their masks."""

from __future__ import annotations

import numpy as np
import pytest
from script_loader import load_script

from refinefuse.data import PairedFusionDataset
from refinefuse.errors import InputError
from refinefuse.io import read_image


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/mix_training_sets.py")


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


def test_hold_out_leaves_out_the_pairs_reproduce_scores(script, shared_root, tmp_path):
    """--hold-out roadscene=32: none of the 32 pairs of `reproduce --dataset roadscene --max-pairs 32` is linked."""
    from refinefuse.io import evenly_spaced, pair_folders

    roadscene = shared_root / "data" / "roadscene"
    held = {p.name for p in evenly_spaced(pair_folders(roadscene / "ir", roadscene / "vi"), 32)}
    assert len(held) == 32
    out = tmp_path / "mix"
    assert script.mix(["roadscene"], out, str(shared_root), max_pairs=40, hold_out={"roadscene": 32}) == 40
    linked = {p.stem.removeprefix("roadscene_") for p in (out / "ir").iterdir()}
    assert len(linked) == 40 and not linked & held
    all_kept = len(list(roadscene.joinpath("ir").iterdir())) - 32
    assert all_kept == 189  # what the shipped weights' last stage trained on besides msrs/train128


def test_hold_out_errors(script, shared_root, tmp_path, capsys):
    with pytest.raises(InputError, match="not one of the sets"):
        script.mix(["msrs/train128"], tmp_path / "x", str(shared_root), hold_out={"roadscene": 3})
    with pytest.raises(InputError, match="test set"):
        script.mix(["roadscene"], tmp_path / "x", str(shared_root), hold_out={"tno": 3})
    assert script.main(["--out", str(tmp_path / "y"), "--sets", "roadscene", "--hold-out", "roadscene"]) == 2
    assert "expected SET=N" in capsys.readouterr().err
