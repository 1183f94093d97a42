"""CF chart files (``seaice_lib.charts.cf``): the IOOS compliance checker (cf:1.11, offline, its
bundled standard-name table) passes them and fails a broken copy; CF rules from the conventions'
text; xarray opens them without a warning and decodes lat/lon equal to the tie points at the
tie-point pixels; probabilities on request; nothing half-written reads as a chart file; no torch."""

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
import warnings

import netCDF4
import numpy as np
import pytest
import xarray as xr
from compliance_checker.runner import CheckSuite, ComplianceChecker

from seaice_lib import schema
from seaice_lib.charts import cf, inference
from seaice_lib.data.geo import TiePointGrid
from seaice_lib.data.scene import Scene, SceneError
from tests.charting_inputs import STORE_CFG, Constant, cells_covering

SCENE_ID = "20190417T075810_dmi"
# class words as the AI4Arctic manual names them, written out here (not derived from the writer)
MEANINGS = {
    "SIC": [f"{10 * i}_percent" for i in range(11)],
    "SOD": ["open_water", "new_ice", "young_ice", "thin_first-year_ice", "thick_first-year_ice",
            "old_ice"],
    "FLOE": ["open_water", "cake_ice", "small_floe", "medium_floe", "big_floe", "vast_floe", "bergs"],
}
CF_WORD = re.compile(r"[A-Za-z0-9_.+@-]+")  # CF 3.5: the characters a flag meaning may use


@pytest.fixture(scope="module")
def tiepoints(synthetic_dir):
    """A real synthetic scene's 21 x 21 tie points."""
    with Scene(sorted(synthetic_dir.glob("*_prep.nc"))[0]) as scene:
        return scene.tiepoints


def _charts(shape, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    charts = {c: rng.integers(0, schema.N_CLASSES[c], shape).astype(np.uint8) for c in schema.CHARTS}
    for values in charts.values():
        values[:3, :4] = 255  # no SAR data
    return charts


def _probabilities(shape) -> dict[str, np.ndarray]:
    """SOD: 0.25 / 0.75 on classes 1 / 4 everywhere; FLOE: one-hot class 5; SIC: regression."""
    sod = np.zeros((6, *shape))
    sod[1], sod[4] = 0.25, 0.75
    floe = np.zeros((7, *shape))
    floe[5] = 1.0
    return {"SOD": sod, "FLOE": floe, "SIC": np.full((1, *shape), 4.2)}


@pytest.fixture(scope="module")
def chart_file(tiepoints, tmp_path_factory):
    """A chart file of a 110 x 135 scene with probabilities on a grid of 2 x 80 m."""
    path = tmp_path_factory.mktemp("cf") / f"{SCENE_ID}_charts.nc"
    cf.write_charts(path, SCENE_ID, _charts((110, 135)), tiepoints, _probabilities((55, 67)), 2,
                    cf.provenance("unet (tiny)", None, ["a_prep.nc", f"{SCENE_ID}_prep.nc"]))
    return path


def _cf_check(path, tmp_path) -> dict:
    """The IOOS compliance checker's cf:1.11 report (strict) as a dict."""
    CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.name}.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.11"], verbose=0, criteria="strict",
                                  output_filename=str(report), output_format="json")
    return json.loads(report.read_text())["cf:1.11"]


@pytest.mark.filterwarnings("ignore:The ioos_sos checker is deprecated:DeprecationWarning")
def test_the_cf_checker_passes_a_chart_file_and_fails_a_broken_copy(chart_file, tmp_path):
    report = _cf_check(chart_file, tmp_path)
    problems = [(r["name"], r["msgs"]) for r in report["all_priorities"] if r["msgs"]]
    assert problems == [] and report["scored_points"] == report["possible_points"] > 100
    assert (report["high_count"], report["medium_count"], report["low_count"]) == (0, 0, 0)

    broken = tmp_path / "broken.nc"
    shutil.copy(chart_file, broken)
    with netCDF4.Dataset(broken, "a") as nc:
        nc["SIC"].flag_meanings = " ".join(f"{10 * i}%" for i in range(11))  # '%' is no CF word
        nc["lat"].delncattr("units")
        nc["SOD"].flag_values = np.arange(5, dtype=np.uint8)  # one value short of the meanings
    failed = " ".join(" ".join(r["msgs"]) for r in _cf_check(broken, tmp_path)["all_priorities"])
    assert "flag_meanings" in failed and "lat" in failed and "flag_values" in failed


