import numpy as np
import pytest
import torch

from seaice_lib import patches, schema
from seaice_lib.dataset import (ClassBalancedSampler, DistributedClassBalancedSampler, PatchDataset,
                                class_shares, collate, dihedral, split_scenes)

CFG = patches.PatchConfig(patch=16, downsample=2, window_days=30, min_overlap=0.1)


@pytest.fixture(scope="module")
def store(synthetic_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "patches.zarr"
    patches.extract_store(synthetic_dir, path, CFG, progress=False)
    return path


def test_samples_are_dicts_of_tensors(store):
    ds = PatchDataset(store)
    assert len(ds) > 10
    s = ds[3]
    t = s["sar"].shape[0]
    assert s["sar"].shape == (t, 3, 16, 16) and s["sar"].dtype == torch.float32
    assert s["sar_mask"].shape == (t, 16, 16) and s["sar_mask"].dtype == torch.bool
    assert s["days_before"].shape == (t,) and s["days_before"][-1] == 0
    assert s["day_of_year"].dtype == torch.int64 and (s["day_of_year"] >= 1).all()
    assert s["amsr2"].shape == (14, CFG.grid_cells, CFG.grid_cells)
    assert s["era5"].shape == (6, CFG.grid_cells, CFG.grid_cells)
    assert set(s["labels"]) == set(schema.CHARTS) and s["labels"]["SIC"].shape == (16, 16)
    assert max(ds[i]["sar"].shape[0] for i in range(len(ds))) == 3


def _tagged_sample(p=6, g=4, ds=3, cell=5):
    """A sample whose SAR holds pixel ids, labels a function of them, AMSR2 cell ids, wind along +samples."""
    ids = torch.arange(p * p, dtype=torch.float32).reshape(p, p)
    return {"sar": ids.expand(2, 3, p, p).clone(), "sar_mask": (ids % 2 == 0).expand(2, p, p).clone(),
            "labels": {"SIC": (ids % 11).long(), "SOD": (ids % 6).long(), "FLOE": (ids % 7).long()},
            "amsr2": torch.arange(g * g, dtype=torch.float32).reshape(1, g, g).expand(14, g, g).clone(),
            "era5": torch.stack([torch.ones(g, g), torch.zeros(g, g)] + [torch.zeros(g, g)] * 4),
            "grid2km_offset": torch.tensor([2, 4])}, (p, g, ds, cell)


@pytest.mark.parametrize("which", range(8))
def test_every_flip_and_rotation_keeps_modalities_together(which):
    sample, (p, g, ds, cell) = _tagged_sample()
    out = dihedral(sample, which, ds, cell)
    ids = out["sar"][0, 0].long()
    # labels still belong to the same pixels, masks too
    assert torch.equal(out["labels"]["SOD"], ids % 6) and torch.equal(out["labels"]["FLOE"], ids % 7)
    assert torch.equal(out["sar_mask"][0], ids % 2 == 0)
    # each pixel finds, through the new offset, the 2 km cell under the same original pixel
    off0 = sample["grid2km_offset"]
    i0, j0 = ids // p, ids % p
    cell_before = ((off0[0] + i0 * ds) // cell) * g + (off0[1] + j0 * ds) // cell
    off = out["grid2km_offset"]
    ii, jj = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    cell_after = out["amsr2"][0][(off[0] + ii * ds) // cell, (off[1] + jj * ds) // cell].long()
    assert torch.equal(cell_after, cell_before)
    # the wind pointed along the original +samples axis; it still does in the new image
    where = {int(v): divmod(k, p) for k, v in enumerate(ids.flatten())}
    (r0, c0), (r1, c1) = where[0], where[1]
    assert out["era5"][1, 0, 0] == r1 - r0 and out["era5"][0, 0, 0] == c1 - c0


def test_augmentation_is_deterministic_per_epoch(store):
    ds = PatchDataset(store, augment=True, seed=1)
    a = [ds[i]["sar"] for i in range(8)]
    assert all(torch.equal(x, ds[i]["sar"]) for i, x in enumerate(a))
    ds.set_epoch(1)
    assert not all(torch.equal(x, ds[i]["sar"]) for i, x in enumerate(a))


def test_balanced_sampling_moves_shares_to_rare_classes(store):
    ds = PatchDataset(store)
    uniform = class_shares(ds, ClassBalancedSampler(ds, "SOD", power=0.0), "SOD")
    strong = class_shares(ds, ClassBalancedSampler(ds, "SOD", power=1.0), "SOD")
    np.testing.assert_allclose(uniform["uniform"], uniform["balanced"], atol=1e-9)
    rare = uniform["uniform"][uniform["uniform"] > 0].idxmin()
    assert strong.loc[rare, "balanced"] > 1.5 * strong.loc[rare, "uniform"]
    assert strong.loc["Open water", "balanced"] < strong.loc["Open water", "uniform"]
    # the draws follow the weights
    sampler = ClassBalancedSampler(ds, "SOD", power=1.0, num_samples=4000, seed=3)
    drawn = ds.histograms[list(sampler)][:, schema.HISTOGRAM_SLICES["SOD"]].sum(axis=0)
    k = list(schema.CLASSES["SOD"].names).index(rare)
    assert 100 * drawn[k] / drawn.sum() == pytest.approx(strong.loc[rare, "balanced"], rel=0.25)


def test_distributed_sampler_slices_one_global_draw(store):
    ds = PatchDataset(store)
    ranks = [DistributedClassBalancedSampler(ds, num_samples=101, seed=5, num_replicas=2, rank=r)
             for r in range(2)]
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 51
    merged = [x for pair in zip(a, b) for x in pair]
    assert merged == ClassBalancedSampler(ds, num_samples=102, seed=5)._draw(102).tolist()
    for r in ranks:
        r.set_epoch(1)
    assert list(ranks[0]) != a


def test_collate_pads_sequences():
    def sample(t):
        return {"sar": torch.ones(t, 3, 4, 4), "sar_mask": torch.ones(t, 4, 4, dtype=torch.bool),
                "days_before": torch.arange(t, 0, -1).float() - 1, "day_of_year": torch.arange(1, t + 1),
                "amsr2": torch.zeros(14, 2, 2), "era5": torch.zeros(6, 2, 2),
                "grid2km_offset": torch.zeros(2, dtype=torch.long), "scene": torch.tensor(0),
                "origin": torch.zeros(2, dtype=torch.long),
                "labels": {c: torch.zeros(4, 4, dtype=torch.long) for c in schema.CHARTS}}
    batch = collate([sample(1), sample(3)])
    assert batch["sar"].shape == (2, 3, 3, 4, 4)
    assert batch["step_mask"].tolist() == [[True, False, False], [True, True, True]]
    assert not batch["sar_mask"][0, 1:].any() and (batch["sar"][0, 1:] == 0).all()
    assert batch["day_of_year"][0].tolist() == [1, 0, 0]
    assert batch["labels"]["SOD"].shape == (2, 4, 4)


def test_splits_are_disjoint_and_reproducible(store):
    ds = PatchDataset(store)
    ids = ds.scene_ids
    train, val = split_scenes(ids, 0.34, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(ids) and len(val) == 2
    assert split_scenes(ids, 0.34, seed=0) == (train, val)
    regions = [ds.sequence[s][2] for s in ids]
    train_r, val_r = split_scenes(ids, 0.5, seed=1, by="region", regions=regions)
    region_of = dict(zip(ids, regions))
    assert {region_of[s] for s in train_r}.isdisjoint({region_of[s] for s in val_r})
    val_ds = PatchDataset(ds.store, scenes=val)
    assert {val_ds.scene_ids[i] for i in val_ds.scene_of} == set(val)  # no training label in it
    with pytest.raises(ValueError):
        split_scenes(ids, by="region")


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_with_workers(store, workers):
    ds = PatchDataset(store, augment=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate,
                                         sampler=ClassBalancedSampler(ds, num_samples=12))
    batches = list(loader)
    assert len(batches) == 3
    assert batches[0]["sar"].shape[:3] == (4, batches[0]["step_mask"].shape[1], 3)
