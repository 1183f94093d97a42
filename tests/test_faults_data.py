"""Bad data in the pipeline (issue 12, rows 1, 2, 3 and 6): damaged files, impossible names, values
out of range and silent losses each end in one error naming the file (or store), the variable (or
array) and the problem; batches (``prepare``, the patch store) skip the bad item, report it and go
on; nothing reads back as zeros or lands in another scene's sequence.

Every case starts from the tiny synthetic set of ``conftest.py`` copied into ``tmp_path``.
"""

import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

from seaice_lib import schema
from seaice_lib.atomic import LOCK_NAME
from seaice_lib.cli import main as seaice
from seaice_lib.data import patches, prepare
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.scene import Scene, SceneError

# where 2 KB are zeroed, as shares of the file: the first kilobytes hold HDF5's root metadata, where
# zeros make the HDF5 library itself loop forever on open (out of reach of Python); past them every
# zeroed block lands in data, chunk indexes or variable headers
DAMAGE_AT = np.linspace(0.1, 0.95, 12)


def _damaged(src, dst, share, size=2048):
    """A copy of ``src`` with ``size`` bytes zeroed from ``share`` of its length."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * share)
    data[start:start + size] = bytes(size)
    dst.write_bytes(bytes(data))
    return dst


def _rewrite(src, dst, change):
    """A copy of ``src`` with ``change(ds)`` applied (``ds`` as stored, no masking or scaling)."""
    with xr.open_dataset(src, mask_and_scale=False) as ds:
        changed = change(ds.load())
    changed.to_netcdf(dst)
    return dst


def _status(argv) -> int:
    """``seaice ARGV`` in this process: its exit status (returned or raised)."""
    try:
        return seaice([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _cis_folder(rtt_paths, tmp_path) -> tuple:
    """The three CIS scenes of the tiny set (one region, each within a day of the next), oldest
    first, copied into a folder of their own: the folder and the copies."""
    cis = [p for p in rtt_paths if "_cis_" in p.name]
    assert len(cis) == 3
    folder = tmp_path / "scenes"
    folder.mkdir()
    copies = [folder / p.name for p in cis]
    for src, dst in zip(cis, copies):
        shutil.copyfile(src, dst)
    return folder, copies


def _extract(folder, store, patch_store):
    """Extract ``folder`` into ``store`` with the session store's settings."""
    return patches.extract_store(folder, store, patches.config_from_store(patch_store), progress=False)


def _steps(store) -> dict[str, list[str]]:
    """Scene id -> the scene ids of its stored sequence, for every scene of the store's index."""
    root = zarr.open_group(store, mode="r")
    return {sid: list(root[f"scenes/{sid}"].attrs["steps"]) for sid in root["index"].attrs["scene_ids"]}


# ---- row 1: damaged data inside a file that opens ---------------------------------------------------

@pytest.mark.parametrize("which", ["rtt", "raw"])
def test_damaged_data_ends_in_one_error_naming_the_file_and_the_variable(which, rtt_paths, raw_paths,
                                                                       tmp_path):
    src = (rtt_paths if which == "rtt" else raw_paths)[1]
    with xr.open_dataset(src, mask_and_scale=False) as ds:  # the oracle: the file before damage
        truth = {name: ds[name].values for name in ds.variables}
    with Scene(src) as good:
        api_truth = {"sar": good.read_sar(), "charts": good.charts(), "tiepoints": good.tiepoints.lat,
                     "grid2km": good.read_grid2km(schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES)[0]}
    read_errors = 0
    for k, share in enumerate(DAMAGE_AT):
        path = _damaged(src, tmp_path / f"{k}_{src.name}", share)
        try:
            scene = Scene(path)
        except SceneError as err:  # damaged metadata: the file does not open
            assert str(path) in str(err)
            continue
        with scene:
            for name, expected in truth.items():
                try:
                    got = scene.values(name)
                except SceneError as err:
                    assert str(path) in str(err) and err.variable == name and "damaged" in str(err)
                    read_errors += 1
                    continue
                assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f"), (share, name)
            readers = {"sar": scene.read_sar, "charts": scene.charts,
                       "tiepoints": lambda: scene.tiepoints.lat,
                       "grid2km": lambda: scene.read_grid2km(schema.AMSR2_CHANNELS
                                                             + schema.ERA5_VARIABLES)[0]}
            for what, read in readers.items():
                try:
                    got = read()
                except SceneError as err:
                    assert str(path) in str(err) and err.variable, (share, what, err)
                    continue
                np.testing.assert_equal(got, api_truth[what], err_msg=f"{share} {what}")
    assert read_errors >= len(DAMAGE_AT) // 2  # most damage is only seen when the data is read


