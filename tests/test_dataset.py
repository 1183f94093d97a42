"""PatchDataset, dihedral augmentation, samplers, collate and splits.

Most tests run on tiny stores whose scene groups and index are written by the store's own writer
(:mod:`seaice_lib.data.patches`) from "tagged" arrays: SAR holds each pixel's id, labels are
functions of it, the 2 km cells hold their global cell id and the wind is one known vector, so
every invariant can be checked exactly. The last tests run stores extracted from synthetic scenes:
their samples are checked against the scene files read with xarray and cut with plain numpy.
"""

import datetime as dt
import pickle

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from seaice_lib import schema
from seaice_lib.data import patches
from seaice_lib.data.dataset import PatchDataset, collate, widen
from seaice_lib.data.samplers import ClassBalancedSampler, DistributedClassBalancedSampler, class_shares
from seaice_lib.data.shards import ShardReader
from seaice_lib.data.splits import split_scenes
from seaice_lib.data.transforms import dihedral
from seaice_lib.grid import upsample_cells

CELL = schema.CELL_80M
P = 16
ORIGINS = [(0, 0), (24, 49), (37, 13), (60, 74)]  # offsets at 0, at the cell's end and between
WIND = (3.0, -5.0)  # (u along samples, v along lines)
U, V = schema.ERA5_VARIABLES.index("u10m_rotated"), schema.ERA5_VARIABLES.index("v10m_rotated")
# target scene id -> (region, steps, day of year of the target)
SCENES = {"20190301T101010_dmi": ("SouthEast", 1, 60), "20190305T101010_dmi": ("SouthEast", 3, 64),
          "20190310T101010_cis": ("SGRDIEA", 2, 69)}


