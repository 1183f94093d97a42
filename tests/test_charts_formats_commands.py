"""``--format`` in ``seaice predict`` and ``seaice edge-predict``, on scenes and with ``--follow``:
every format of a predicted chart, the producer's metadata in the chart files, and the SIGRID-3
polygons of the prediction giving back its classes."""

import shutil
import subprocess
import sys

import netCDF4
import numpy as np
import pytest

from seaice_lib import cli, schema
from seaice_lib.charts import cf, maps
from tests.commands import usage_error
from tests.scene_edits import copy_scenes, edit_variable, twin_of
from tests.test_charts_maps import _rasterised_back, sigrid_of

ALL = "netcdf,sigrid3,geotiff,gpkg,netcdf-grid"


def _outputs(out, scene):
    scene_id, sigrid = scene.name[:19], sigrid_of(scene)
    return {f"{scene_id}_charts.nc", f"{scene_id}_SIC.tif", f"{scene_id}_SOD.tif", f"{scene_id}_FLOE.tif",
            f"{scene_id}_charts_epsg3413.nc", sigrid, f"{sigrid}.gpkg"} <= {p.name for p in out.iterdir()} \
        and (out / sigrid / f"{sigrid}.shp.xml").is_file()


def _polygons_give_back_the_prediction(out, scene_id, scene):
    """Off land, the polygons rasterised back give the predicted classes on at least 99 % of
    pixels; land (the scene's distance map) is a land polygon whatever the model said there."""
    source = maps.read_source(cf.charts_path(out, scene_id))
    shapefile = out / sigrid_of(scene) / f"{sigrid_of(scene)}.shp"
    _, decoded = _rasterised_back(shapefile, source)
    land = maps.land_mask(scene)
    charts = dict(source.charts)
    water_or_none = np.isin(charts["SIC"], (0, 255))  # SIGRID-3 water and no data: one class for all three
    for chart in ("SOD", "FLOE"):
        charts[chart] = np.where(water_or_none, charts["SIC"], charts[chart])
    for chart in schema.CHARTS:
        assert (decoded[chart][~land] == charts[chart][~land]).mean() >= 0.99, chart
        assert (decoded[chart][land] == 255).mean() >= 0.95, chart  # land reads as no label (but its edges)


def test_predict_writes_every_format_with_the_producer_metadata(run_dir, synthetic_dir, tmp_path, monkeypatch):
    target = sorted(synthetic_dir.glob("*_prep.nc"))[3]
    out = tmp_path / "charts"
    argv = ["predict", str(run_dir), str(target), "--out", str(out), "--quiet", "--format", ALL,
            "--institution", "Ship's ice office", "--creator", "Officer on watch", "--license", "CC0-1.0"]
    monkeypatch.setattr(sys, "argv", ["seaice", *argv])  # the command line the history records
    status = cli.main(argv)
    assert status == 0
    scene_id = target.name[:19]
    assert _outputs(out, target) and (out / "upload_package.nc").is_file()
    with netCDF4.Dataset(cf.charts_path(out, scene_id)) as nc:
        assert (nc.institution, nc.creator_name, nc.license) == ("Ship's ice office", "Officer on watch", "CC0-1.0")
        assert nc.history.endswith("command: seaice " + " ".join(argv))
    with netCDF4.Dataset(out / f"{scene_id}_charts_epsg3413.nc") as nc:
        assert nc.institution == "Ship's ice office" and len(nc.history.splitlines()) == 2
    _polygons_give_back_the_prediction(out, scene_id, target)
    # a second run keeps the chart file (same model, options and producer) and makes the other formats again
    before = cf.charts_path(out, scene_id).stat().st_mtime_ns
    assert cli.main([*argv[:5], "--quiet", "--format", "geotiff", *argv[8:]]) == 0
    assert cf.charts_path(out, scene_id).stat().st_mtime_ns == before