def test_prepare_skips_a_damaged_raw_file_and_prepares_the_ones_after_it(raw_paths, tmp_path, capsys):
    raw_dir, out = tmp_path / "raw", tmp_path / "out"
    raw_dir.mkdir()
    first, *rest = raw_paths[:3]
    _damaged(first, raw_dir / first.name, _share_damaging(first, "nersc_sar_primary", tmp_path))
    for path in rest:
        shutil.copyfile(path, raw_dir / path.name)
    assert prepare.main(["--raw", str(raw_dir), "--out", str(out)]) == 1
    printed, logged = capsys.readouterr()
    assert f"skipped: {raw_dir / first.name}: nersc_sar_primary: damaged data" in logged  # a warning
    assert "prepared 2 of 3" in printed
    assert sorted(p.name for p in out.glob("*_prep.nc")) == sorted(schema.rtt_name_from_raw(p.name) for p in rest)


def _share_damaging(src, variable, tmp_path) -> float:
    """A share of ``src`` where zeroed bytes leave the file opening but ``variable`` unreadable."""
    for share in np.linspace(0.1, 0.95, 35):
        try:
            with Scene(_damaged(src, tmp_path / "probe.nc", share)) as scene:
                scene.values(variable)
        except SceneError as err:
            if err.variable == variable:
                return share
    raise AssertionError(f"no share of {src} damages {variable} alone")


@pytest.mark.parametrize("variable", ["nersc_sar_primary", "distance_map", "btemp_36_5v"])
def test_the_patch_build_skips_a_damaged_scene_reports_it_and_writes_its_index(variable, rtt_paths,
                                                                              patch_store, tmp_path):
    folder, (first, middle, last) = _cis_folder(rtt_paths, tmp_path)
    assert middle.name[:19] in _steps(patch_store)[last.name[:19]]  # undamaged, it is a step of the last
    _damaged(middle, middle, _share_damaging(middle, variable, tmp_path))
    store = tmp_path / "s.zarr"
    result = _extract(folder, store, patch_store)
    assert len(result["failed"]) == 1 and f"{middle}: {variable}: damaged data" in result["failed"][0]
    assert sorted(result["written"]) == [first.name[:19], last.name[:19]]
    steps = _steps(store)  # the index is written, and the damaged scene is in no sequence
    assert sorted(steps) == [first.name[:19], last.name[:19]]
    assert steps[last.name[:19]] == [first.name[:19], last.name[:19]]


# ---- row 2: a file name with an impossible date -----------------------------------------------------

def test_an_impossible_date_in_a_file_name_is_named(rtt_paths, raw_paths, tmp_path):
    path = tmp_path / "20201199T225344_cis_prep.nc"
    shutil.copyfile(rtt_paths[1], path)
    with Scene(path) as scene:
        for attribute in ("time", "scene_id"):
            with pytest.raises(SceneError, match="impossible date '20201199T225344'") as err:
                getattr(scene, attribute)
            assert str(path) in str(err.value)
    name = raw_paths[1].name
    raw = tmp_path / (name[:26] + "25" + name[28:])  # hour 25 in the acquisition start (17:32)
    shutil.copyfile(raw_paths[1], raw)
    with Scene(raw) as scene, pytest.raises(SceneError, match=f"impossible date '{name[17:26]}25"):
        scene.time