def grid_cells(p: int, downsample: int) -> int:
    return -(-(p * downsample + CELL - 1) // CELL)


def label_of(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The labels of pixels with these ids; every tenth pixel has none."""
    none = ids % 10 == 9
    return {c: torch.where(none, schema.CHART_FILL, ids % n) for c, n in schema.N_CLASSES.items()}


def mask_of(ids: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    """SAR validity of step ``t``: the target is whole, earlier steps miss every third pixel."""
    return (ids + t) % 3 != 0 if t < steps - 1 else torch.ones_like(ids, dtype=torch.bool)


def write_store(path, scenes: dict[str, dict], patch: int, downsample: int, max_steps: int = 3):
    """A store written by the store's writer: root settings, one group per scene, the index.

    ``scenes`` maps a scene id to its group attrs plus an ``arrays`` dict (the per-patch arrays but
    ``histograms``, which are counted by ``patches.histogram`` as extraction does).
    """
    cfg = patches.PatchConfig(patch=patch, downsample=downsample, max_steps=max_steps, window_days=10)
    patches.open_store(path, cfg)
    for sid, spec in sorted(scenes.items()):
        arrays = dict(spec.pop("arrays"))
        arrays["histograms"] = np.stack([patches.histogram(x) for x in arrays["labels"]])
        patches._write_group(path / "scenes" / sid, arrays, {"scene_id": sid, **spec},
                             cfg.shard_patches)
    patches.consolidate(path)
    return path


def tagged_scene(steps: int, doy: int, region: str, downsample: int) -> dict:
    """Group attrs and arrays of one target scene with tagged contents (see the module doc)."""
    g = grid_cells(P, downsample)
    ids = torch.arange(P * P).reshape(P, P)
    masks = torch.stack([mask_of(ids, t, steps) for t in range(steps)])
    sar = torch.where(masks, ids.float(), 0.0)[:, None].expand(steps, 3, P, P)
    labels = torch.stack(list(label_of(ids).values())).numpy().astype(np.uint8)
    origin = np.array(ORIGINS, np.int32)
    n = len(origin)
    first = origin // CELL
    cell_id = ((first[:, 0, None, None] + np.arange(g)[:, None]) * 64
               + first[:, 1, None, None] + np.arange(g)[None, :])  # (N, G, G) global cell ids
    era5 = np.repeat(cell_id[:, None], 6, axis=1).astype(np.float16)
    era5[:, U], era5[:, V] = WIND
    arrays = {"sar": np.broadcast_to(sar.numpy(), (n, steps, 3, P, P)).astype(np.float16),
              "sar_mask": np.broadcast_to(masks.numpy(), (n, steps, P, P)).copy(),
              "labels": np.broadcast_to(labels, (n, 3, P, P)).copy(),
              "amsr2": np.repeat(cell_id[:, None], 14, axis=1).astype(np.float16),
              "era5": era5,
              # the store's offset: from cell (0, 0)'s corner to patch pixel (0, 0)'s sample pixel
              "grid2km_offset": (origin % CELL + downsample // 2).astype(np.int32),
              "origin": origin}
    return {"region": region, "time": f"2019-03-{doy - 59:02d}T10:10:10",
            "steps": [f"step{k}" for k in range(steps - 1)] + ["target"],
            "days_before": [2.5 * (steps - 1 - k) for k in range(steps)],
            "day_of_year": [doy - 2 * (steps - 1 - k) for k in range(steps)],
            "n_patches": n, "arrays": arrays}


@pytest.fixture(scope="module", params=[2, 3], ids=["ds2", "ds3"])
def tagged(request, tmp_path_factory):
    """A tagged store at an even and at an odd downsampling."""
    downsample = request.param
    scenes = {sid: tagged_scene(t, doy, region, downsample) for sid, (region, t, doy) in SCENES.items()}
    return write_store(tmp_path_factory.mktemp("tagged") / "patches.zarr", scenes, P, downsample)


def test_sample_shapes_and_dtypes(tagged):
    dataset = PatchDataset(tagged)
    assert len(dataset) == 3 * len(ORIGINS)
    g = grid_cells(P, dataset.downsample)
    for i in range(len(dataset)):
        s = dataset[i]
        sid = dataset.scene_ids[int(s["scene"])]
        t = SCENES[sid][1]
        assert s["sar"].shape == (t, 3, P, P) and s["sar"].dtype == torch.float32
        assert s["sar_mask"].shape == (t, P, P) and s["sar_mask"].dtype == torch.bool
        assert s["days_before"].dtype == torch.float32
        assert s["days_before"].tolist() == [2.5 * (t - 1 - k) for k in range(t)]
        assert s["day_of_year"].dtype == torch.int64 and s["day_of_year"][-1] == SCENES[sid][2]
        assert s["amsr2"].shape == (14, g, g) and s["amsr2"].dtype == torch.float32
        assert s["era5"].shape == (6, g, g) and s["era5"].dtype == torch.float32
        assert s["grid2km_offset"].shape == (2,) and s["grid2km_offset"].dtype == torch.int64
        assert s["origin"].tolist() == list(ORIGINS[int(dataset.patch_of[i])])
        assert s["scene"].dtype == torch.int64 and s["scene"].shape == ()
        assert list(s["labels"]) == list(schema.CHARTS)
        assert all(v.shape == (P, P) and v.dtype == torch.int64 for v in s["labels"].values())
    assert dataset.sequence[sid].region == SCENES[sid][0]


def test_each_array_is_read_with_one_chunk_read(tagged, monkeypatch):
    dataset = PatchDataset(tagged)
    reads, chunks = [], []
    original, read_into = zarr.Array.__getitem__, ShardReader.read_into

    def spy(self, selection):
        reads.append((self.basename, selection))
        return original(self, selection)

    def spy_chunk(self, k, out):
        chunks.append((self.folder.name, k))
        return read_into(self, k, out)

    monkeypatch.setattr(zarr.Array, "__getitem__", spy)
    monkeypatch.setattr(ShardReader, "read_into", spy_chunk)
    dataset[4]  # opens the scene: its per-patch vectors are read whole, once
    assert sorted(name for name, sel in reads if sel is Ellipsis) == ["grid2km_offset", "origin"]
    reads.clear(), chunks.clear()
    dataset[5]
    assert not reads  # the image arrays are read from their shard files, not through zarr
    assert sorted(name for name, _ in chunks) == ["amsr2", "era5", "labels", "sar", "sar_mask"]
    assert all(k == int(dataset.patch_of[5]) for _, k in chunks)
    chunks.clear()
    dataset.__getitems__([5, 0, 11])  # opens two more scenes: only their vectors go through zarr
    assert len(chunks) == 3 * 5 and all(sel is Ellipsis for _, sel in reads)


@pytest.mark.parametrize("compact", [False, True], ids=["model_dtypes", "compact"])
@pytest.mark.parametrize("modalities", [("sar", "amsr2", "era5"), ("sar",), ("amsr2",)])
def test_a_batch_read_whole_is_the_collated_samples(tagged, modalities, compact):
    """``__getitems__`` (what DataLoaders call) gives exactly ``collate`` of the samples, augmented,
    with sequences of 1 to 3 steps padded, a patch drawn twice, keys, dtypes and values."""
    dataset = PatchDataset(tagged, augment=True, seed=3, modalities=modalities, compact=compact)
    dataset.set_epoch(2)
    indices = [0, 5, 11, 3, 7, 7, 10]
    assert len({dataset.augmentation(i) for i in indices}) >= 4
    whole, oracle = dataset.__getitems__(indices), collate([dataset[i] for i in indices])
    assert whole.keys() == oracle.keys()
    for key, value in oracle.items():
        pairs = zip(whole[key].values(), value.values()) if key == "labels" else [(whole[key], value)]
        for got, want in pairs:
            assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want), key
            assert got.is_contiguous()
    passed = collate(whole)  # DataLoaders hand the batch to collate, which passes it through
    assert passed.keys() == whole.keys() and all(passed[k] is whole[k] for k in whole)


def test_a_compact_batch_widens_to_the_model_batch(tagged):
    indices = [0, 5, 11, 7]
    compact = PatchDataset(tagged, augment=True, compact=True).__getitems__(indices)
    wide = PatchDataset(tagged, augment=True).__getitems__(indices)
    assert compact["sar"].dtype == torch.float16 and compact["labels"]["SOD"].dtype == torch.uint8
    assert compact["sar"].nbytes * 2 == wide["sar"].nbytes
    widened = widen(compact)
    for key, value in wide.items():
        pairs = zip(widened[key].values(), value.values()) if key == "labels" else [(widened[key], value)]
        assert all(got.dtype == want.dtype and torch.equal(got, want) for got, want in pairs), key


def test_modalities_choose_what_is_read(tagged):
    sar_only = PatchDataset(tagged, modalities=("sar",), augment=True)
    s = sar_only[0]
    assert {"sar", "sar_mask", "days_before", "day_of_year"} <= set(s)
    assert not {"amsr2", "era5", "grid2km_offset"} & set(s)
    grid_only = PatchDataset(tagged, modalities=("era5",), augment=True)
    batch = collate([grid_only[i] for i in range(4)])
    assert set(batch) == {"era5", "grid2km_offset", "labels", "scene", "origin"}
    with pytest.raises(ValueError):
        PatchDataset(tagged, modalities=("optical",))


@pytest.mark.parametrize("which", range(8))
def test_every_flip_and_rotation_keeps_modalities_together(tagged, which):
    dataset = PatchDataset(tagged)
    downsample, g = dataset.downsample, grid_cells(P, dataset.downsample)
    ii, jj = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    for i in range(len(dataset)):
        plain = dataset[i]
        out = dihedral(plain, which, downsample)
        t = out["sar"].shape[0]
        ids = out["sar"][-1, 0].long()  # the target step is whole: each pixel shows its old id
        assert sorted(ids.flatten().tolist()) == list(range(P * P))
        # labels, masks and every SAR step still belong to the same pixels
        assert all(torch.equal(out["labels"][c], v) for c, v in label_of(ids).items())
        for k in range(t):
            assert torch.equal(out["sar_mask"][k], mask_of(ids, k, t))
            assert (out["sar"][k] == torch.where(out["sar_mask"][k], ids.float(), 0.0)).all()
        # each pixel finds, through the new offset, the 2 km cell under its original sample pixel
        origin = plain["origin"]
        sample_r = origin[0] + (ids // P) * downsample + downsample // 2
        sample_c = origin[1] + (ids % P) * downsample + downsample // 2
        expected = (sample_r // CELL) * 64 + sample_c // CELL
        off = out["grid2km_offset"]
        rows, cols = (off[0] + ii * downsample) // CELL, (off[1] + jj * downsample) // CELL
        assert rows.min() >= 0 and cols.min() >= 0 and rows.max() < g and cols.max() < g
        assert torch.equal(out["amsr2"][3][rows, cols].long(), expected)
        assert torch.equal(out["era5"][2][rows, cols].long(), expected)
        up = upsample_cells(out["amsr2"][None], off[None], P, downsample)[0, 0]
        assert torch.equal(up.long(), expected)
        # the wind is the same vector, written in the new image axes
        where = {int(v): divmod(k, P) for k, v in enumerate(ids.flatten())}
        (r0, c0), (rs, cs), (rl, cl) = where[0], where[1], where[P]  # origin, +samples, +lines
        u, v = WIND
        assert (out["era5"][U] == u * (cs - c0) + v * (cl - c0)).all()
        assert (out["era5"][V] == u * (rs - r0) + v * (rl - r0)).all()


def test_the_eight_transforms_are_distinct():
    ids = torch.arange(P * P).reshape(P, P)
    sample = {"labels": {"SIC": ids}}
    images = {tuple(dihedral(sample, w, 1)["labels"]["SIC"].flatten().tolist()) for w in range(8)}
    assert len(images) == 8
    with pytest.raises(ValueError):
        dihedral(sample, 8, 1)


def test_augmentation_is_deterministic_given_seed_and_epoch(tagged):
    plain = PatchDataset(tagged)
    dataset = PatchDataset(tagged, augment=True, seed=1)
    drawn = [dataset.augmentation(i) for i in range(len(dataset))]
    for i in range(len(dataset)):
        a, b = dataset[i], dihedral(plain[i], drawn[i], dataset.downsample)
        assert torch.equal(a["sar"], b["sar"]) and torch.equal(a["grid2km_offset"], b["grid2km_offset"])
        assert torch.equal(a["era5"], b["era5"]) and torch.equal(a["labels"]["SOD"], b["labels"]["SOD"])
    assert drawn == [PatchDataset(tagged, augment=True, seed=1).augmentation(i) for i in range(len(dataset))]
    assert drawn != [PatchDataset(tagged, augment=True, seed=2).augmentation(i) for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert drawn != [dataset.augmentation(i) for i in range(len(dataset))]
    seen = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        seen |= {dataset.augmentation(i) for i in range(len(dataset))}
    assert seen == set(range(8))
    assert {plain.augmentation(i) for i in range(len(plain))} == {0}


def test_collate_pads_sequences(tagged):
    dataset = PatchDataset(tagged)
    by_steps = {int(dataset[i]["sar"].shape[0]): dataset[i] for i in range(len(dataset))}
    samples = [by_steps[1], by_steps[3], by_steps[2]]
    batch = collate(samples)
    assert batch["sar"].shape == (3, 3, 3, P, P) and batch["sar_mask"].shape == (3, 3, P, P)
    assert batch["step_mask"].tolist() == [[True, False, False], [True, True, True],
                                           [True, True, False]]
    for b, s in enumerate(samples):
        t = s["sar"].shape[0]
        assert torch.equal(batch["sar"][b, :t], s["sar"]) and (batch["sar"][b, t:] == 0).all()
        assert torch.equal(batch["sar_mask"][b, :t], s["sar_mask"]) and not batch["sar_mask"][b, t:].any()
        assert batch["day_of_year"][b, :t].tolist() == s["day_of_year"].tolist()
        assert (batch["day_of_year"][b, t:] == 0).all() and (batch["days_before"][b, t:] == 0).all()
    assert batch["amsr2"].shape[0] == 3 and batch["scene"].shape == (3,)
    assert batch["grid2km_offset"].shape == (3, 2) and batch["origin"].dtype == torch.int64
    assert {c: v.shape for c, v in batch["labels"].items()} == {c: (3, P, P) for c in schema.CHARTS}


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """40 patches of 4 x 4: SOD open water, except old ice in a quarter of 5 of them; 5 unlabelled."""
    p, n = 4, 40
    labels = np.zeros((n, 3, p, p), np.uint8)
    labels[:5, 1, :2, :2] = 5
    labels[-5:] = schema.CHART_FILL
    g = grid_cells(p, 1)
    arrays = {"sar": np.zeros((n, 1, 3, p, p), np.float16), "sar_mask": np.ones((n, 1, p, p), bool),
              "labels": labels, "amsr2": np.zeros((n, 14, g, g), np.float16),
              "era5": np.zeros((n, 6, g, g), np.float16), "grid2km_offset": np.zeros((n, 2), np.int32),
              "origin": np.zeros((n, 2), np.int32)}
    scene = {"region": "SouthEast", "time": "2019-03-01T10:10:10", "steps": ["20190301T101010_dmi"],
             "days_before": [0.0], "day_of_year": [60], "n_patches": n, "arrays": arrays}
    return PatchDataset(write_store(tmp_path_factory.mktemp("skewed") / "patches.zarr",
                                    {"20190301T101010_dmi": scene}, p, 1, max_steps=1))


def test_balanced_sampling_moves_shares_to_rare_classes(skewed):
    shares = {power: class_shares(skewed, ClassBalancedSampler(skewed, "SOD", power=power))
              for power in (0.0, 0.5, 1.0)}
    old = shares[0.0].loc["Old ice", "uniform"]
    assert old == pytest.approx(100 * 20 / (35 * 16))
    np.testing.assert_allclose(shares[0.0]["balanced"], shares[0.0]["uniform"], atol=1e-9)
    assert old < shares[0.5].loc["Old ice", "balanced"] < shares[1.0].loc["Old ice", "balanced"]
    # power 1: old ice (20 of 560 pixels) weighs 28, open water (540) 28/27; a patch the mean
    # of its pixels: 5 patches (4·28 + 12·28/27) / 16 = 70/9, 30 open-water ones 28/27, and the
    # 5 unlabelled ones as the lightest labelled one. Expected old-ice pixels per draw ∝
    # 5·70/9·4 = 4200/27, open water 5·70/9·12 + 30·28/27·16 = 26040/27: a share of 5/36
    expected = np.array([70 / 9] * 5 + [28 / 27] * 35)
    assert ClassBalancedSampler(skewed, "SOD", power=1.0).probabilities == pytest.approx(expected / expected.sum())
    assert shares[1.0].loc["Old ice", "balanced"] == pytest.approx(100 * 5 / 36)
    assert (shares[1.0]["balanced"].sum()) == pytest.approx(100)
    # the draws follow the weights
    sampler = ClassBalancedSampler(skewed, "SOD", power=1.0, num_samples=20000, seed=3)
    drawn = skewed.histograms[list(sampler)][:, schema.HISTOGRAM_SLICES["SOD"]].sum(axis=0)
    assert 100 * drawn[5] / drawn.sum() == pytest.approx(100 * 5 / 36, rel=0.05)
    first = list(sampler)
    assert first == list(sampler) and len(first) == len(sampler) == 20000
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_a_huge_balance_power_draws_only_patches_with_the_rarest_class(skewed):
    """The limit of ever larger powers, not an overflow: every draw holds old ice (the rarest,
    4 pixels in each of 5 equal patches), each of those patches alike."""
    p = ClassBalancedSampler(skewed, "SOD", power=1e6).probabilities
    assert np.isfinite(p).all()
    assert p == pytest.approx([0.2] * 5 + [0.0] * 35)


def test_distributed_sampler_slices_one_global_draw(skewed):
    ranks = [DistributedClassBalancedSampler(skewed, num_samples=101, seed=5, num_replicas=2, rank=r)
             for r in range(2)]
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == len(ranks[0]) == 51
    global_draw = ClassBalancedSampler(skewed, num_samples=102, seed=5).draw(102).tolist()
    assert a == global_draw[0::2] and b == global_draw[1::2]
    for r in ranks:
        r.set_epoch(1)
    a1, b1 = list(ranks[0]), list(ranks[1])
    assert a1 != a
    reference = ClassBalancedSampler(skewed, num_samples=102, seed=5)
    reference.set_epoch(1)
    assert [x for pair in zip(a1, b1) for x in pair] == reference.draw(102).tolist()
    single = DistributedClassBalancedSampler(skewed, num_samples=7)  # no process group: one rank
    assert (single.num_replicas, single.rank, len(single)) == (1, 0, 7)
    with pytest.raises(ValueError):
        DistributedClassBalancedSampler(skewed, num_replicas=2, rank=2)


def test_splits_are_disjoint_and_reproducible(tagged):
    ids = sorted(SCENES)
    train, val = split_scenes(tagged, 0.34, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == ids and len(val) == 1
    assert split_scenes(tagged, 0.34, seed=0) == (train, val) == split_scenes(ids, 0.34, seed=0)
    assert {tuple(split_scenes(ids, 0.34, seed=s)[1]) for s in range(10)} != {tuple(val)}
    region_of = {sid: spec[0] for sid, spec in SCENES.items()}
    for seed in range(5):
        train_r, val_r = split_scenes(tagged, 0.5, seed=seed, by="region")
        assert {region_of[s] for s in train_r}.isdisjoint({region_of[s] for s in val_r})
        assert sorted(train_r + val_r) == ids and val_r and train_r
        assert split_scenes(ids, 0.5, seed=seed, by="region",
                            regions=[region_of[s] for s in ids]) == (train_r, val_r)
    val_ds = PatchDataset(tagged, scenes=val)
    assert {val_ds.scene_ids[i] for i in val_ds.scene_of} == set(val)  # no training label in it
    with pytest.raises(ValueError):
        split_scenes(ids, by="region")
    with pytest.raises(ValueError):
        PatchDataset(tagged, scenes=["nowhere"])


# --- stores extracted from synthetic scenes -------------------------------------------------------

# the conftest store's settings, and a one-scene store at an odd downsample with overlapping patches
STORE_SETTINGS = {"ds2": dict(patch=16, downsample=2, stride=16, min_labelled=0.05),
                  "ds3": dict(patch=16, downsample=3, stride=12, min_labelled=0.05)}
SAR_READ = schema.SAR_GRID_VARIABLES[:3]  # what the store keeps: HH, HV, incidence angle


@pytest.fixture(scope="module", params=sorted(STORE_SETTINGS))
def extracted(request, patch_store, synthetic_dir, tmp_path_factory):
    """(store, its settings): the conftest store, or one DMI scene extracted at downsample 3."""
    settings = STORE_SETTINGS[request.param]
    if request.param == "ds2":
        return patch_store, settings
    path = tmp_path_factory.mktemp("ds3") / "patches.zarr"
    cfg = patches.PatchConfig(max_steps=3, window_days=30, min_overlap=0.1, **settings)
    target = sorted(synthetic_dir.glob("*_dmi_prep.nc"))[-1].name
    result = patches.extract_store(synthetic_dir, path, cfg, scene=target, progress=False)
    assert result["written"] == [target[:19]] and not result["failed"]
    return path, settings


def read_scene_file(path) -> dict[str, np.ndarray]:
    """The variables a patch is cut from, read straight from the netCDF file (no library code)."""
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as ds:
        return {name: ds[name].values for name in
                (*schema.CHARTS, *SAR_READ, *schema.AMSR2_CHANNELS, *schema.ERA5_VARIABLES)}


def store_pixels(scene: dict[str, np.ndarray], d: int) -> dict[str, np.ndarray]:
    """The target on the store grid by hand: the d x d blocks of 80 m pixels (ragged edge dropped);
    a block is valid when at least half its pixels have SAR (HH and HV not 0); SAR is the mean of
    its valid pixels, labels its pixel (d // 2, d // 2); 0 and 255 where the block is not valid."""
    hb, wb = scene["SIC"].shape[0] // d, scene["SIC"].shape[1] // d
    valid = (scene["nersc_sar_primary"] != 0) & (scene["nersc_sar_secondary"] != 0)
    count = valid[:hb * d, :wb * d].reshape(hb, d, wb, d).sum(axis=(1, 3))
    ok = 2 * count >= d * d
    sar = []
    for name in SAR_READ:
        values = np.where(valid, scene[name], 0).astype(np.float64)[:hb * d, :wb * d]
        sar.append(np.where(ok, values.reshape(hb, d, wb, d).sum(axis=(1, 3)) / np.maximum(count, 1), 0))
    labels = [np.where(ok, scene[c][d // 2::d, d // 2::d][:hb, :wb], 255) for c in schema.CHARTS]
    return {"sar": np.stack(sar), "mask": ok, "labels": np.stack(labels)}


def window(a: np.ndarray, r: int, c: int, p: int, fill) -> np.ndarray:
    """a[..., r:r + p, c:c + p], padded with ``fill`` to p x p past the end of ``a``."""
    cut = a[..., r:r + p, c:c + p]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, p - cut.shape[-2]), (0, p - cut.shape[-1])]
    return np.pad(cut, pad, constant_values=fill)


def starts(n: int, p: int, stride: int) -> list[int]:
    """Patch starts along an axis of n store pixels: every ``stride``, the last flush with the end."""
    return sorted({*range(0, max(n - p, 0) + 1, stride), max(n - p, 0)})


def test_extracted_samples_are_the_scene_file_cut_by_hand(extracted, synthetic_dir):
    store, settings = extracted
    p, d = settings["patch"], settings["downsample"]
    data = PatchDataset(store)
    root = zarr.open_group(store, mode="r")
    scenes = {}  # scene id -> (its file's arrays, its store grid by hand, the patch starts seen)
    for i in range(len(data)):
        sample = data[i]
        sid = data.scene_ids[int(sample["scene"])]
        if sid not in scenes:
            scene = read_scene_file(synthetic_dir / f"{sid}_prep.nc")
            scenes[sid] = (scene, store_pixels(scene, d), set())
        scene, grid, seen = scenes[sid]
        r0, c0 = sample["origin"].tolist()
        assert r0 % d == 0 and c0 % d == 0
        r, c = r0 // d, c0 // d
        seen.add((r, c))
        labels = window(grid["labels"], r, c, p, 255)
        for k, chart in enumerate(schema.CHARTS):
            np.testing.assert_array_equal(sample["labels"][chart].numpy(), labels[k], err_msg=chart)
        np.testing.assert_array_equal(sample["sar_mask"][-1].numpy(), window(grid["mask"], r, c, p, False))
        np.testing.assert_allclose(sample["sar"][-1].numpy(), window(grid["sar"], r, c, p, 0),
                                   rtol=1e-3, atol=1e-3)  # float16 in the store
        counts = [np.bincount(x[x != 255], minlength=schema.N_CLASSES[ch])
                  for x, ch in zip(labels, schema.CHARTS)]
        np.testing.assert_array_equal(data.histograms[i], np.concatenate(counts))
        # 2 km cells: the block from the cell under the origin (the last cell repeated past the
        # grid's end); the offset reaches patch pixel 0's sample pixel; the block covers the patch
        offset = sample["grid2km_offset"].numpy()
        np.testing.assert_array_equal(offset, np.array([r0, c0]) % CELL + d // 2)
        for key, names in (("amsr2", schema.AMSR2_CHANNELS), ("era5", schema.ERA5_VARIABLES)):
            full = np.stack([scene[name] for name in names])
            g = sample[key].shape[-1]
            assert g * CELL >= offset.max() + (p - 1) * d + 1
            rows = np.minimum(r0 // CELL + np.arange(g), full.shape[1] - 1)
            cols = np.minimum(c0 // CELL + np.arange(g), full.shape[2] - 1)
            expected = full[:, rows[:, None], cols[None, :]].astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(sample[key].numpy(), expected, err_msg=key)
        # dates from the file names of the sequence's scenes
        steps = root[f"scenes/{sid}"].attrs["steps"]
        times = [dt.datetime.strptime(step[:15], "%Y%m%dT%H%M%S") for step in steps]
        assert steps[-1] == sid and sample["sar"].shape[:2] == (len(steps), len(SAR_READ))
        np.testing.assert_allclose(sample["days_before"].numpy(),
                                   [(times[-1] - t) / dt.timedelta(days=1) for t in times], atol=1e-4)
        assert sample["day_of_year"].tolist() == [t.timetuple().tm_yday for t in times]
    # every patch start of a scene is stored unless under min_labelled of it has an SIC label
    for sid, (scene, grid, seen) in scenes.items():
        hb, wb = grid["mask"].shape
        for r in starts(hb, p, settings["stride"]):
            for c in starts(wb, p, settings["stride"]):
                labelled = (window(grid["labels"][0], r, c, p, 255) != 255).mean()
                assert ((r, c) in seen) == (labelled >= settings["min_labelled"]), (sid, r, c)
    assert len(data) > 10 and sorted(scenes) == data.scene_ids


def test_extracted_cells_follow_their_pixels_through_augmentation(patch_store, synthetic_dir):
    """After any flip/rotation, each pixel's 2 km cell (by the rule) is the scene's cell under it."""
    plain, augmented = PatchDataset(patch_store), PatchDataset(patch_store, augment=True, seed=4)
    downsample, p = plain.downsample, 16
    grids = {}
    for i in range(len(plain)):
        s, a, which = plain[i], augmented[i], augmented.augmentation(i)
        sid = plain.scene_ids[int(s["scene"])]
        if sid not in grids:
            scene = read_scene_file(synthetic_dir / f"{sid}_prep.nc")
            grids[sid] = (torch.from_numpy(np.stack([scene[n] for n in schema.AMSR2_CHANNELS])),
                          scene["SIC"].shape)
        full, shape = grids[sid]
        rr = s["origin"][0] + torch.arange(p) * downsample + downsample // 2  # sample pixels in the scene
        cc = s["origin"][1] + torch.arange(p) * downsample + downsample // 2
        under = full[:, (rr // CELL).clamp(max=full.shape[1] - 1)[:, None],
                     (cc // CELL).clamp(max=full.shape[2] - 1)[None, :]].half().float()
        inside = (rr < shape[0])[:, None] & (cc < shape[1])[None, :]
        moved = dihedral({"labels": {"under": under, "inside": inside}}, which, downsample)["labels"]
        got = upsample_cells(a["amsr2"][None], a["grid2km_offset"][None], p, downsample)[0]
        assert torch.equal(got[:, moved["inside"]], moved["under"][:, moved["inside"]])
        assert torch.equal(a["labels"]["SOD"], dihedral(s, which, downsample)["labels"]["SOD"])
    assert len(plain) > 10 and len({augmented.augmentation(i) for i in range(len(plain))}) == 8


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_with_workers(patch_store, workers):
    dataset = PatchDataset(patch_store, augment=True)
    dataset[0]  # handles opened in this process must not leak into the workers

    def run(num_workers):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=4, num_workers=num_workers, collate_fn=collate,
            sampler=ClassBalancedSampler(dataset, num_samples=12, seed=1))
        return list(loader)

    batches = run(workers)
    assert len(batches) == 3
    b = batches[0]
    assert b["sar"].shape[:3] == (4, b["step_mask"].shape[1], 3) and b["labels"]["SIC"].shape[0] == 4
    assert b["step_mask"][:, -1].any() and b["step_mask"][:, 0].all()
    if workers:  # the same batches as in the main process: augmentation does not depend on workers
        for x, y in zip(batches, run(0)):
            assert torch.equal(x["sar"], y["sar"]) and torch.equal(x["era5"], y["era5"])
    # what spawn/forkserver workers receive: a copy without this process's handles, reading the same
    copy = pickle.loads(pickle.dumps(dataset))
    assert not copy._scenes and torch.equal(copy[0]["amsr2"], dataset[0]["amsr2"])


def test_a_scene_whose_patches_all_lie_at_the_origin_reads_back(skewed):
    """Its ``origin`` array is all zeros, the fill value: the shard is written all the same, not
    left out (a missing shard would be refused as lost)."""
    sample = skewed[0]
    assert sample["labels"]["SOD"].shape == (4, 4)
