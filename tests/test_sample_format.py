"""The sample and batch format (seaice_lib.sample_format) is what the dataset, the tiles and the
ONNX graph really serve: shapes from the store's own settings, dtypes in both forms."""

import numpy as np
import pytest
import torch

from seaice_lib import sample_format
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.data.patches import config_from_store
from seaice_lib.grid import cells_per_patch


def _sizes(store, steps):
    cfg = config_from_store(store)
    # from the store's settings, not from the format: P pixels, C SAR channels, G 2 km cells per patch
    return {"T": steps, "C": len(cfg.sar_variables), "P": cfg.patch, "G": cells_per_patch(cfg.patch, cfg.downsample)}


@pytest.mark.parametrize("compact", [False, True])
def test_a_sample_and_a_batch_are_the_format(patch_store, compact):
    data = PatchDataset(patch_store, compact=compact)
    dtypes = sample_format.dtypes(compact)
    sample = data[0]
    sizes = _sizes(patch_store, sample["sar"].shape[0])
    assert set(sample) == {k.name for k in sample_format.KEYS} - {"step_mask"}
    assert sizes["G"] == sample["amsr2"].shape[-1] and sample_format.GRID_CHANNELS == {"amsr2": 14, "era5": 6}
    for name, value in sample.items():
        for v in (value.values() if name == "labels" else [value]):
            assert tuple(v.shape) == sample_format.shape(name, sizes), name
            assert v.dtype == getattr(torch, dtypes[name]), name
    batch = data.__getitems__([0, 1, 2])
    steps = batch["sar"].shape[1]
    assert set(batch) == {k.name for k in sample_format.KEYS}
    for name, value in batch.items():
        for v in (value.values() if name == "labels" else [value]):
            assert tuple(v.shape) == (3, *sample_format.shape(name, {**sizes, "T": steps})), name
            assert v.dtype == getattr(torch, dtypes[name]), name
    assert sorted(collate([data[i] for i in range(3)])) == sorted(batch)


def test_keys_follow_their_modality(patch_store):
    sar_only = PatchDataset(patch_store, modalities=("sar",))[0]
    assert set(sar_only) == {"sar", "sar_mask", "days_before", "day_of_year", "labels", "scene", "origin"}
    assert sample_format.MODALITY_KEYS == {"sar": ("sar", "sar_mask"), "amsr2": ("amsr2",), "era5": ("era5",)}
    assert sample_format.SEQUENCE_KEYS == ("sar", "sar_mask", "days_before", "day_of_year")
    assert sample_format.MODEL_INPUTS == ("sar", "sar_mask", "days_before", "day_of_year", "step_mask", "amsr2",
                                          "era5", "grid2km_offset")
    assert set(sample_format.OPTIONAL_MODALITIES) < set(sample_format.MODALITIES)
    assert np.dtype(sample_format.dtypes()["labels"]) == np.int64 and sample_format.dtypes(True)["labels"] == "uint8"