def test_the_patch_build_skips_a_scene_with_an_impossible_date(rtt_paths, patch_store, tmp_path, capsys):
    folder, copies = _cis_folder(rtt_paths, tmp_path)
    bad = folder / "20201199T225344_cis_prep.nc"
    copies[1].rename(bad)
    store = tmp_path / "s.zarr"
    cfg = patches.config_from_store(patch_store)
    code = _status(["patches", "--scenes", folder, "--out", store, "--patch", cfg.patch,
                    "--downsample", cfg.downsample, "--max-steps", cfg.max_steps, "--window-days",
                    cfg.window_days, "--min-overlap", cfg.min_overlap, "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "usage:" not in captured.err
    assert f"{bad}: the file name holds an impossible date" in captured.out
    assert sorted(_steps(store)) == [copies[0].name[:19], copies[2].name[:19]]


# ---- row 3: values are checked ----------------------------------------------------------------------

@pytest.mark.parametrize("variable, value", [("nersc_sar_primary", np.nan), ("nersc_sar_secondary", 0.0)])
def test_sar_without_one_valid_pixel_is_an_error(variable, value, rtt_paths, tmp_path):
    path = _rewrite(rtt_paths[0], tmp_path / rtt_paths[0].name, lambda ds: ds.assign(
        {variable: ds[variable].copy(data=np.full_like(ds[variable], value))}))
    with Scene(path) as scene:
        assert not scene.sar_valid().any()  # NaN is no data, as 0 is: nothing reads as valid
        with pytest.raises(SceneError) as err:
            scene.checked_sar_valid()
    assert err.value.variable == variable and str(path) in str(err.value)


def test_a_scene_without_sar_is_not_stored_nor_put_in_sequences(rtt_paths, patch_store, tmp_path):
    folder, (first, middle, last) = _cis_folder(rtt_paths, tmp_path)
    assert first.name[:19] in _steps(patch_store)[last.name[:19]]  # with its SAR, it is a step
    _rewrite(rtt_paths[0].parent / first.name, first, lambda ds: ds.assign(
        nersc_sar_primary=ds.nersc_sar_primary.copy(data=np.full_like(ds.nersc_sar_primary, np.nan))))
    store = tmp_path / "s.zarr"
    result = _extract(folder, store, patch_store)
    assert result["failed"] == [f"{first}: nersc_sar_primary: no pixel has data (no-data value or NaN "
                                "everywhere)"]
    steps = _steps(store)
    assert sorted(steps) == [middle.name[:19], last.name[:19]]
    assert all(first.name[:19] not in s for s in steps.values())


def test_prepare_refuses_a_raw_scene_without_sar(raw_paths, tmp_path, capsys):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    _rewrite(raw_paths[0], raw_dir / raw_paths[0].name, lambda ds: ds.assign(
        nersc_sar_secondary=ds.nersc_sar_secondary.copy(data=np.full_like(ds.nersc_sar_secondary, np.nan))))
    assert prepare.main(["--raw", str(raw_dir), "--out", str(tmp_path / "out")]) == 1
    assert f"{raw_dir / raw_paths[0].name}: nersc_sar_secondary: no pixel has data" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "out").glob("*") if p.name != LOCK_NAME]


def test_chart_classes_out_of_range_name_the_scene_and_the_chart(rtt_paths, patch_store, tmp_path):
    folder, (first, middle, last) = _cis_folder(rtt_paths, tmp_path)

    def sod_9(ds):
        sod = ds.SOD.values.copy()
        sod[np.nonzero(sod != schema.CHART_FILL)[0][0], np.nonzero(sod != schema.CHART_FILL)[1][0]] = 9
        return ds.assign(SOD=ds.SOD.copy(data=sod))

    _rewrite(rtt_paths[0].parent / last.name, last, sod_9)
    with Scene(last) as scene, pytest.raises(SceneError) as err:
        scene.charts()
    assert err.value.variable == "SOD" and str(last) in str(err.value)
    assert "classes [9] outside 0..5" in str(err.value)
    result = _extract(folder, tmp_path / "s.zarr", patch_store)
    assert result["failed"] == [str(err.value)]
    assert sorted(result["written"]) == [first.name[:19], middle.name[:19]]


