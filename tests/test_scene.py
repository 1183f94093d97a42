import re

import numpy as np
import pytest
import xarray as xr

from seaice_lib import schema
from seaice_lib.data.geo import TiePointGrid, footprint_problem, lonlat_to_xy, tiepoints_are_line_major, xy_to_lonlat
from seaice_lib.data.scene import Scene, SceneError, to_physical, to_standard, validation_problems

from .conftest import TINY_SIZE


def test_synthetic_rtt_files_hold_the_whole_schema(rtt_paths):
    assert len(rtt_paths) == 6
    for path in rtt_paths:
        with Scene(path) as scene:
            assert scene.kind == "rtt"
            for name, spec in schema.RTT_SCHEMA.variables.items():
                assert scene.ds[name].dims == spec.dims, name
                assert scene.ds[name].dtype == np.dtype(spec.dtype), name
            assert scene.shape == TINY_SIZE
            assert scene.ds.attrs["pixel_spacing"] == 80
            assert scene.ice_service in ("dmi", "cis")
            assert scene.name == f"{scene.scene_id}_prep.nc"


def test_raw_files_are_recognised_and_valid(raw_paths):
    with Scene(raw_paths[0]) as scene:
        assert scene.kind == "raw"
        assert scene.pixel_spacing == 40 and scene.cell == 50
        assert scene.shape == (2 * TINY_SIZE[0], 2 * TINY_SIZE[1])
        assert scene.scene_id == scene.original_name[17:32] + "_" + scene.original_name[77:80]


def _rewrite(src, dst, change):
    ds = xr.open_dataset(src, mask_and_scale=False).load()
    change(ds).to_netcdf(dst)
    ds.close()
    return dst


@pytest.mark.parametrize("change, variable, words", [
    (lambda ds: ds.drop_vars("nersc_sar_secondary"), "nersc_sar_secondary", "missing variable"),
    (lambda ds: ds.drop_vars("SOD"), None, "has charts"),
    (lambda ds: ds.assign(SIC=ds.SIC.astype("float64")), "SIC", "dtype float64"),
    (lambda ds: ds.assign(t2m=ds.t2m.rename({"2km_grid_lines": "y"})), "t2m", "dims"),
    (lambda ds: ds.isel(**{"2km_grid_lines": slice(0, 2)}), "2km_grid_lines", "do not cover"),
])
def test_bad_files_name_file_variable_and_problem(rtt_paths, tmp_path, change, variable, words):
    bad = _rewrite(rtt_paths[0], tmp_path / "bad_prep.nc", change)
    with pytest.raises(SceneError) as err:
        Scene(bad)
    assert str(bad) in str(err.value)
    assert words in str(err.value)
    assert err.value.variable == variable


def test_test_scenes_without_charts_are_valid(rtt_paths, tmp_path):
    path = _rewrite(rtt_paths[0], tmp_path / "test_prep.nc", lambda ds: ds.drop_vars(schema.CHARTS))
    with Scene(path) as scene:
        assert not scene.has_charts
        with pytest.raises(SceneError, match="no ice charts"):
            scene.charts()


def test_truncated_and_foreign_files_raise_scene_error(rtt_paths, tmp_path):
    data = rtt_paths[0].read_bytes()
    truncated = tmp_path / "truncated_prep.nc"
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes_prep.nc"
    text.write_text("not a netCDF file")
    for path in (truncated, text, tmp_path / "missing_prep.nc"):
        with pytest.raises(SceneError) as err:
            Scene(path).read("nersc_sar_primary")
        assert str(path) in str(err.value)


def test_validation_problems_lists_everything(rtt_paths):
    ds = xr.open_dataset(rtt_paths[0], mask_and_scale=False)
    broken = ds.drop_vars(["t2m", "tclw"]).assign(SOD=ds.SOD.astype("int16"))
    names = {v for v, _ in validation_problems(broken, "rtt")}
    assert {"t2m", "tclw", "SOD"} <= names
    ds.close()


def test_scaling_round_trip():
    x = np.array([-30.0, -14.5083, 0.0], np.float32)
    z = to_standard("nersc_sar_primary", x)
    assert z[1] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(z, (x + 14.5083) / 5.65975, rtol=1e-6)  # the toolbox's HH mean and std
    np.testing.assert_allclose(to_physical("nersc_sar_primary", z), x, rtol=1e-6, atol=1e-5)