def test_cf_rules_from_the_conventions(chart_file):
    """Rules checked from the CF 1.11 text, independently of the checker."""
    with netCDF4.Dataset(chart_file) as nc:
        assert re.fullmatch(r"CF-1\.\d+, ACDD-1\.3", nc.Conventions)  # 2.6.1: a list, comma-separated as ACDD asks
        for name in ("title", "institution", "source", "history", "references", "comment"):
            assert isinstance(nc.getncattr(name), str) and nc.getncattr(name)  # 2.6.2
        assert "seaice_lib.schema.CLASSES" in nc.comment  # whose colours: the project's own
        dt.datetime.fromisoformat(nc.date_created)
        assert nc.scene_id == SCENE_ID and nc.model == "unet (tiny)"
        assert nc.input_files == f"a_prep.nc, {SCENE_ID}_prep.nc"
        for name, standard, units in (("lat", "latitude", "degrees_north"),
                                      ("lon", "longitude", "degrees_east"),
                                      ("model_lat", "latitude", "degrees_north"),
                                      ("model_lon", "longitude", "degrees_east")):  # 4.1, 4.2
            assert (nc[name].standard_name, nc[name].units) == (standard, units)
        assert nc["time"].standard_name == "time" and nc["time"].units.split()[1] == "since"  # 4.4
        for chart in schema.CHARTS:
            var = nc[chart]
            var.set_auto_mask(False)
            n = schema.N_CLASSES[chart]
            assert var.dimensions == schema.SAR_DIMS and var.dtype == np.uint8
            flags, meanings = var.flag_values, var.flag_meanings.split(" ")  # 3.5
            assert flags.dtype == var.dtype and flags.tolist() == list(range(n))
            assert meanings == MEANINGS[chart] and all(CF_WORD.fullmatch(m) for m in meanings)
            assert var.valid_range.dtype == var.dtype and var.valid_range.tolist() == [0, n - 1]
            fill = var.getncattr("_FillValue")  # 2.5.1: fill outside the valid range
            assert fill == 255 and not var.valid_range[0] <= fill <= var.valid_range[1]
            for coordinate in var.coordinates.split():  # 5: auxiliary coordinates exist and
                assert set(nc[coordinate].dimensions) <= set(var.dimensions)  # share its dims
            colours = var.flag_colors.split(" ")
            assert colours == list(schema.CLASSES[chart].colours) and len(colours) == n
            assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
        assert "SIC_probability" not in nc.variables  # regression SIC has no probabilities
        for chart in ("SOD", "FLOE"):
            var = nc[f"{chart}_probability"]
            assert var.dimensions == (f"{chart}_class", "model_lines", "model_samples")
            assert var.units == "percent" and var.valid_range.tolist() == [0, 100]
            assert nc[f"{chart}_class"][:].tolist() == list(range(schema.N_CLASSES[chart]))
            for coordinate in var.coordinates.split():
                assert set(nc[coordinate].dimensions) <= set(var.dimensions)