@pytest.mark.parametrize("which, variable", [("rtt", "sar_grid2d_latitude"), ("raw", "sar_grid_longitude")])
def test_nan_tie_points_name_the_variable(which, variable, rtt_paths, raw_paths, tmp_path, capsys):
    src = (rtt_paths if which == "rtt" else raw_paths)[0]
    folder = tmp_path / which
    folder.mkdir()

    def one_nan(ds):
        values = ds[variable].values.copy()
        values.flat[17] = np.nan
        return ds.assign({variable: ds[variable].copy(data=values)})

    path = _rewrite(src, folder / src.name, one_nan)
    with Scene(path) as scene:
        for read in (lambda: scene.tiepoints, lambda: scene.lonlat(step=10)):
            with pytest.raises(SceneError, match="1 of 441 tie points are not finite") as err:
                read()
            assert err.value.variable == variable and str(path) in str(err.value)
    if which == "raw":  # prepare reports it and goes on
        assert prepare.main(["--raw", str(folder), "--out", str(tmp_path / "out")]) == 1
        assert f"{path}: {variable}: 1 of 441 tie points are not finite" in capsys.readouterr().err


def test_a_zeroed_tie_point_is_an_uneven_grid(rtt_paths, tmp_path):
    def zero_one(ds):
        lat, lon = ds.sar_grid2d_latitude.values.copy(), ds.sar_grid2d_longitude.values.copy()
        lat[5, 7] = lon[5, 7] = 0.0  # as a zeroed block of a damaged file leaves it
        return ds.assign(sar_grid2d_latitude=ds.sar_grid2d_latitude.copy(data=lat),
                         sar_grid2d_longitude=ds.sar_grid2d_longitude.copy(data=lon))

    path = _rewrite(rtt_paths[0], tmp_path / rtt_paths[0].name, zero_one)
    with Scene(path) as scene, pytest.raises(SceneError, match="not an even grid") as err:
        scene.tiepoints
    assert str(path) in str(err.value) and "sar_grid2d_latitude" in str(err.value)


@pytest.mark.parametrize("spacing", [0, -80, np.nan, 79])
def test_a_bad_pixel_spacing_names_the_attribute(spacing, rtt_paths, tmp_path):
    path = _rewrite(rtt_paths[0], tmp_path / rtt_paths[0].name,
                    lambda ds: ds.assign_attrs(pixel_spacing=spacing))
    with pytest.raises(SceneError, match="pixel_spacing") as err:
        Scene(path)
    assert str(path) in str(err.value)
    with Scene(path, validate=False) as scene, pytest.raises(SceneError, match="pixel_spacing"):
        scene.cell


# ---- row 6: silent empties and losses ---------------------------------------------------------------

