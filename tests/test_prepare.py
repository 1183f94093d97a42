import hashlib
import logging
import os

import netCDF4
import numpy as np
import pytest
import xarray as xr

from seaice_lib import cli, schema
from seaice_lib.atomic import LOCK_NAME
from seaice_lib.data import prepare
from seaice_lib.data.scene import Scene, SceneError
from seaice_lib.grid import block_reduce
from tests.scene_edits import copy_scenes


def test_block_reduce_mean_propagates_nan_and_drops_ragged_edge():
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    a[0, 0] = np.nan
    out = block_reduce(a, 2, "mean")
    assert out.shape == (2, 3)
    assert np.isnan(out[0, 0])
    assert out[1, 2] == pytest.approx((16 + 17 + 22 + 23) / 4)


def test_block_reduce_max_lets_no_label_win():
    labels = np.array([[0, 3, 1, 1], [2, 255, 1, 0]], np.uint8)
    assert block_reduce(labels, 2, "max").tolist() == [[255, 1]]
    assert block_reduce(labels, 1, "max") is labels
    with pytest.raises(ValueError):
        block_reduce(labels, 2, "median")


def test_prepare_cli_writes_the_generators_rtt_files_and_keeps_finished_ones(synthetic_dir, raw_paths,
                                                                             tmp_path):
    """The command and the generator's in-memory path agree (the generator prepares its RTT files
    with ``rtt_from_raw``); the labels' oracle is the hand-built scene below."""
    out = tmp_path / "prepared"
    assert prepare.main(["--raw", str(synthetic_dir / "raw"), "--out", str(out)]) == 0
    for raw_path in raw_paths:
        name = schema.rtt_name_from_raw(raw_path.name)
        with Scene(out / name) as ours, Scene(synthetic_dir / name) as ref:
            for chart in schema.CHARTS:
                np.testing.assert_array_equal(ours.charts()[chart], ref.charts()[chart])
            for var in schema.SAR_GRID_VARIABLES:
                np.testing.assert_array_equal(ours.read(var), ref.read(var))
            assert ours.ds.attrs["original_id"] == raw_path.name
            assert ours.ds.attrs["scene_id"] == name[:19]
    mtime = (out / name).stat().st_mtime_ns
    assert prepare.main(["--raw", str(synthetic_dir / "raw"), "--out", str(out)]) == 0
    assert (out / name).stat().st_mtime_ns == mtime  # a rerun keeps finished scenes


