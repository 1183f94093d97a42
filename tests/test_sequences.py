import dataclasses
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

from seaice_lib import schema, synthetic
from seaice_lib.data.scene import Scene
from seaice_lib.data.sequences import (
    OrientationWarning,
    SceneInfo,
    build_sequences,
    co_register,
    overlap,
    sample_grid,
    zone_agreement,
)


@pytest.fixture(scope="module")
def infos(rtt_paths):
    return [SceneInfo.read(p) for p in rtt_paths]


def test_sequences_hold_earlier_scenes_of_the_region(infos):
    seqs = build_sequences(infos, window_days=30, min_overlap=0.1, max_steps=4)
    assert len(seqs) == len(infos)
    for seq in seqs:
        times = [s.time for s in seq.steps]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert {s.region for s in seq.steps} == {seq.target.region}
        assert seq.days_before[-1] == 0 and np.all(np.diff(seq.days_before) < 0)
        assert np.all((seq.day_of_year >= 1) & (seq.day_of_year <= 366))
    lengths = sorted(len(s) for s in seqs)
    assert lengths == [1, 1, 2, 2, 3, 3]  # two regions of three acquisitions each


def test_window_overlap_and_length_limits(infos):
    # every scene still targets a sequence of its own, of one step
    assert [len(s) for s in build_sequences(infos, max_steps=1)] == [1] * 6
    assert [len(s) for s in build_sequences(infos, window_days=30, min_overlap=1.01)] == [1] * 6
    assert [len(s) for s in build_sequences(infos, window_days=0.01)] == [1] * 6
    two = build_sequences(infos, window_days=30, min_overlap=0.1, max_steps=2)
    longest = max(build_sequences(infos, window_days=30, min_overlap=0.1), key=len)
    assert max(len(s) for s in two) == 2
    pick = next(s for s in two if s.target.scene_id == longest.target.scene_id)
    assert pick.steps[0].scene_id == longest.steps[-2].scene_id  # the most recent earlier scene
    with pytest.raises(ValueError):
        build_sequences(infos, max_steps=0)


def test_overlap_of_a_scene_with_itself_is_complete(infos):
    assert overlap(infos[0], infos[0]) == 1.0
    other_region = next(s for s in infos if s.region != infos[0].region)
    assert overlap(infos[0], other_region) == 0.0