def test_read_units_and_masks(rtt_paths):
    with Scene(rtt_paths[0]) as scene:
        z = scene.read("nersc_sar_primary")
        db = scene.read("nersc_sar_primary", units="physical")
        valid = scene.sar_valid()
        assert not valid.all() and valid.mean() > 0.5  # the synthetic swaths have no-data borders
        assert np.all(z[~valid] == 0) and np.all(np.isnan(db[~valid]))
        # x = z * std + mean with the toolbox's HH statistics (mean -14.5083 dB, std 5.65975 dB)
        np.testing.assert_allclose(db[valid], z[valid] * 5.65975 - 14.5083, rtol=1e-6, atol=1e-4)
        assert -40 < np.nanmedian(db) < 0  # dB
        sar, mask = scene.read_sar(rows=slice(10, 30), cols=slice(5, 45))
        assert sar.shape == (3, 20, 40) and mask.shape == (20, 40)
        charts = scene.charts()
        assert np.all(charts["SIC"][~valid] == 255)  # no label where SAR has no data
        with pytest.raises(KeyError, match="read_grid2km"):
            scene.read("t2m")


def test_rtt_physical_values_are_2x2_means_of_raw(synthetic_dir, raw_paths):
    raw = Scene(raw_paths[0])
    rtt = Scene(synthetic_dir / schema.rtt_name_from_raw(raw.name))
    hh_raw = raw.read("nersc_sar_primary", units="physical")
    expected = hh_raw.reshape(rtt.shape[0], 2, rtt.shape[1], 2).mean(axis=(1, 3))
    got = rtt.read("nersc_sar_primary", units="physical")
    ok = np.isfinite(expected)
    np.testing.assert_allclose(got[ok], expected[ok], atol=1e-3)
    assert np.array_equal(np.isnan(got), ~ok)