def test_patches_on_a_missing_or_empty_folder_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder, words in ((tmp_path / "NO_SUCH_DIR", "no such folder"),
                          (tmp_path / "empty", "no *_prep.nc scenes in")):
        store = tmp_path / f"{folder.name}.zarr"
        assert _status(["patches", "--scenes", folder, "--out", store, "--quiet"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert str(folder) in line and words in line
        assert not store.exists()


def test_a_command_that_writes_nothing_leaves_no_output_folder(tmp_path, capsys):
    """RT18-R12: synthetic refused a bad value inside its lock (the folder stayed, holding the lock),
    and patches whose every scene failed left an empty store that every reader took as one."""
    assert _status(["synthetic", "--out", tmp_path / "syn", "--regions", "99", "--scenes-per-region", "1",
                    "--size", "160", "160", "--quiet"]) == 2
    assert "regions" in capsys.readouterr().err and not (tmp_path / "syn").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "20181113T190544_dmi_prep.nc").write_text("not a netCDF file")
    assert _status(["patches", "--scenes", bad, "--out", tmp_path / "p.zarr", "--patch", "32", "--downsample", "4",
                    "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "0 scenes written, 0 already there, 1 failed; no store made at" in out and not (tmp_path / "p.zarr").exists()


def test_raw_names_without_the_pattern_are_refused_not_overwritten(raw_paths, tmp_path, capsys):
    raw_dir, out = tmp_path / "raw", tmp_path / "out"
    raw_dir.mkdir()
    shutil.copyfile(raw_paths[0], raw_dir / "a.nc")
    shutil.copyfile(raw_paths[1], raw_dir / "b.nc")
    shutil.copyfile(raw_paths[2], raw_dir / raw_paths[2].name)
    assert prepare.main(["--raw", str(raw_dir), "--out", str(out)]) == 1
    printed, logged = capsys.readouterr()
    for name in ("a.nc", "b.nc"):
        assert f"{raw_dir / name}: the file name does not follow the AI4Arctic raw pattern" in logged
    assert "prepared 1 of 3" in printed
    assert [p.name for p in out.iterdir() if p.name not in (LOCK_NAME, prepare.PREPARED)] == \
        [schema.rtt_name_from_raw(raw_paths[2].name)]


def test_two_raw_files_of_one_scene_are_both_refused(raw_paths, tmp_path, capsys):
    raw_dir, out = tmp_path / "raw", tmp_path / "out"
    raw_dir.mkdir()
    original = raw_dir / raw_paths[0].name
    copy = raw_dir / (raw_paths[0].name[:-3] + "_copy.nc")
    shutil.copyfile(raw_paths[0], original)
    shutil.copyfile(raw_paths[1], copy)  # another scene's data under the first one's name
    assert prepare.main(["--raw", str(raw_dir), "--out", str(out)]) == 1
    logged = capsys.readouterr().err
    rtt = schema.rtt_name_from_raw(original.name)
    assert f"{original}: would be prepared into {rtt}, as would {copy.name}" in logged
    assert f"{copy}: would be prepared into {rtt}, as would {original.name}" in logged
    assert not out.exists() or not [p for p in out.iterdir() if p.name != LOCK_NAME]


@pytest.fixture
def store_copy(patch_store, tmp_path):
    """A copy of the session store, to damage, and one of its scenes with patches."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(patch_store, copy)
    root = zarr.open_group(copy, mode="r")
    sid = next(s for s in root["index"].attrs["scene_ids"] if root[f"scenes/{s}"].attrs["n_patches"] > 0)
    return copy, sid


def test_a_deleted_shard_file_is_an_error_not_zeros(store_copy):
    store, sid = store_copy
    dataset = PatchDataset(store)
    i = int(np.nonzero(np.asarray(dataset.scene_ids)[dataset.scene_of] == sid)[0][0])
    assert dataset[i]["sar"].abs().sum() > 0
    (store / "scenes" / sid / "sar" / "c" / "0" / "0" / "0" / "0" / "0").unlink()  # patches 0..31
    assert not zarr.open_group(store, mode="r")[f"scenes/{sid}/sar"][0].any()  # zarr reads zeros
    with pytest.raises(ValueError) as err:
        PatchDataset(store)[i]
    for words in (str(store), f"scenes/{sid}/sar", "shard files missing"):
        assert words in str(err.value)
    next(p for p in (store / "scenes" / sid / "histograms" / "c").rglob("*") if p.is_file()).unlink()
    with pytest.raises(ValueError, match=f"scenes/{sid}/histograms"):
        patches.consolidate(store)


def test_a_store_stopped_before_its_index_says_how_to_finish_it(store_copy, synthetic_dir, patch_store):
    store, _ = store_copy
    shutil.rmtree(store / "index")
    with pytest.raises(ValueError, match="incomplete patch store") as err:
        PatchDataset(store)
    command = f"seaice patches --scenes {synthetic_dir.resolve()} --out {store}"
    assert f"`{command}`" in str(err.value)
    assert _status(command.split()[1:] + ["--quiet"]) == 0  # as it says: the store's own settings
    assert len(PatchDataset(store)) == len(PatchDataset(patch_store))


def test_a_deleted_scene_group_names_the_scene_and_the_store(store_copy):
    store, sid = store_copy
    shutil.rmtree(store / "scenes" / sid)
    with pytest.raises(ValueError) as err:
        PatchDataset(store)
    assert str(store) in str(err.value) and f"scene {sid}" in str(err.value)
    assert "seaice patches" in str(err.value)