def test_xarray_opens_it_without_warnings_and_decodes_the_classes(chart_file):
    charts = _charts((110, 135))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with xr.open_dataset(chart_file) as ds:
            ds.load()
    for chart, values in charts.items():
        decoded = ds[chart].values
        np.testing.assert_array_equal(np.isnan(decoded), values == 255)
        np.testing.assert_array_equal(decoded[values != 255], values[values != 255])
        assert set(ds[chart].coords) == {"lat", "lon", "time"}
    assert ds["time"].values == np.datetime64("2019-04-17T07:58:10")
    assert set(ds["SOD_probability"].coords) == {"SOD_class", "model_lat", "model_lon", "time"}
    sod = ds["SOD_probability"].values
    assert sod.shape == (6, 55, 67)
    np.testing.assert_array_equal(sod[:, 7, 9], [0, 25, 0, 0, 75, 0])
    np.testing.assert_array_equal(ds["FLOE_probability"].values[:, -1, -1], [0, 0, 0, 0, 0, 100, 0])
    assert cf.read_charts(chart_file)[0] == SCENE_ID
    got = cf.read_probabilities(chart_file)
    assert set(got) == {"SOD", "FLOE"} and np.array_equal(got["SOD"], sod)


def test_decoded_lat_lon_equal_the_tie_points_at_the_tie_point_pixels(tiepoints, tmp_path):
    # tie points every 5 lines and 6 samples of the 80 m grid ...
    at_pixels = TiePointGrid(np.arange(21) * 5.0, np.arange(21) * 6.0, tiepoints.lat, tiepoints.lon)
    path = cf.write_charts(tmp_path / "a.nc", SCENE_ID, _charts((101, 121)), at_pixels)
    with xr.open_dataset(path) as ds:
        lat, lon = ds["lat"].values[::5, ::6], ds["lon"].values[::5, ::6]
    np.testing.assert_allclose(lat, tiepoints.lat, atol=1e-4)
    np.testing.assert_allclose((lon - tiepoints.lon + 180) % 360 - 180, 0, atol=1e-4)
    # ... and at the centres of every 5th and 6th pixel of a model grid of 2 x 80 m, whose
    # pixel (i, j) covers lines 2i, 2i + 1 (centre 2i + 0.5)
    on_model = TiePointGrid(np.arange(21) * 10 + 0.5, np.arange(21) * 12 + 0.5, tiepoints.lat,
                            tiepoints.lon)
    path = cf.write_charts(tmp_path / "b.nc", SCENE_ID, _charts((202, 242)), on_model,
                           _probabilities((101, 121)), downsample=2)
    with xr.open_dataset(path) as ds:
        assert ds["model_lat"].shape == (101, 121)
        lat, lon = ds["model_lat"].values[::5, ::6], ds["model_lon"].values[::5, ::6]
    np.testing.assert_allclose(lat, tiepoints.lat, atol=1e-4)
    np.testing.assert_allclose((lon - tiepoints.lon + 180) % 360 - 180, 0, atol=1e-4)