def test_predict_makes_no_polygons_and_no_package_where_the_distance_map_is_not_finite(run_dir, synthetic_dir,
                                                                                      tmp_path, capsys):
    """A NaN zone is neither land nor water: the model's classes would be drawn as ice over land.
    ``predict`` names the scene and the variable, writes no polygons and no upload package, and
    removes the package an earlier run left there."""
    scenes = copy_scenes(sorted(synthetic_dir.glob("*_prep.nc")), tmp_path / "scenes")
    target = sorted(scenes.glob("*_prep.nc"))[3]
    out = tmp_path / "charts"
    assert cli.main(["predict", str(run_dir), str(target), "--out", str(out), "--quiet"]) == 0
    assert (out / "upload_package.nc").exists()  # of the scene before its distance map broke
    edit_variable(target, "distance_map", lambda v: v.__setitem__((slice(10, 20), slice(10, 20)), np.nan))
    assert cli.main(["predict", str(run_dir), str(target), "--out", str(out), "--quiet", "--format",
                     "netcdf,sigrid3"]) == 1
    err = capsys.readouterr().err
    assert f"{target}: distance_map: 100 values are not finite" in err and "Traceback" not in err
    assert not list(out.glob("*/*.shp")) and not (out / "upload_package.nc").exists()


def test_predict_follow_writes_the_formats_of_each_scene(run_dir, synthetic_dir, tmp_path):
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    shutil.copy(scene, watch / scene.name)
    run = subprocess.run([sys.executable, "-m", "seaice_lib", "predict", str(run_dir), "--follow", str(watch),
                          "--history", str(synthetic_dir), "--out", str(out), "--poll", "0.2",
                          "--quiet", "--max-scenes", "1", "--format", "netcdf,geotiff,gpkg"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    scene_id = scene.name[:19]
    assert {f"{scene_id}_charts.nc", f"{scene_id}_SIC.tif", f"{sigrid_of(scene)}.gpkg"} <= {p.name for p in out.iterdir()}


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """The tiny U-Net run, exported for the edge runtime."""
    run = tmp_path_factory.mktemp("edge_formats") / "run"
    shutil.copytree(run_dir, run)
    assert cli.main(["export", str(run)]) == 0
    return run


def test_edge_predict_writes_every_format(exported, synthetic_dir, tmp_path, monkeypatch):
    target = sorted(synthetic_dir.glob("*_prep.nc"))[4]
    out = tmp_path / "charts"
    argv = ["edge-predict", str(exported), str(target), "--history", str(synthetic_dir), "--out", str(out),
            "--threads", "1", "--quiet", "--format", ALL, "--crs", "3413", "--institution", "Edge office"]
    monkeypatch.setattr(sys, "argv", ["seaice", *argv])
    status = cli.main(argv)
    assert status == 0
    scene_id = target.name[:19]
    assert _outputs(out, target)
    with netCDF4.Dataset(cf.charts_path(out, scene_id)) as nc:
        assert nc.institution == "Edge office" and "edge-predict" in nc.history
    _polygons_give_back_the_prediction(out, scene_id, target)


def test_a_chart_charted_again_by_the_edge_runtime_takes_the_upload_package_holding_it_away(
        run_dir, exported, synthetic_dir, tmp_path, caplog):
    """RT20-R8: edge-predict --overwrite replaced predict's chart and left predict's package, which
    then stood for the new chart with the other model's classes."""
    target = sorted(synthetic_dir.glob("*_prep.nc"))[4]
    out = tmp_path / "charts"
    common = [str(target), "--history", str(synthetic_dir), "--out", str(out), "--quiet"]
    assert cli.main(["predict", str(run_dir), *common]) == 0
    package = out / cf.UPLOAD_PACKAGE
    assert cf.package_is_current(package)
    assert cli.main(["edge-predict", str(exported), *common, "--threads", "1"]) == 1  # kept apart: another maker
    assert cf.package_is_current(package)
    assert cli.main(["edge-predict", str(exported), *common, "--threads", "1", "--overwrite"]) == 0
    assert not package.exists() and cf.charts_path(out, target.name[:19]).is_file()
    assert f"{package}: removed: it held the chart of {target.name[:19]}, which is charted again" in caplog.text
    assert cli.main(["predict", str(run_dir), *common, "--overwrite"]) == 0 and package.is_file()
    watch = tmp_path / "landing"  # and a followed scene charted again
    watch.mkdir()
    shutil.copy(target, watch / target.name)
    assert cli.main(["edge-predict", str(exported), "--follow", str(watch), "--history", str(synthetic_dir), "--out",
                     str(out), "--quiet", "--threads", "1", "--overwrite", "--poll", "0.1", "--max-scenes", "1"]) == 0
    assert not package.exists()


def test_edge_follow_writes_the_formats_of_each_scene(exported, synthetic_dir, tmp_path):
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    shutil.copy(scene, watch / scene.name)
    run = subprocess.run([sys.executable, "-m", "seaice_lib", "edge-predict", str(exported), "--follow", str(watch),
                          "--scenes", str(synthetic_dir), "--out", str(out), "--poll", "0.2", "--threads", "1",
                          "--max-scenes", "1", "--format", "sigrid3,netcdf-grid", "--spacing", "160"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    scene_id = scene.name[:19]
    assert {f"{scene_id}_charts.nc", f"{scene_id}_charts_epsg3413.nc", sigrid_of(scene)} <= \
        {p.name for p in out.iterdir()}
    with netCDF4.Dataset(out / f"{scene_id}_charts_epsg3413.nc") as nc:
        assert nc.grid_spacing_m == 160


@pytest.mark.parametrize("stage", ["predict", "edge-predict"])
@pytest.mark.parametrize("args, message", [
    (["--format", "shp"], "--format shp: shp is not one of netcdf, sigrid3, gpkg, geotiff, netcdf-grid"),
    (["--crs", "4326"], "--crs 4326: WGS 84 is not a projected CRS in metres"),
    (["--tolerance", "-1"], "--tolerance -1.0: must be a finite number of metres >= 0"),
    (["--centre", "a" * 17], f"--centre {'a' * 16}...: at most 16 letters and digits, not 17"),
    (["--creator-email", "ice at dmi.dk"], "--creator-email 'ice at dmi.dk': not an email address"),
    (["--institution", "Inst\x01X"], "--institution 'Inst\\x01X': the character '\\x01' cannot go into"),
])
def test_format_usage_errors_are_one_line(stage, args, message, synthetic_dir, tmp_path, capsys):
    target = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    err = usage_error([stage, str(tmp_path), str(target), "--out", str(tmp_path / "o"), *args], capsys)
    assert message in err


def test_follow_makes_the_formats_of_a_chart_it_keeps(run_dir, synthetic_dir, tmp_path):
    """A chart already there from the same model is passed over, but the formats asked for now are
    made from it (a restart that adds --format, or a follow stopped between a chart and its maps)."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    shutil.copy(scene, watch / scene.name)
    follow = ["predict", str(run_dir), "--follow", str(watch), "--history", str(synthetic_dir), "--out", str(out),
              "--poll", "0.2", "--idle-exit", "1", "--quiet"]
    assert cli.main(follow) == 0
    scene_id = scene.name[:19]
    chart = cf.charts_path(out, scene_id)
    before = chart.stat().st_mtime_ns
    assert not list(out.glob("*.tif"))
    assert cli.main([*follow, "--format", "netcdf,geotiff"]) == 0
    assert chart.stat().st_mtime_ns == before  # kept, not charted again
    assert {f"{scene_id}_SIC.tif", f"{scene_id}_SOD.tif", f"{scene_id}_FLOE.tif"} <= {p.name for p in out.iterdir()}


def _twins(synthetic_dir, folder):
    """A scene copied into ``folder`` with its twin (another scene of its region and minute)."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[1]
    folder.mkdir()
    shutil.copy(scene, folder / scene.name)
    return folder / scene.name, twin_of(scene, folder)


def test_predict_refuses_twin_scenes_before_writing_any_chart_file(run_dir, synthetic_dir, tmp_path, capsys):
    scene, twin = _twins(synthetic_dir, tmp_path / "scenes")
    out = tmp_path / "charts"
    assert cli.main(["predict", str(run_dir), str(scene), str(twin), "--history", str(synthetic_dir), "--out",
                     str(out), "--quiet", "--format", "netcdf,sigrid3"]) == 1
    err = capsys.readouterr().err
    assert f"{scene} and {twin}: both scenes would be written as the SIGRID-3 polygons {sigrid_of(scene)}" in err
    assert "write them into different --out folders" in err
    assert not list(out.glob("*_charts.nc"))


@pytest.mark.parametrize("stage", ["predict", "edge-predict"])
def test_a_crs_of_another_region_is_a_usage_error_before_any_scene_is_charted(stage, run_dir, exported,
                                                                              synthetic_dir, tmp_path, capsys):
    """RT19-R13: --crs 3031 (south polar) for Arctic scenes was refused per scene after charting
    each one; now at once, exit 2, naming --crs and the first scene, and nothing is written."""
    first, second = sorted(synthetic_dir.glob("*_prep.nc"))[:2]
    out = tmp_path / "new" / "charts"
    run = run_dir if stage == "predict" else exported
    assert cli.main([stage, str(run), str(first), str(second), "--history", str(synthetic_dir), "--out", str(out),
                     "--quiet", "--format", "netcdf,geotiff", "--crs", "3031"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"seaice {stage}: error: --crs 3031: WGS 84 / Antarctic Polar Stereographic distorts "
                          f"lengths on scene {first.name[:19]} by a factor of ")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_follow_refuses_a_twin_before_charting_it_and_exits_1(run_dir, synthetic_dir, tmp_path, capsys):
    """The twin landed first is charted; the other scene is refused, naming the polygons there,
    before its chart file is written; --idle-exit then ends the command with status 1."""
    scene, twin = _twins(synthetic_dir, tmp_path / "landing")
    out = tmp_path / "charts"
    status = cli.main(["predict", str(run_dir), "--follow", str(scene.parent), "--history", str(synthetic_dir),
                       "--out", str(out), "--poll", "0.2", "--idle-exit", "1", "--quiet", "--format", "netcdf,sigrid3"])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    assert f"skipped: {scene.name}: {out / sigrid_of(scene)}: holds the SIGRID-3 polygons of scene " \
           f"{twin.name[:19]}" in captured.out
    assert f"1 files left without their charts (named above): {scene}" in captured.err
    assert {p.name for p in out.glob("*_charts.nc")} == {f"{twin.name[:19]}_charts.nc"}


def test_the_map_step_of_predict_walks_past_a_scene_whose_outputs_cannot_be_written(run_dir, synthetic_dir, tmp_path,
                                                                                     capsys):
    """A folder where one scene's GeoTIFF goes: that scene is named (its maps failed), the other
    scene's maps are made, the summary is printed, no upload package, exit 1."""
    first, second = sorted(synthetic_dir.glob("*_prep.nc"))[2:4]
    out = tmp_path / "charts"
    (out / f"{first.name[:19]}_SOD.tif").mkdir(parents=True)
    assert cli.main(["predict", str(run_dir), str(first), str(second), "--out", str(out), "--quiet",
                     "--format", "netcdf,geotiff"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {first}: its maps: {out / first.name[:19]}_SOD.tif: a folder is in the way of the file" in err
    assert "1 failed" in err and "Traceback" not in err
    assert {p.name for p in out.glob(f"{second.name[:19]}_*.tif")} == {f"{second.name[:19]}_{c}.tif" for c in schema.CHARTS}
    assert not (out / "upload_package.nc").exists()