def test_grid2km_window_offsets_are_exact(rtt_paths):
    with Scene(rtt_paths[1]) as scene:
        assert scene.cell == 25
        n2 = scene.grid2km_shape
        assert n2 == (TINY_SIZE[0] // 25, TINY_SIZE[1] // 25)  # one cell short of the SAR grid
        full, _ = scene.read_grid2km(["t2m"])
        rows, cols = slice(37, 108), slice(3, 131)
        block, win = scene.read_grid2km(["t2m"], rows, cols)
        assert win.cells_rows == slice(1, n2[0]) and win.offset == (37 - 25, 3)
        assert block.shape == (1, n2[0] - 1, n2[1])
        up, _ = scene.read_grid2km(["t2m"], rows, cols, upsample=True)
        assert up.shape == (1, 71, 128)
        i, j = np.meshgrid(np.arange(37, 108), np.arange(3, 131), indexing="ij")
        expected = full[0][np.minimum(i // 25, n2[0] - 1), np.minimum(j // 25, n2[1] - 1)]
        np.testing.assert_array_equal(up[0], expected)
        covered = win.covered()
        # the grid ends at line 100 and sample 125
        assert covered[: 100 - 37, : 125 - 3].all()
        assert not covered[100 - 37:].any() and not covered[:, 125 - 3:].any()


def test_grid2km_window_inside_one_cell(rtt_paths):
    with Scene(rtt_paths[0]) as scene:
        block, win = scene.read_grid2km(["btemp_36_5h", "u10m_rotated"], slice(26, 30), slice(51, 52))
        assert block.shape == (2, 1, 1) and win.offset == (1, 1)
        phys, _ = scene.read_grid2km(["btemp_36_5h"], slice(26, 30), slice(51, 52), units="physical")
        assert 100 < phys[0, 0, 0] < 300  # kelvin


def test_tiepoint_spline_is_exact_for_projected_affine_geometry():
    lines, samples = np.linspace(0, 999, 21), np.linspace(0, 1299, 21)
    x0, y0 = lonlat_to_xy(-20.0, 72.0)
    a = np.deg2rad(20)

    def xy(l_, s_):
        return (x0 + 80 * (s_ * np.cos(a) + l_ * np.sin(a)), y0 + 80 * (s_ * np.sin(a) - l_ * np.cos(a)))

    gl, gs = np.meshgrid(lines, samples, indexing="ij")
    lon, lat = xy_to_lonlat(*xy(gl, gs))
    tp = TiePointGrid(lines, samples, lat, lon)
    ql, qs = np.array([3.3, 500.0, 998.0]), np.array([1.0, 777.7, 1200.2])
    x, y = tp.points_xy(ql, qs)
    ex, ey = xy(ql, qs)
    assert np.max(np.hypot(x - ex, y - ey)) < 0.01  # metres
    glon, glat = tp.pixel_lonlat(lines[:3], samples[:2])
    np.testing.assert_allclose(glat, lat[:3, :2], atol=1e-9)


@pytest.mark.parametrize("lat0", [50.0, 70.0, 89.0])
def test_an_honest_footprint_passes_and_a_spacing_that_lies_does_not(lat0):
    """Tie points laid out on the ellipsoid (pyproj's geodesic, independent of the projection)
    every 100 pixels of 80 m: 80 m passes from 50 N to the pole, 40 m and 160 m do not."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    n, step = 11, 100
    lat, lon = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):  # lines go south, samples east
        lon_i, lat_i, _ = geod.fwd(-30.0, lat0, 180.0, i * step * 80.0)
        for j in range(n):
            lon[i, j], lat[i, j], _ = geod.fwd(lon_i, lat_i, 90.0, j * step * 80.0)
    grid = TiePointGrid(np.arange(n) * step, np.arange(n) * step, lat, lon)
    assert footprint_problem(grid, 80.0) is None
    for lie in (40.0, 160.0):
        assert "pixel_spacing says" in footprint_problem(grid, lie)


def test_tie_points_of_a_scene_twice_the_size_are_refused(rtt_paths, tmp_path):
    """An even grid, in range: only its footprint against pixel_spacing tells it is not this scene's."""
    path = tmp_path / rtt_paths[0].name
    with xr.open_dataset(rtt_paths[0]) as ds:
        ds = ds.load()
    x, y = lonlat_to_xy(ds["sar_grid2d_longitude"].values, ds["sar_grid2d_latitude"].values)
    lon, lat = xy_to_lonlat(2 * x - x.mean(), 2 * y - y.mean())  # the same centre, twice the extent
    ds["sar_grid2d_longitude"].values, ds["sar_grid2d_latitude"].values = lon, lat
    ds.to_netcdf(path)
    with Scene(path) as scene, pytest.raises(SceneError, match=r"sar_grid2d_latitude.* lie 160 m apart per pixel .*"
                                                                 r"pixel_spacing says 80 m"):
        scene.tiepoints


def test_tiepoint_orientation_is_detected(rtt_paths, tmp_path):
    with Scene(rtt_paths[0]) as scene:
        lat = scene.ds["sar_grid2d_latitude"].values  # (samples, lines) as the dim names say
        lon = scene.ds["sar_grid2d_longitude"].values
        assert tiepoints_are_line_major(lat, lon, scene.shape) is False
        assert tiepoints_are_line_major(lat.T, lon.T, scene.shape) is True
        assert tiepoints_are_line_major(lat, lon, (500, 501)) is None  # too square to tell
        auto = scene.tiepoints
    flipped = _rewrite(rtt_paths[0], tmp_path / "lm_prep.nc", lambda ds: ds.assign(
        sar_grid2d_latitude=(schema.TIEPOINT_DIMS, ds.sar_grid2d_latitude.values.T),
        sar_grid2d_longitude=(schema.TIEPOINT_DIMS, ds.sar_grid2d_longitude.values.T)))
    with Scene(flipped) as scene:  # line-major arrays under the same dim names: still right
        np.testing.assert_allclose(scene.tiepoints.lat, auto.lat)
        with pytest.raises(ValueError):
            Scene(flipped, tiepoint_order="sideways")


def test_rtt_and_raw_geolocation_agree(synthetic_dir, raw_paths):
    raw = Scene(raw_paths[2])
    rtt = Scene(synthetic_dir / schema.rtt_name_from_raw(raw.name))
    lines, samples = np.array([0, 40, 109]), np.array([0, 77, 134])
    lon, lat = rtt.tiepoints.pixel_lonlat(lines, samples)
    rlon, rlat = raw.tiepoints.pixel_lonlat(2 * lines + 0.5, 2 * samples + 0.5)  # RTT pixel centres
    x, y = lonlat_to_xy(lon, lat)
    rx, ry = lonlat_to_xy(rlon, rlat)
    assert np.max(np.hypot(x - rx, y - ry)) < 1.0  # metres
    # neighbouring pixels are 80 m apart on the ground
    lon2, lat2 = rtt.lonlat(rows=slice(50, 52), cols=slice(60, 62))
    gx, gy = lonlat_to_xy(lon2, lat2)
    assert np.hypot(gx[0, 1] - gx[0, 0], gy[0, 1] - gy[0, 0]) == pytest.approx(80, abs=0.01)
    assert np.hypot(gx[1, 0] - gx[0, 0], gy[1, 0] - gy[0, 0]) == pytest.approx(80, abs=0.01)


def test_footprint_is_a_closed_ring_around_the_scene(rtt_paths):
    with Scene(rtt_paths[0]) as scene:
        ring = scene.tiepoints.footprint_xy()
    assert ring.shape == (81, 2) and np.array_equal(ring[0], ring[-1])
    x, y = ring[:, 0], ring[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    expected = (TINY_SIZE[0] - 1) * (TINY_SIZE[1] - 1) * 80.0**2
    assert area == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("edit, named", [
    (lambda ds: ds.attrs.update(flip=2), "flip = 2: must be 0 or 1"),
    (lambda ds: ds["SOD"].attrs.update(chart_fill_value=2), "SOD: chart_fill_value 2: the dataset's no-label value is 255"),
])
def test_attributes_that_would_change_what_the_data_means_are_checked(edit, named, rtt_paths, tmp_path):
    path = tmp_path / rtt_paths[0].name
    with xr.open_dataset(rtt_paths[0]) as ds:
        ds = ds.load()
    edit(ds)
    ds.to_netcdf(path)
    with pytest.raises(SceneError, match=re.escape(named)):
        Scene(path)