def test_a_half_written_file_never_reads_as_a_chart_file(chart_file, tiepoints, tmp_path,
                                                         monkeypatch):
    path = tmp_path / f"{SCENE_ID}_charts.nc"
    shutil.copy(chart_file, path)
    before = path.read_bytes()

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cf, "_write_lonlat", disk_full)  # fails after the charts are written
    with pytest.raises(OSError, match="No space left"):
        cf.write_charts(path, SCENE_ID, _charts((110, 135), seed=1), tiepoints)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]  # no temp file
    monkeypatch.undo()

    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(before[:len(before) // 2])
    with pytest.raises(SceneError, match="truncated.nc: not a readable netCDF"):
        cf.read_charts(truncated)
    no_floe = tmp_path / "no_floe.nc"
    shutil.copy(chart_file, no_floe)
    with netCDF4.Dataset(no_floe, "a") as nc:
        nc.renameVariable("FLOE", "FLOE_partial")
    with pytest.raises(SceneError, match="no_floe.nc: FLOE: missing"):
        cf.read_charts(no_floe)
    with netCDF4.Dataset(no_floe, "a") as nc:
        nc.renameVariable("FLOE_partial", "FLOE")
        nc["SOD"].set_auto_mask(False)
        nc["SOD"][0, 0] = 9
    with pytest.raises(SceneError, match=r"no_floe.nc: SOD: .*\[9\]"):
        cf.read_charts(no_floe)
    with netCDF4.Dataset(no_floe, "a") as nc:
        nc.chart_format = "seaice-charts/1"
    with pytest.raises(SceneError, match="no_floe.nc: not a chart file"):
        cf.read_charts(no_floe)


def test_bad_charts_are_refused_by_name(tiepoints, tmp_path):
    charts = _charts((110, 135))
    with pytest.raises(ValueError, match=r"charts \['FLOE'\] missing"):
        cf.write_charts(tmp_path / "x.nc", SCENE_ID, {c: charts[c] for c in ("SIC", "SOD")}, tiepoints)
    with pytest.raises(ValueError, match="SOD: classes must be integers 0..5 or 255"):
        cf.write_charts(tmp_path / "x.nc", SCENE_ID, {**charts, "SOD": charts["SOD"] + 6}, tiepoints)
    with pytest.raises(ValueError, match="one shape"):
        cf.write_charts(tmp_path / "x.nc", SCENE_ID, {**charts, "SIC": charts["SIC"][1:]}, tiepoints)
    with pytest.raises(ValueError, match="is not a scene name"):
        cf.write_charts(tmp_path / "x.nc", "scene7", charts, tiepoints)
    with pytest.raises(ValueError, match=r"SOD probabilities: shape \(6, 55, 66\), expected "
                                         r"\(6, 55, 67\)"):
        cf.write_charts(tmp_path / "x.nc", SCENE_ID, charts, tiepoints,
                        {"SOD": np.zeros((6, 55, 66))}, downsample=2)
    with pytest.raises(ValueError, match="need the model grid's downsample"):
        cf.write_charts(tmp_path / "x.nc", SCENE_ID, charts, tiepoints, {"SOD": np.zeros((6, 55, 67))})
    assert list(tmp_path.iterdir()) == []


def test_predict_scenes_writes_probabilities_and_provenance(synthetic_dir, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: constant\n")
    target = sorted(synthetic_dir.glob("*_prep.nc"))[4]
    files = inference.predict_scenes(Constant(sod=3, floe=5, sic=4.4), [target], synthetic_dir,
                                     STORE_CFG, tmp_path / "out", probabilities=True,
                                     model_name="constant", config=config)
    probabilities = cf.read_probabilities(files[0])
    # SOD logits are 2 at class 3 and 0 elsewhere: softmax e^2 / (e^2 + 5) and 1 / (e^2 + 5)
    e2 = np.exp(2.0)
    expected = np.where(np.arange(6) == 3, round(100 * e2 / (e2 + 5)), round(100 / (e2 + 5)))
    assert probabilities["SOD"].shape == (6, 55, 67) and set(probabilities) == {"SOD", "FLOE"}
    with Scene(target) as scene:  # none on the cells covering a pixel without SAR data (no class there)
        withheld = cells_covering(~scene.sar_valid(), 2, (55, 67))
    assert withheld.any() and not withheld.all()
    np.testing.assert_array_equal(probabilities["SOD"], np.where(withheld, 255, expected[:, None, None]))
    with netCDF4.Dataset(files[0]) as nc:
        assert nc.model == "constant" and nc.model_grid_downsample == 2
        assert nc.model_config_sha256 == hashlib.sha256(b"model: constant\n").hexdigest()
        names = nc.input_files.split(", ")
    with Scene(target) as scene:
        valid = scene.sar_valid()
    assert names[-1] == target.name and all((synthetic_dir / n).is_file() for n in names)
    assert len(names) > 1  # the earlier acquisitions of its sequence
    sid, charts = cf.read_charts(files[0])
    np.testing.assert_array_equal(charts["SOD"], np.where(valid, 3, 255))


def test_the_writer_and_reader_need_no_torch(tiepoints, tmp_path):
    """Importing torch is made to fail: the chart file module and the watcher still work."""
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np
from seaice_lib.charts import cf, follow
from seaice_lib.data.geo import TiePointGrid
grid = TiePointGrid.regular(np.load({str(tmp_path / 'lat.npy')!r}), np.load({str(tmp_path / 'lon.npy')!r}), (40, 50))
charts = {{c: np.zeros((40, 50), np.uint8) for c in ("SIC", "SOD", "FLOE")}}
path = cf.write_charts({str(tmp_path / 'c.nc')!r}, "{SCENE_ID}", charts, grid)
print(cf.read_charts(path)[0], "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    np.save(tmp_path / "lat.npy", tiepoints.lat)
    np.save(tmp_path / "lon.npy", tiepoints.lon)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [SCENE_ID, "False"]


def test_the_region_is_recorded_and_a_file_whose_region_was_edited_is_charted_again(tiepoints, synthetic_dir,
                                                                                   tmp_path, caplog):
    """``region`` (the scene's, for SIGRID-3 file names) is recorded with every chart and is part of
    ``content_sha256`` (not of ``made_by``): a file whose region was removed or edited since reads
    as the same maker's and is charted again rather than refused; a scene whose ``original_id``
    names no region charts with an empty one (SIGRID-3 outputs then refuse it by name)."""
    path = tmp_path / f"{SCENE_ID}_charts.nc"
    made = cf.made_by("w" * 64, "pytorch", {"tile_overlap": 0.25})
    cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made}, region="CentralEast")
    with netCDF4.Dataset(path) as nc:
        assert nc.region == "CentralEast"
    assert cf.reusable(path, made)
    for edit in (lambda nc: nc.delncattr("region"), lambda nc: nc.setncattr("region", "Elsewhere")):
        cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made}, region="CentralEast")
        with netCDF4.Dataset(path, "a") as nc:
            edit(nc)
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert not cf.reusable(path, made)
        assert "its contents changed since it was written (content_sha256" in caplog.text
    scene = tmp_path / sorted(synthetic_dir.glob("*_prep.nc"))[0].name
    shutil.copy(synthetic_dir / scene.name, scene)
    with netCDF4.Dataset(scene, "a") as nc:
        nc.setncattr("original_id", "renamed_by_hand.nc")
    with Scene(scene) as s:
        charts = s.charts()
    caplog.clear()
    with caplog.at_level("WARNING"):
        written = cf.write_scene_charts(tmp_path / "b" / f"{scene.name[:19]}_charts.nc", scene, charts)
    with netCDF4.Dataset(written) as nc:
        assert nc.region == ""
    assert "original_id" in caplog.text and "records no region" in caplog.text