@pytest.mark.parametrize("downsample, method", [(1, "nearest"), (2, "nearest"), (2, "bilinear")])
def test_co_registration_puts_the_coast_on_the_same_target_pixels(infos, downsample, method):
    """Land and distance-to-land zones are fixed on the earth: co-registered by the store's path,
    every step must show the same zone at the same target pixel (up to zone borders, which block
    means blur at downsample 2); an error of two 80 m pixels would not."""
    seq = max(build_sequences(infos, window_days=30, min_overlap=0.1), key=len)
    assert len(seq) == 3
    grid = co_register(seq, downsample, ("distance_map",), method)
    data, masks = grid.sar, grid.sar_mask
    mean, std = schema.NORM_STATS["distance_map"]
    zone = np.round(data[:, 0] * std + mean)
    with Scene(seq.target.path) as target:
        valid, zones = target.sar_valid(), target.read("distance_map")
    if downsample == 1:  # the target itself is copied
        assert np.array_equal(masks[-1], valid)
        np.testing.assert_array_equal(data[-1, 0][masks[-1]], zones[masks[-1]])
    for t in range(len(seq) - 1):
        both = masks[t] & masks[-1]
        assert both.mean() > 0.1
        assert len(np.unique(zone[-1][both])) >= 3  # distance to the coast varies in view
        same = (zone[t][both] == zone[-1][both]).mean()
        shifted = (np.roll(zone[t], 2 // downsample, axis=1)[both] == zone[-1][both]).mean()
        assert same > (0.95 if downsample == 1 else 0.9) and shifted < same - 0.05, (same, shifted)


def test_uncovered_positions_are_masked_and_zero():
    values = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5) + 1
    valid = np.ones((4, 5), bool)
    valid[1, 1] = False
    rows = np.array([[-2.0, 0.2], [1.0, 3.4], [5.0, 2.0]])
    cols = np.array([[1.0, 0.0], [1.0, 4.4], [2.0, 2.0]])
    out, mask = sample_grid(values, valid, rows, cols, "nearest")
    # outside the grid, and on the pixel without data: masked and 0; elsewhere the nearest value
    assert mask.tolist() == [[False, True], [False, True], [False, True]]
    assert np.all(out[:, ~mask] == 0)
    np.testing.assert_array_equal(out[:, 0, 1], values[:, 0, 0])
    np.testing.assert_array_equal(out[:, 1, 1], values[:, 3, 4])
    np.testing.assert_array_equal(out[:, 2, 1], values[:, 2, 2])
    bilinear, mask_b = sample_grid(values, valid, np.array([[0.5]]), np.array([[2.5]]), "bilinear")
    assert mask_b.all() and bilinear[0, 0, 0] == np.mean(values[0, 0:2, 2:4])
    _, mask_b = sample_grid(values, valid, np.array([[0.5]]), np.array([[0.5]]), "bilinear")
    assert not mask_b.any()  # a neighbour without data
    with pytest.raises(ValueError):
        sample_grid(values, valid, rows, cols, method="cubic")


def _transpose_tiepoints(src, dst, shift_deg: float = 0.0):
    """Copy a scene with its tie-point arrays written the other way round (line-major under the
    same dim names), its longitudes optionally shifted by ``shift_deg``."""
    ds = xr.open_dataset(src, mask_and_scale=False).load()
    ds = ds.assign(sar_grid2d_latitude=(schema.TIEPOINT_DIMS, ds.sar_grid2d_latitude.values.T),
                   sar_grid2d_longitude=(schema.TIEPOINT_DIMS, ds.sar_grid2d_longitude.values.T + shift_deg))
    ds.to_netcdf(dst)
    ds.close()
    return dst


@pytest.fixture(scope="module")
def square_dir(tmp_path_factory):
    """One region of three square scenes: too square for the geometry to tell the orientation."""
    out = tmp_path_factory.mktemp("square")
    synthetic.generate(out, regions=1, scenes_per_region=3, size=(120, 120), seed=5, progress=False)
    return out


@pytest.mark.parametrize("square", [True, False])
def test_a_step_with_sideways_tie_points_is_read_the_right_way(square, square_dir, rtt_paths, tmp_path):
    """Tie points written line-major under the (samples, lines) dim names: in a square scene only
    the land zones can tell; the step is then read the other way round, with a warning naming it,
    and co-registration puts its coast on the target's."""
    paths = sorted(square_dir.glob("*_prep.nc")) if square else \
        [p for p in rtt_paths if Scene(p).region == Scene(rtt_paths[0]).region]
    folder = tmp_path / "scenes"
    folder.mkdir()
    for p in paths[1:]:
        shutil.copy(p, folder / p.name)
    _transpose_tiepoints(paths[0], folder / paths[0].name)
    infos = [SceneInfo.read(p) for p in sorted(folder.glob("*_prep.nc"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seq = max(build_sequences(infos, window_days=30, min_overlap=0.1), key=len)
    notes = [str(w.message) for w in caught if issubclass(w.category, OrientationWarning)]
    assert len(seq) == 3 and seq.steps[0].scene_id == Scene(paths[0]).scene_id
    if square:  # the dim names were trusted on reading; the land zones overrule them
        assert len(notes) >= 1 and paths[0].name in notes[0] and "other way round" in notes[0]
    else:  # the geometry already decided right: nothing to say
        assert notes == []
    assert zone_agreement(seq.target, seq.steps[0]) > 0.7
    grid = co_register(seq, 1, ("distance_map",), "nearest")
    mean, std = schema.NORM_STATS["distance_map"]
    zone = np.round(grid.sar[:, 0] * std + mean)
    both = grid.sar_mask[0] & grid.sar_mask[-1]
    assert (zone[0][both] == zone[-1][both]).mean() > 0.95


def test_land_zones_that_are_not_finite_are_unknown_not_a_disagreement(infos):
    """A scene agrees with itself (κ 1) where its zones are known, a NaN block or not."""
    target = infos[3]
    zones = target.zones.copy()
    zones[: zones.shape[0] // 2] = np.nan
    assert zone_agreement(dataclasses.replace(target, zones=zones), target) == 1.0
    zones[:] = np.nan
    assert zone_agreement(dataclasses.replace(target, zones=zones), target) is None  # nothing known: cannot tell


def test_a_step_whose_land_zones_agree_in_neither_orientation_is_dropped(rtt_paths, tmp_path):
    """Geolocation off by a fraction of the scene: neither orientation puts the coast on the
    target's, so the step leaves the sequence with a warning saying why."""
    region = Scene(rtt_paths[0]).region
    paths = [p for p in rtt_paths if Scene(p).region == region]
    folder = tmp_path / "scenes"
    folder.mkdir()
    for p in paths[1:]:
        shutil.copy(p, folder / p.name)
    with xr.open_dataset(paths[0], mask_and_scale=False) as ds:
        ds = ds.load()
    spacing_deg = 80 * 40 / 111e3 / np.cos(np.deg2rad(float(ds.sar_grid2d_latitude.mean())))  # ~40 pixels
    ds.assign(sar_grid2d_longitude=ds.sar_grid2d_longitude + spacing_deg).to_netcdf(folder / paths[0].name)
    infos = [SceneInfo.read(p) for p in sorted(folder.glob("*_prep.nc"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqs = build_sequences(infos, window_days=30, min_overlap=0.1)
    notes = [str(w.message) for w in caught if issubclass(w.category, OrientationWarning)]
    assert notes and all(paths[0].name in n and "dropped" in n and "neither" in n for n in notes)
    assert all(s.scene_id != Scene(paths[0]).scene_id for seq in seqs for s in seq.steps[:-1])
    assert max(len(s) for s in seqs) == 2  # the two intact scenes still pair up