def test_prepared_scenes_do_not_go_among_the_raw_ones(synthetic_dir, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.symlink_to(synthetic_dir / "raw")
    before = sorted(p.name for p in raw.iterdir())
    with pytest.raises(SystemExit) as stop:
        prepare.main(["--raw", str(raw), "--out", str(synthetic_dir / "raw")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "is the --raw folder" in err and "Traceback" not in err
    assert sorted(p.name for p in raw.iterdir()) == before


def test_a_kept_file_prepared_from_another_raw_file_is_refused(raw_paths, tmp_path):
    """Two raw files of one acquisition time and service (another product or chart) share an RTT
    name: the one already prepared is kept only for the raw file it came from."""
    out = tmp_path / "prepared"
    prepare.prepare_scene(raw_paths[0], out)
    other = tmp_path / "raw" / (raw_paths[0].name[:63] + "FFFF" + raw_paths[0].name[67:])  # another product id
    other.parent.mkdir()
    other.write_bytes(raw_paths[0].read_bytes())
    kept = out / schema.rtt_name_from_raw(raw_paths[0].name)
    mtime = kept.stat().st_mtime_ns
    with pytest.raises(SceneError, match=f"prepared from '{raw_paths[0].name}', not from {other.name}"):
        prepare.prepare_scene(other, out)
    assert kept.stat().st_mtime_ns == mtime
    prepare.prepare_scene(other, out, overwrite=True)
    with Scene(kept) as scene:
        assert scene.ds.attrs["original_id"] == other.name


def test_a_rerun_at_another_spacing_leaves_the_prepared_scenes_where_they_are(raw_paths, tmp_path, capsys):
    """A mistyped ``--factor`` is refused for every scene already there; none is set aside."""
    raw = copy_scenes(raw_paths[:2], tmp_path / "raw")
    out = tmp_path / "prepared"
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0
    assert "prepared 2 of 2 scenes" in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME}
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0  # again: nothing to do
    assert f"prepared 0 of 2 scenes into {out}; 2 already there as prepared, kept" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == before
    assert prepare.main(["--raw", str(raw), "--out", str(out), "--factor", "1"]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == before  # no .removed/ either
    captured = capsys.readouterr()
    assert captured.err.count("already there with pixel_spacing 80, not the 40 m of --factor 1") == 2
    assert "fails now" not in captured.err and "prepared 0 of 2" in captured.out


def test_a_file_set_aside_twice_keeps_the_earlier_copy(raw_paths, tmp_path):
    raw = copy_scenes(raw_paths[:1], tmp_path / "raw")
    out = tmp_path / "prepared"
    stale = prepare.prepare_scene(raw / raw_paths[0].name, out)
    made = stale.read_bytes()
    earlier = out / ".removed" / stale.name
    earlier.parent.mkdir()
    earlier.write_bytes(b"set aside by an earlier run")
    with netCDF4.Dataset(raw / raw_paths[0].name, "a") as nc:
        nc.acquisition_time = "1999-01-01T00:00:00"  # its raw file fails now
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 1
    assert not stale.exists() and earlier.read_bytes() == b"set aside by an earlier run"
    assert (out / ".removed" / f"{stale.stem}.2.nc").read_bytes() == made


def test_a_kept_file_is_prepared_again_once_its_raw_file_changed(raw_paths, tmp_path):
    raw = tmp_path / "raw" / raw_paths[0].name
    raw.parent.mkdir()
    raw.write_bytes(raw_paths[0].read_bytes())
    out = prepare.prepare_scene(raw, tmp_path / "prepared")
    first = out.read_bytes()
    os.utime(raw, ns=(1, 1))  # copied without its times: the same bytes, kept
    assert prepare.prepare_scene(raw, tmp_path / "prepared").read_bytes() == first
    with netCDF4.Dataset(raw, "r+") as nc:  # the raw scene reprocessed
        var = nc["nersc_sar_secondary"]
        var[:] = var[:] - 3.0
    prepare.prepare_scene(raw, tmp_path / "prepared")
    with Scene(out) as scene:
        assert scene.ds.attrs["original_sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert out.read_bytes() != first


def test_a_kept_file_edited_since_it_was_prepared_is_prepared_again(raw_paths, tmp_path, caplog):
    """Relabelled after prepare wrote it: the rerun does not keep it as the raw file's preparation
    but prepares it again from the raw file, saying so; a file prepare has no record of likewise."""
    raw = tmp_path / "raw" / raw_paths[0].name
    raw.parent.mkdir()
    raw.write_bytes(raw_paths[0].read_bytes())
    out = prepare.prepare_scene(raw, tmp_path / "prepared")
    with Scene(out) as scene:
        sod = scene.charts()["SOD"]
    assert (sod[sod != 255] != 3).any()
    with netCDF4.Dataset(out, "r+") as nc:
        nc["SOD"][:] = np.where(sod == 255, 255, 3).astype(np.uint8)
    with caplog.at_level("WARNING"):
        prepare.prepare_scene(raw, tmp_path / "prepared")
    assert f"{out}: not as prepared" in caplog.text
    with Scene(out) as scene:
        np.testing.assert_array_equal(scene.charts()["SOD"], sod)
    stamp = out.stat().st_mtime_ns
    assert prepare.prepare_scene(raw, tmp_path / "prepared").stat().st_mtime_ns == stamp  # as written: kept
    (tmp_path / "prepared" / prepare.PREPARED).write_text("[1, 2")  # a damaged record vouches for nothing
    prepare.prepare_scene(raw, tmp_path / "prepared")
    assert out.stat().st_mtime_ns != stamp


def test_a_kept_file_made_by_another_release_is_prepared_again(raw_paths, tmp_path, caplog, monkeypatch):
    """A release may prepare other files from the same raw file: one another release (or one
    from before files recorded ``made_by``) wrote is prepared again, said in a warning naming both."""
    import json

    from seaice_lib import __version__, provenance

    raw = tmp_path / "raw" / raw_paths[0].name
    raw.parent.mkdir()
    raw.write_bytes(raw_paths[0].read_bytes())
    out = prepare.prepare_scene(raw, tmp_path / "prepared")
    with Scene(out) as scene:
        assert json.loads(scene.ds.attrs["made_by"])["version"] == __version__
    stamp = out.stat().st_mtime_ns
    assert prepare.prepare_scene(raw, tmp_path / "prepared").stat().st_mtime_ns == stamp  # this release: kept
    monkeypatch.setattr(provenance, "__version__", "99.0")  # a later release, which records itself
    monkeypatch.setattr(prepare, "__version__", "99.0")
    with caplog.at_level("WARNING"):
        prepare.prepare_scene(raw, tmp_path / "prepared")
    assert f"{out}: made by seaice_lib {__version__}, not by the seaice_lib 99.0 running now: prepared again" \
        in caplog.text
    with Scene(out) as scene:
        assert json.loads(scene.ds.attrs["made_by"])["version"] == "99.0"
    with netCDF4.Dataset(out, "r+") as nc:  # as a file from before made_by was recorded
        nc.delncattr("made_by")
    (tmp_path / "prepared" / prepare.PREPARED).write_text(json.dumps({out.name: hashlib.sha256(
        out.read_bytes()).hexdigest()}))  # its record as that version wrote it: only the maker differs
    caplog.clear()
    with caplog.at_level("WARNING"):
        prepare.prepare_scene(raw, tmp_path / "prepared")
    assert f"{out}: made by a version that did not record itself in made_by" in caplog.text
    with Scene(out) as scene:
        assert json.loads(scene.ds.attrs["made_by"])["version"] == "99.0"


def test_prepare_other_spacings(raw_paths, tmp_path):
    with Scene(raw_paths[0]) as raw:
        native = prepare.rtt_from_raw(raw, factor=1)
        assert native.attrs["pixel_spacing"] == 40
        assert native.sizes["sar_lines"] == raw.shape[0]
        coarse = prepare.rtt_from_raw(raw, factor=5)  # 200 m: 10 pixels per 2 km cell
        assert coarse.attrs["pixel_spacing"] == 200
        assert coarse.sizes["sar_lines"] == raw.shape[0] // 5
        with pytest.raises(ValueError, match="factor 3"):
            prepare.rtt_from_raw(raw, factor=3)  # 120 m does not divide 2 km
    path = tmp_path / "native_prep.nc"
    prepare.write_scene(native, path)
    with Scene(path) as scene:
        assert scene.cell == 50
        assert scene.grid2km_shape == (raw.shape[0] // 50, raw.shape[1] // 50)


def test_charts_have_no_label_where_sar_has_no_data(rtt_paths):
    assert len(rtt_paths) == 6
    for path in rtt_paths:
        with Scene(path) as scene:
            invalid = ~scene.sar_valid()
            assert invalid.any()  # the synthetic swaths have no-data borders
            for labels in scene.charts().values():
                assert np.all(labels[invalid] == schema.CHART_FILL)


def test_write_scene_keeps_the_old_file_on_failure(raw_paths, tmp_path, monkeypatch):
    with Scene(raw_paths[0]) as raw:
        ds = prepare.rtt_from_raw(raw)
    target = tmp_path / "scene_prep.nc"
    target.write_bytes(b"previous version")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(ds), "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare.write_scene(ds, target)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["scene_prep.nc"]


def test_bad_raw_files_are_reported_and_skipped(synthetic_dir, raw_paths, tmp_path, capsys):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / raw_paths[0].name).write_bytes(raw_paths[0].read_bytes())
    bad = raw_dir / (raw_paths[1].name[:-3] + "x.nc")
    bad.write_bytes(b"\x89HDF broken")
    assert cli.main(["prepare", "--raw", str(raw_dir), "--out", str(tmp_path / "out")]) == 1
    assert f"skipped: {bad}" in capsys.readouterr().err  # a warning in the log
    assert (tmp_path / "out" / schema.rtt_name_from_raw(raw_paths[0].name)).exists()


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_a_raw_distance_map_value_that_is_not_finite_is_named_never_made_a_zone(raw_paths, tmp_path, capsys, value):
    """The ready-to-train distance map has no no-data value: a reader would take whatever stood in
    for the missing value as a land zone, so the scene is skipped, naming the file and the variable."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    raw = raw_dir / raw_paths[0].name
    raw.write_bytes(raw_paths[0].read_bytes())
    with netCDF4.Dataset(raw, "r+") as nc:
        nc["distance_map"].set_auto_maskandscale(False)
        nc["distance_map"][3, 3] = value
    assert cli.main(["prepare", "--raw", str(raw_dir), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"skipped: {raw}: distance_map: 1 of " in err and "values are not finite" in err
    assert not (tmp_path / "out" / schema.rtt_name_from_raw(raw.name)).exists()


# --- an independent oracle: a hand-built raw scene and its RTT charts worked out by hand ---------

RAW_NAME = ("S1A_EW_GRDM_1SDH_20190430T101830_20190430T101930_027018_030AD3_9C47_icechart_cis_"
            "SGRDIEA_20190430T1020Z_pl_a.nc")
NA = "-9"
# poly_id;CT;CA;SA;FA;CB;SB;FB;CC;SC;FC;CN;CD;CF;POLY_TYPE, and the classes the dataset's rules give
# (docs/data.md, "Egg codes to charts"; concentrations in SIC classes, e.g. code 60 -> 6)
EGG_CODES = [
    # water polygon: SIC 0, and where SIC is 0 SOD and FLOE are 0            -> (0, 0, 0)
    f"1;{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};W",
    # land: CT not filled, no SIC class                                       -> (255, 255, 255)
    f"2;{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};L",
    # CT 92 -> 10. SOD: stages 93 and 86 are both thick first-year (4): 6 + 3 = 9, 95 old (5): 1;
    # 9 / 10 >= 0.65 -> 4. FLOE: forms 6 and 7 are both vast (5): 6 + 3 = 9, 5 big (4): 1 -> 5
    f"3;92;60;93;6;30;86;7;10;95;5;{NA};{NA};{NA};I",                      # -> (10, 4, 5)
    # CT 90 -> 9, thick first-year 5 vs old 4 (and big 5 vs vast 4): 5 / 9 = 0.56 < 0.65
    f"4;90;50;93;5;40;95;6;{NA};{NA};{NA};{NA};{NA};{NA};I",                # -> (9, 255, 255)
    # CT 30 -> 3 with CA empty: CA := CT, new ice (81 -> 1), cake ice (2 -> 1): 3 / 3
    f"5;30;{NA};81;2;{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};I",        # -> (3, 1, 1)
    # CT 80 -> 8, old ice (95 -> 5), fast ice (form 8 -> 255) makes FLOE 255
    f"6;80;80;95;8;{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};I",          # -> (8, 5, 255)
    # CT 60 -> 6. SOD: old 4 vs undetermined (99 -> 255) 2: 4 / 6 = 0.67 -> 5; FLOE: big 4 + 2 -> 4
    f"7;60;40;95;5;20;99;5;{NA};{NA};{NA};{NA};{NA};{NA};I",                # -> (6, 5, 4)
    # CT 1 (ice free, under 1/10) -> 0                                       -> (0, 0, 0)
    f"8;1;{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};{NA};I",
]
N = np.nan
# polygon id per 40 m pixel (8 x 12 raw pixels = 4 x 6 RTT pixels); NaN = outside the chart,
# 99 = an id the table lacks; HH has no data at raw pixel (6, 8)
POLYGONS = np.array([
    [1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2],
    [1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2],
    [1, 1, 1, 3, 4, 4, 4, 4, 5, N, N, N],
    [1, 1, 1, 1, 4, 4, 4, 4, 5, 5, N, N],
    [6, 6, 6, 6, 7, 7, 7, 3, 5, 5, 99, 99],
    [6, 6, 6, 6, 7, 7, 7, 7, 5, 5, 99, 99],
    [8, 8, 8, 8, 5, 4, 7, 7, 6, 6, 3, 3],
    [8, 8, 8, 8, 5, 5, 7, 7, 6, 6, 3, 3],
], np.float32)
NO_SAR = (6, 8)
F = 255
# each 80 m pixel is the max of its 2 x 2 raw block, chart by chart (255 wins), and 255 where the
# block lacks SAR; the mixed blocks hold their largest class off the block's centre pixel (1, 1)
EXPECTED_RTT = {
    "SIC": [[0, 0, 10, 10, F, F],
            [0, 10, 9, 9, F, F],    # (1, 1): water and polygon 3; (1, 4): polygon 5 and NaN
            [8, 8, 6, 10, 3, F],    # (2, 3): polygons 7 (6, 5, 4) and 3 (10, 4, 5) -> (10, 5, 5)
            [0, 0, 9, 6, F, 10]],   # (3, 2): polygons 5 (3, 1, 1) and 4 (9, 255, 255); (3, 4): no SAR
    "SOD": [[0, 0, 4, 4, F, F],
            [0, 4, F, F, F, F],
            [5, 5, 5, 5, 1, F],
            [0, 0, F, 5, F, 4]],
    "FLOE": [[0, 0, 5, 5, F, F],
             [0, 5, F, F, F, F],
             [F, F, 4, 5, 1, F],
             [0, 0, F, 4, F, 5]],
}


def _hand_built_raw_scene() -> xr.Dataset:
    """The raw scene above in the AI4Arctic raw schema, physical units, NaN = no data."""
    lines, samples = np.mgrid[0:8, 0:12].astype(np.float32)
    hh = -15 + 0.5 * lines - 0.25 * samples
    hh[NO_SAR] = np.nan
    sar = {"nersc_sar_primary": hh, "nersc_sar_secondary": -25 + 0.1 * lines * samples,
           "sar_incidenceangle": 30 + 0.5 * samples, "distance_map": np.minimum(lines + samples, 41)}
    tl, ts = np.meshgrid(np.linspace(0, 7, 21), np.linspace(0, 11, 21), indexing="ij")
    points = {"sar_grid_line": tl, "sar_grid_sample": ts, "sar_grid_latitude": 70 + 4e-4 * tl,
              "sar_grid_longitude": -50 + 1e-3 * ts, "sar_grid_incidenceangle": 30 + 0.5 * ts,
              "sar_grid_height": np.zeros_like(tl)}
    data = {name: (schema.SAR_DIMS, values.astype(np.float32)) for name, values in sar.items()}
    data["polygon_icechart"] = (schema.SAR_DIMS, POLYGONS)
    data |= {name: ((schema.RAW_TIEPOINT_DIM,), v.ravel()) for name, v in points.items()}
    data |= {name: (schema.GRID2KM_DIMS, np.full((1, 1), 200 + k, np.float32))
             for k, name in enumerate(schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES)}
    codes = np.array([schema.POLYGON_CODES_HEADER, *EGG_CODES], dtype=object)
    return xr.Dataset(data, coords={"polygon_codes": ("polygon_codes", codes)})


def test_prepare_turns_a_hand_built_raw_scene_into_the_charts_worked_out_by_hand(tmp_path, caplog):
    raw_dir, out = tmp_path / "raw", tmp_path / "out"
    raw_dir.mkdir()
    _hand_built_raw_scene().to_netcdf(raw_dir / RAW_NAME, engine="netcdf4")
    with caplog.at_level(logging.WARNING):
        assert prepare.main(["--raw", str(raw_dir), "--out", str(out)]) == 0
    # the 4 raw pixels of id 99 lose their labels, said by name and count
    assert f"{RAW_NAME}: 4 pixels of polygon_icechart carry polygon ids that polygon_codes lacks (e.g. [99])" in caplog.text
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == ["20190430T101830_cis_prep.nc",
                                                                          prepare.PREPARED]
    with xr.open_dataset(out / "20190430T101830_cis_prep.nc", engine="netcdf4",
                         mask_and_scale=False) as rtt:
        for chart, expected in EXPECTED_RTT.items():
            assert rtt[chart].dtype == np.uint8 and rtt[chart].dims == schema.SAR_DIMS
            np.testing.assert_array_equal(rtt[chart].values, np.array(expected), err_msg=chart)
        # inputs: 2 x 2 means of the physical values, standard-scaled, 0 where SAR is missing
        raw = _hand_built_raw_scene()
        for name in schema.SAR_GRID_VARIABLES:
            means = raw[name].values.astype(np.float64).reshape(4, 2, 6, 2).mean(axis=(1, 3))
            mean, std = schema.NORM_STATS[name]
            expected = (means - mean) / std
            got = rtt[name].values
            assert got.dtype == np.float32
            with_sar = np.ones((4, 6), bool)
            with_sar[3, 4] = False  # the block holding the pixel without HH
            np.testing.assert_allclose(got[with_sar], expected[with_sar], rtol=1e-5, atol=1e-6,
                                       err_msg=name)
            if name != "distance_map":  # the distance map has no no-data value
                assert got[3, 4] == 0
        for k, name in enumerate(schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES):
            mean, std = schema.NORM_STATS[name]
            assert rtt[name].values[0, 0] == pytest.approx((200 + k - mean) / std, rel=1e-5)
        assert rtt.attrs["scene_id"] == "20190430T101830_cis" and rtt.attrs["original_id"] == RAW_NAME
        assert rtt.attrs["pixel_spacing"] == 80 and rtt.attrs["ice_service"] == "cis"


def test_the_scene_of_a_raw_file_withdrawn_from_raw_is_set_aside_and_named(raw_paths, tmp_path, capsys):
    """OUT offers only the scenes of the raw files in --raw: the scene of one withdrawn since goes to
    ``.removed/`` (as patches sets aside the group of a gone scene), named; files prepare did not
    write stay, whether or not they name a raw file (synthetic and downloaded RTT files do)."""
    raw = copy_scenes(raw_paths[:2], tmp_path / "raw")
    out = tmp_path / "prepared"
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0
    withdrawn = out / schema.rtt_name_from_raw(raw_paths[0].name)
    made = withdrawn.read_bytes()
    foreign = out / "20200101T000000_dmi_prep.nc"
    xr.Dataset({"x": ("n", np.zeros(2))}).to_netcdf(foreign)  # no original_id: not prepared from a raw file
    downloaded = out / "20200102T000000_dmi_prep.nc"  # an RTT file of the dataset's own, not prepare's
    xr.Dataset({"x": ("n", np.zeros(2))}, attrs={"original_id": "S1B_EW_GRDM_gone.nc"}).to_netcdf(downloaded)
    (raw / raw_paths[0].name).unlink()
    capsys.readouterr()
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"1 scenes set aside (prepared from raw files no longer in {raw}" in said and withdrawn.name in said
    assert sorted(p.name for p in out.glob("*_prep.nc")) == sorted(
        [foreign.name, downloaded.name, schema.rtt_name_from_raw(raw_paths[1].name)])
    assert (out / ".removed" / withdrawn.name).read_bytes() == made


def test_a_raw_file_reissued_under_another_name_replaces_the_scene_of_the_old_one(raw_paths, tmp_path, capsys):
    """The old name's scene (same RTT name) is set aside first; the new raw file is prepared in its place."""
    raw = copy_scenes(raw_paths[:1], tmp_path / "raw")
    out = tmp_path / "prepared"
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0
    old = raw / raw_paths[0].name
    new = raw / (raw_paths[0].name[:63] + "FFFF" + raw_paths[0].name[67:])  # another product id
    old.rename(new)
    capsys.readouterr()
    assert prepare.main(["--raw", str(raw), "--out", str(out)]) == 0
    scene = out / schema.rtt_name_from_raw(new.name)
    assert scene.name in capsys.readouterr().out  # named as set aside
    with Scene(scene) as now, Scene(out / ".removed" / scene.name) as aside:
        assert now.ds.attrs["original_id"] == new.name and aside.ds.attrs["original_id"] == old.name