# the attributes of a chart made from unusable inputs (cf.write_predicted), as the package check reads them
PROBLEMS = {"masked_history_inputs": "a_prep.nc: nersc_sar_primary 3 values masked as not finite or out of range",
            "non_finite_model_outputs": "store pixels without a class: SIC 2",
            "left_out_history_inputs": "b_prep.nc: not a readable netCDF file"}


def _after_edit(path, tiepoints, made, attrs, edit, caplog) -> str:
    """What ``cf.reusable`` makes of a chart file written with ``attrs`` (and kept before) once
    ``edit(nc)`` changed it: ``"kept"``, ``"charted again: WARNING"`` or ``"refused: ERROR"``."""
    cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made, **attrs}, region="CentralEast")
    assert cf.reusable(path, made)
    with netCDF4.Dataset(path, "a") as nc:
        edit(nc)
    caplog.clear()
    try:
        with caplog.at_level("WARNING"):
            return "kept" if cf.reusable(path, made) else f"charted again: {caplog.text}"
    except ValueError as err:  # the chart of another scene than its name says: refused by name
        return f"refused: {err}"


CHANGED = "charted again: WARNING"  # how the content check's warning starts, its reason follows
CONTENT_CHANGED = "its contents changed since it was written (content_sha256"


def _other(value):
    """Another value of an attribute's type."""
    return f"{value} (edited)" if isinstance(value, str) else np.asarray(value) + 1


def test_a_chart_with_any_global_attribute_removed_changed_or_added_is_charted_again(tiepoints, tmp_path, caplog):
    """``content_sha256`` covers every global attribute by name and value: each one of a chart made
    from unusable inputs removed or changed, each problem attribute added to a clean chart, and a
    ``made_by`` rewritten to the maker asked for, and the chart is not kept (charted again)."""
    path = tmp_path / f"{SCENE_ID}_charts.nc"
    made = cf.made_by("w" * 64, "pytorch", {"tile_overlap": 0.25})
    cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made, **PROBLEMS})
    with netCDF4.Dataset(path) as nc:
        names = sorted(set(nc.ncattrs()) - {"content_sha256", "made_by"})
    assert set(PROBLEMS) <= set(names) and {"scene_id", "region", "history"} <= set(names)
    for name in names:
        for edit in (lambda nc: nc.delncattr(name), lambda nc: nc.setncattr(name, _other(nc.getncattr(name)))):
            outcome = _after_edit(path, tiepoints, made, PROBLEMS, edit, caplog)
            assert outcome.startswith(CHANGED) or outcome.startswith(f"refused: {path}"), (name, outcome)
            assert name not in PROBLEMS or CONTENT_CHANGED in outcome, (name, outcome)
    for name, value in PROBLEMS.items():
        outcome = _after_edit(path, tiepoints, made, {}, lambda nc: nc.setncattr(name, value), caplog)
        assert CONTENT_CHANGED in outcome, (name, outcome)
    other = cf.made_by("w" * 64, "pytorch", {"tile_overlap": 0.25}, producer={"institution": "elsewhere"})
    cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": other})
    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr("made_by", made)
    with caplog.at_level("WARNING"):
        assert not cf.reusable(path, made)
    assert CONTENT_CHANGED in caplog.text


_DATASET = netCDF4.Dataset


class _Recording:
    """A netCDF4.Dataset that adds the name of every global attribute asked for or looked up to ``read``."""

    read: set[str] = set()

    class Names(list):
        def __contains__(self, name):
            _Recording.read.add(name)
            return super().__contains__(name)

    def __init__(self, path, *args, **kwargs):
        self.nc = _DATASET(path, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.nc.close()

    def ncattrs(self):
        return self.Names(self.nc.ncattrs())

    def getncattr(self, name):
        self.read.add(name)
        return self.nc.getncattr(name)

    def __getattr__(self, name):
        if not hasattr(_DATASET, name):  # an attribute, not a method of the dataset
            self.read.add(name)
        return getattr(self.nc, name)


def test_every_attribute_the_package_check_reads_is_covered_by_content_sha256(tiepoints, tmp_path, monkeypatch,
                                                                              caplog):
    """The global attributes ``cf.unusable_inputs`` reads from a chart file (recorded while it checks
    one with every problem, so one a later version reads is listed too) are each covered: removed
    from that chart, or added to a clean one, the chart is charted again, never kept for the package."""
    path = tmp_path / f"{SCENE_ID}_charts.nc"
    made = cf.made_by("w" * 64, "pytorch", {"tile_overlap": 0.25})
    cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made, **PROBLEMS})
    _Recording.read = set()
    monkeypatch.setattr(netCDF4, "Dataset", _Recording)
    said = cf.unusable_inputs([], [path], schema.SAR_VARIABLES)
    monkeypatch.undo()
    assert all(value in said for value in PROBLEMS.values())
    read = _Recording.read
    assert set(PROBLEMS) | {"scene_id"} <= read
    for name in sorted(read):
        for attrs, edit in ((PROBLEMS, lambda nc: nc.delncattr(name)), ({}, lambda nc: nc.setncattr(name, "x"))):
            cf.write_charts(path, SCENE_ID, _charts((40, 50)), tiepoints, attrs={"made_by": made, **attrs})
            with netCDF4.Dataset(path) as nc:
                there = name in nc.ncattrs()
            if there == (attrs == PROBLEMS):  # removed where it is, added where it is not (clean charts lack some)
                outcome = _after_edit(path, tiepoints, made, attrs, edit, caplog)
                assert outcome.startswith(CHANGED) or outcome.startswith(f"refused: {path}"), (name, outcome)
                assert name not in PROBLEMS or CONTENT_CHANGED in outcome, (name, outcome)
