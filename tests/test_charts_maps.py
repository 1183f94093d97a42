"""Charts as maps and SIGRID-3 polygons (``seaice_lib.charts.maps``), checked with tools the project
did not write: GDAL's command-line tools (Debian gdal-bin) open every output, the IOOS compliance
checker (CF 1.11, ACDD 1.3) reads the netCDF files, GDAL's rasteriser puts the polygons back on the
chart grid and the project's own raw-chart reader decodes their egg codes."""

import argparse
import datetime as dt
import json
import logging
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import netCDF4
import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from compliance_checker.runner import CheckSuite, ComplianceChecker
from pyproj import CRS, Transformer

from seaice_lib import cli, schema
from seaice_lib.charts import cf, fgdc, maps
from seaice_lib.data import icechart
from seaice_lib.data.scene import Scene, SceneError
from seaice_lib.walk import Walk
from tests.rendering import tool

DOWNSAMPLE = 2


@pytest.fixture(scope="module")
def known(synthetic_dir, tmp_path_factory):
    """A synthetic scene's own (known) charts written as a chart file, with one-hot probabilities
    of SOD and FLOE on a model grid of 2 x 80 m."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[1]
    with Scene(scene) as s:
        charts, tiepoints, scene_id, original = s.charts(), s.tiepoints, s.scene_id, s.ds.attrs["original_id"]
    h, w = charts["SIC"].shape
    probabilities = {}
    for chart in ("SOD", "FLOE"):
        coarse = charts[chart][:h // DOWNSAMPLE * DOWNSAMPLE:DOWNSAMPLE, :w // DOWNSAMPLE * DOWNSAMPLE:DOWNSAMPLE]
        onehot = np.stack([(coarse == k) for k in range(schema.N_CLASSES[chart])]).astype(float)
        onehot[:, coarse == 255] = np.nan
        probabilities[chart] = onehot
    path = cf.write_charts(tmp_path_factory.mktemp("maps") / f"{scene_id}_charts.nc", scene_id, charts, tiepoints,
                           probabilities, DOWNSAMPLE,
                           {**cf.provenance("known chart", None, [scene]),
                            "made_by": cf.made_by("k" * 64, "test", {}, inputs=[scene]),
                            **cf.producer("Test Ice Service", "A. Tester", license="CC BY 4.0")},
                           region=schema.region_from_raw(original))
    return scene, path, charts


@pytest.fixture(scope="module")
def converted(known, tmp_path_factory):
    scene, path, _ = known
    out = tmp_path_factory.mktemp("converted")
    written = maps.convert(path, out, maps.FORMATS, scene=scene)
    return out, written


def _name(known, suffix):
    return known[1].name.replace("_charts.nc", suffix)


def sigrid_of(scene, centre: str = "sil") -> str:
    """The SIGRID-3 name of a scene's polygons, written out here from the convention: producer,
    the region in the raw name the scene keeps (``original_id``), the acquisition time of its id to
    the minute (UTC), ``pl_a``."""
    with netCDF4.Dataset(scene) as nc:
        service, *parts = nc.original_id.split("_icechart_")[1].split("_")  # cis_<Region>_... / dmi_<time>_<Region>_...
    region, sid = parts[1] if service == "dmi" else parts[0], scene.name[:19]
    return f"{centre}_{region}_{sid[:8]}T{sid[9:13]}Z_pl_a"


def _known_sigrid(known, centre: str = "sil") -> str:
    return sigrid_of(known[0], centre)


def _gdalinfo(*args) -> dict:
    run = subprocess.run([tool("gdalinfo"), "-json", *map(str, args)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _ogrinfo(path) -> str:
    run = subprocess.run([tool("ogrinfo"), "-al", "-so", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _epsg(wkt: str) -> int | None:
    return CRS.from_wkt(wkt).to_epsg(min_confidence=70)


def _expected_grid(known):
    return maps.grid_for(maps.read_source(known[1]), maps.map_crs(maps.DEFAULT_EPSG), maps.DEFAULT_SPACING_M)


def test_every_output_is_written(known, converted):
    out, written = converted
    sid = known[1].name[:19]
    names = {p.name for p in written}
    sigrid = _known_sigrid(known)
    assert names == {f"{sid}_charts.nc", f"{sid}_SIC.tif", f"{sid}_SOD.tif", f"{sid}_FLOE.tif",
                     f"{sid}_SOD_probability.tif", f"{sid}_FLOE_probability.tif", f"{sid}_charts_epsg3413.nc",
                     sigrid, f"{sigrid}.gpkg"}
    shapefile = sorted(p.name for p in (out / sigrid).iterdir())
    assert shapefile == [f"{sigrid}.{ext}" for ext in ("cpg", "dbf", "json", "prj", "shp", "shp.xml", "shx")]
    assert not list(out.glob(".*"))  # no temporary file left


def test_gdalinfo_reads_the_crs_extent_colours_and_classes_of_each_geotiff(known, converted):
    out, _ = converted
    grid = _expected_grid(known)
    left, top = grid.transform.c, grid.transform.f
    for chart in schema.CHARTS:
        info = _gdalinfo("-hist", out / _name(known, f"_{chart}.tif"))
        assert _epsg(info["coordinateSystem"]["wkt"]) == 3413
        assert info["geoTransform"] == [left, 80.0, 0.0, top, 0.0, -80.0]
        assert info["size"] == [grid.width, grid.height]
        assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
        band = info["bands"][0]
        assert band["noDataValue"] == 255 and band["colorInterpretation"] == "Palette"
        entries = band["colorTable"]["entries"]
        colours = ["#%02x%02x%02x" % tuple(e[:3]) for e in entries[:schema.N_CLASSES[chart]]]
        assert colours == list(schema.CLASSES[chart].colours)
        assert info["metadata"][""]["flag_meanings"] == " ".join(cf.flag_meanings(chart))
        counts = band["histogram"]["buckets"]  # 256 buckets of one value each: -0.5 .. 255.5
        assert (band["histogram"]["min"], band["histogram"]["max"], len(counts)) == (-0.5, 255.5, 256)
        on_map = {v for v, n in enumerate(counts) if n and v != 255}
        values, n = np.unique(known[2][chart], return_counts=True)
        assert {int(v) for v, k in zip(values, n) if v != 255 and k >= 50} <= on_map <= {int(v) for v in values}
    probability = _gdalinfo(out / _name(known, "_SOD_probability.tif"))
    assert len(probability["bands"]) == schema.N_CLASSES["SOD"] and _epsg(probability["coordinateSystem"]["wkt"]) == 3413


def test_gdalinfo_reads_the_gridded_netcdf_as_a_map(known, converted):
    out, _ = converted
    grid = _expected_grid(known)
    info = _gdalinfo(f"NETCDF:{out / _name(known, '_charts_epsg3413.nc')}:SOD")
    assert _epsg(info["coordinateSystem"]["wkt"]) == 3413
    assert info["geoTransform"] == [grid.transform.c, 80.0, 0.0, grid.transform.f, 0.0, -80.0]
    assert info["size"] == [grid.width, grid.height]
    assert info["metadata"][""]["SOD#standard_name"] == "sea_ice_classification"
    assert info["metadata"][""]["SOD#flag_meanings"] == " ".join(cf.flag_meanings("SOD"))


def test_ogrinfo_reads_the_sigrid3_shapefile_and_geopackage(known, converted):
    out, _ = converted
    grid = _expected_grid(known)
    stem = _known_sigrid(known)
    for path in (out / stem / f"{stem}.shp", out / f"{stem}.gpkg"):
        text = _ogrinfo(path)
        assert "Geometry: Polygon" in text
        count = int(re.search(r"Feature Count: (\d+)", text).group(1))
        x0, y0, x1, y1 = map(float, re.search(r"Extent: \(([-\d.]+), ([-\d.]+)\) - \(([-\d.]+), ([-\d.]+)\)", text).groups())
        left, top = grid.transform.c, grid.transform.f
        assert left <= x0 < x1 <= left + grid.width * 80 and top - grid.height * 80 <= y0 < y1 <= top
        wkt = text.split("Layer SRS WKT:\n")[1].split("\nData axis")[0]
        assert _epsg(wkt) == 3413
        for field in ("AREA: Real", "PERIMETER: Real", *(f"{f}: String (2.0)" for f in maps.SIGRID_FIELDS),
                      "POLY_TYPE: String (1.0)"):
            assert field in text
        meta, _, geometry, fields = pyogrio.raw.read(path)
        assert len(geometry) == count > 3 and set(fields[list(meta["fields"]).index("POLY_TYPE")]) <= {"I", "W", "L", "N"}


def _rasterised_back(path, source, epsg: int = 3413):
    """The polygons of ``path`` rasterised on the chart grid (GDAL's rasteriser, pixel centres) and
    their SIGRID-3 codes decoded by the raw-chart reader (:func:`icechart.rasterize_charts`)."""
    meta, _, geometry, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    polygons = shapely.from_wkb(geometry)

    to_3413 = Transformer.from_crs(epsg, 3413, always_xy=True)

    def to_pixel(c):  # map metres -> (sample, line) with pixel centres at + 0.5
        line, sample = source.tiepoints.xy_to_pixel(*to_3413.transform(c[:, 0], c[:, 1]))
        return np.column_stack([sample + 0.5, line + 0.5])

    ids = rasterio.features.rasterize(((g, i + 1) for i, g in enumerate(shapely.transform(polygons, to_pixel))),
                                      out_shape=source.shape, transform=Affine.identity(), fill=0, dtype="int32")
    rows = [";".join([str(i + 1), *(str(int(fields[names.index(f)][i])) for f in maps.SIGRID_FIELDS),
                      str(fields[names.index("POLY_TYPE")][i])]) for i in range(len(polygons))]
    return polygons, icechart.rasterize_charts(np.where(ids > 0, ids, np.nan), icechart.format_polygon_codes(rows))


def test_sigrid3_polygons_are_valid_and_give_back_the_charts(known, converted):
    """Valid, a coverage (no overlap), and rasterised back at the default tolerance (80 m) they give
    the chart's classes on at least 99 % of pixels (water and no data read as one class for all)."""
    out, _ = converted
    source = maps.read_source(known[1])
    stem = _known_sigrid(known)
    polygons, decoded = _rasterised_back(out / stem / f"{stem}.shp", source)
    assert shapely.is_valid(polygons).all()
    union = shapely.union_all(polygons)
    assert abs(union.area - shapely.area(polygons).sum()) < 1e-6 * union.area  # no overlaps
    for chart in schema.CHARTS:
        agree = (decoded[chart] == known[2][chart]).mean()
        assert agree >= 0.99, f"{chart}: {agree:.4f}"


def test_the_gridded_classes_are_the_nearest_swath_pixels(known, converted):
    """Each map pixel carries the class of the swath pixel its centre falls in (all but the pixels
    along class edges, where GDAL's thin-plate spline and the tie-point spline part by centimetres),
    and the probabilities (one-hot here) agree with it and sum to 100."""
    out, _ = converted
    source = maps.read_source(known[1])
    with rasterio.open(out / _name(known, "_SOD.tif")) as ds:
        sod = ds.read(1)
        cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
        x, y = ds.transform @ (cols, rows)
    line, sample = source.tiepoints.xy_to_pixel(x, y)
    line, sample = np.rint(line).astype(int).reshape(x.shape), np.rint(sample).astype(int).reshape(x.shape)
    inside = (line >= 0) & (line < source.shape[0]) & (sample >= 0) & (sample < source.shape[1])
    expected = known[2]["SOD"][line[inside], sample[inside]]
    assert (sod[inside] == expected).mean() >= 0.99 and (sod[~inside] == 255).mean() >= 0.99
    with rasterio.open(out / _name(known, "_SOD_probability.tif")) as ds:
        percent = ds.read()
    labelled = (sod != 255) & (percent[0] != 255)
    assert (percent[:, labelled].astype(int).sum(axis=0) == 100).all()
    assert (percent.argmax(axis=0)[labelled] == sod[labelled]).mean() >= 0.9


def _check(path, tmp_path, checker: str) -> dict:
    CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.name}.{checker}.json"
    ComplianceChecker.run_checker(str(path), [checker], verbose=0, criteria="strict", output_filename=str(report),
                                  output_format="json")
    return json.loads(report.read_text())[checker]


@pytest.mark.filterwarnings("ignore:The ioos_sos checker is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Passing the dataset to every single check is deprecated:DeprecationWarning")
def test_the_cf_and_acdd_checkers_pass_the_gridded_and_the_swath_files(known, converted, tmp_path):
    out, _ = converted
    gridded = out / _name(known, "_charts_epsg3413.nc")
    report = _check(gridded, tmp_path, "cf:1.11")
    assert [(r["name"], r["msgs"]) for r in report["all_priorities"] if r["msgs"]] == []
    for path in (gridded, known[1]):
        report = _check(path, tmp_path, "acdd:1.3")
        # every highly recommended and recommended attribute; the charts are of the sea surface
        # (geospatial_vertical_min = max = 0), which has no vertical coordinate to match them
        # against; CF has no standard name of a floe-size class or of a class probability
        missing = [(r["name"], r["msgs"]) for r in report["all_priorities"]
                   if r["msgs"] and r["weight"] >= 2 and r["name"] != "geospatial_vertical_extents_match"]
        no_name = [(f'variable "{v}" missing the following attributes:', ["standard_name"])
                   for v in ("FLOE", "SOD_probability", "FLOE_probability")]
        assert all(m in no_name for m in missing), (path.name, missing)


def test_metadata_names_the_producer_the_software_and_the_command(known, converted):
    out, _ = converted
    with netCDF4.Dataset(out / _name(known, "_charts_epsg3413.nc")) as nc:
        assert nc.institution == "Test Ice Service" and nc.creator_name == "A. Tester" and nc.license == "CC BY 4.0"
        assert nc["crs"].grid_mapping_name == "polar_stereographic" and nc["SIC"].grid_mapping == "crs"
        assert nc["SIC"].standard_name == "sea_ice_area_fraction" and nc["SIC"].units == "0.1"
        assert (nc["x"].standard_name, nc["y"].standard_name) == ("projection_x_coordinate", "projection_y_coordinate")
        with netCDF4.Dataset(known[1]) as chart:
            assert nc.made_by == chart.made_by and known[1].name in nc.source_chart_file
        lines = nc.history.splitlines()
    assert len(lines) == 2 and all(re.search(r"seaice_lib \S+ \(commit [0-9a-f]{40}(\+dirty)?\)", line) for line in lines)
    assert "gridded the chart file" in lines[1] and "command: " in lines[1]


def test_charts_convert_takes_another_crs_and_spacing(known, tmp_path):
    status = cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path), "--format", "geotiff,sigrid3",
                       "--crs", "3995", "--spacing", "200", "--tolerance", "0", "--centre", "dmi"])
    assert status == 0
    info = _gdalinfo(tmp_path / _name(known, "_FLOE.tif"))
    assert _epsg(info["coordinateSystem"]["wkt"]) == 3995 and info["geoTransform"][1] == 200.0
    stem = _known_sigrid(known, "dmi")
    assert _epsg(_ogrinfo(tmp_path / stem / f"{stem}.shp").split("Layer SRS WKT:\n")[1]
                 .split("\nData axis")[0]) == 3995
    polygons, decoded = _rasterised_back(tmp_path / stem / f"{stem}.shp",
                                         maps.read_source(known[1]), 3995)
    # unsimplified polygons give every pixel back (the known chart has no land: land reads as no label)
    for chart in schema.CHARTS:
        assert (decoded[chart] == known[2][chart]).mean() >= 0.999


def test_maps_of_a_scene_under_another_centre_or_crs_replace_its_earlier_ones_of_that_format(known, tmp_path, caplog):
    """RT18-R13: polygons of a second --centre lay beside the first's: a delivery of the folder's
    ``*_pl_a`` files sent the scene twice. Formats not written again stay."""
    convert = ["charts", "convert", str(known[1]), "--out", str(tmp_path), "--tolerance", "0"]
    assert cli.main([*convert, "--format", "geotiff,sigrid3,gpkg,netcdf-grid", "--centre", "sil"]) == 0
    first = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main([*convert, "--format", "sigrid3,gpkg,netcdf-grid", "--centre", "dmi", "--crs", "3995"]) == 0
    sil, dmi = _known_sigrid(known, "sil"), _known_sigrid(known, "dmi")
    now = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(set(first) - set(now)) == sorted([sil, f"{sil}.gpkg", _name(known, "_charts_epsg3413.nc")])
    assert sorted(set(now) - set(first)) == sorted([dmi, f"{dmi}.gpkg", _name(known, "_charts_epsg3995.nc")])
    assert _name(known, "_SIC.tif") in now  # GeoTIFFs were not written again: kept (each records its CRS)
    removed = [r.getMessage() for r in caplog.records if "removed: an earlier output of scene" in r.getMessage()]
    assert len(removed) == 3 and any(m.startswith(str(tmp_path / sil)) for m in removed)


def test_a_crs_of_another_region_is_refused_by_the_scale_it_would_map_the_scene_at(known, tmp_path, capsys):
    """RT18-R6: EPSG:3031 (south polar) mapped an Arctic scene some 50 times too large, 73 000 km out;
    RT21-R7: a usage error before anything is written, as for predict, not a failure per file."""
    lat = maps.read_source(known[1]).tiepoints.lat
    k = (1 + np.sin(np.radians(71))) / (1 - np.sin(np.radians(lat)))  # spherical polar stereographic, true at 71 S
    with pytest.raises(SystemExit) as stopped:
        cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path / "m"), "--format", "geotiff",
                  "--crs", "3031"])
    err = capsys.readouterr().err
    found = re.search(r"--crs 3031: .* distorts lengths on scene \S+ by a factor of ([0-9.]+) \(more than 2", err)
    assert stopped.value.code == 2 and err.strip().splitlines()[-1].startswith("seaice charts convert: error: --crs 3031")
    assert found and float(found.group(1)) == pytest.approx(k.max(), rel=3e-2)  # the sphere vs the ellipsoid
    assert not (tmp_path / "m").exists()
    assert cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path / "n"), "--format", "geotiff",
                     "--crs", "3996"]) == 0  # another Arctic projection: at scale


def test_a_spacing_that_leaves_a_map_without_a_charted_pixel_fails_its_file(known, tmp_path, capsys):
    """RT18-R7: --spacing 25000 on a 13 km swath gave 2 x 1 maps of nodata alone, exit 0."""
    assert cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path), "--format", "geotiff,netcdf-grid",
                     "--spacing", "25000"]) == 1
    err = capsys.readouterr().err
    assert "--spacing 25000: the " in err and "holds no charted pixel" in err
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob("*_epsg*.nc"))


@pytest.mark.parametrize("args, message", [
    (["--format", "netcdf,kml"], "--format netcdf,kml: kml is not one of"),
    (["--crs", "4326"], "--crs 4326: WGS 84 is not a projected CRS in metres"),
    (["--crs", "999999"], "--crs 999999: not an EPSG code PROJ knows"),
    (["--spacing", "0"], "--spacing 0.0: must be a number of metres in (0, 25000]"),
    (["--spacing", "1e9"], "--spacing 1000000000.0: must be a number of metres in (0, 25000]"),
    (["--spacing", "nan"], "--spacing nan: must be a number of metres in (0, 25000]"),
    (["--centre", "a/b"], "--centre 'a/b': a producer code of letters and digits"),
    (["--centre", "a" * 240], f"--centre {'a' * 16}...: at most 16 letters and digits, not 240"),
])
def test_convert_usage_errors_are_one_line(known, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("seaice charts convert: error: ") and message in err[-1]


def test_convert_offers_no_producer_option(known, tmp_path, capsys):
    """RT15-R13: convert keeps the chart file's producer, so its help lists none of the producer's
    options (predict's does) and one given is an unknown argument, exit 2."""
    for argv, listed in ((["charts", "convert", "--help"], False), (["predict", "--help"], True)):
        with pytest.raises(SystemExit):
            cli.main(argv)
        shown = capsys.readouterr().out
        assert all((option in shown) == listed for option in ("--institution", "--creator", "--license"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path), "--creator", "Bob"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "seaice charts: error: unrecognized arguments: --creator Bob"


def test_a_producer_attribute_that_xml_cannot_hold_fails_that_file_by_name(known, tmp_path, capsys):
    """A chart file whose institution holds a control character gives no FGDC record no XML parser
    reads: the file fails, named, and nothing of it is written."""
    odd = _written_with(known, tmp_path / "odd", institution="Inst\x01X")
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(odd), "--out", str(out), "--format", "sigrid3"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {odd.name}" in err or str(odd) in err
    assert "which XML cannot hold" in err and not list(out.glob("*/*.shp.xml"))


@pytest.mark.parametrize("seconds", [np.nan, 1e14])
def test_a_chart_file_without_an_acquisition_time_fails_by_name_and_the_rest_convert(known, tmp_path, capsys,
                                                                                    seconds):
    odd = tmp_path / "odd" / "20190101T000000_dmi_charts.nc"
    odd.parent.mkdir()
    shutil.copy(known[1], odd)
    with netCDF4.Dataset(odd, "a") as nc:
        nc.scene_id = "20190101T000000_dmi"
        nc["time"][...] = seconds
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(odd), str(known[1]), "--out", str(out), "--format", "sigrid3"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {odd}: its contents changed since it was written" in err and "Traceback" not in err
    assert len(list(out.glob("*/*.shp"))) == 1  # the good file's polygons
    with netCDF4.Dataset(odd) as nc, pytest.raises(ValueError, match=re.escape(f"{odd}: variable time: ")):
        maps._acquired(nc)  # what the SIGRID-3 name check before the walk meets: it leaves the file to fail


def test_convert_refuses_two_files_of_one_scene_and_converts_the_rest_past_a_bad_one(known, tmp_path, capsys):
    copy = tmp_path / "copy" / known[1].name
    copy.parent.mkdir()
    shutil.copy(known[1], copy)
    with pytest.raises(SystemExit) as stop:
        cli.main(["charts", "convert", str(known[1]), str(copy), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and f"two chart files of scene {known[1].name[:19]}" in capsys.readouterr().err
    bad = tmp_path / "bad" / "20200101T000000_dmi_charts.nc"
    bad.parent.mkdir()
    bad.write_bytes(b"not netCDF")
    assert cli.main(["charts", "convert", str(bad), str(known[1]), "--out", str(tmp_path / "out"),
                     "--format", "geotiff"]) == 1
    said = capsys.readouterr()
    assert f"failed: {bad}" in said.err and "converted 1 of 2 chart files" in said.out
    assert (tmp_path / "out" / f"{known[1].name[:19]}_SOD.tif").is_file()


def test_sigrid_codes_read_back_as_their_classes():
    """The inverse of the egg-code reading on every class triple SIGRID-3 can hold."""
    for sic in [*range(schema.N_CLASSES["SIC"]), 255]:
        for sod in [*range(schema.N_CLASSES["SOD"]), 255]:
            for floe in [*range(schema.N_CLASSES["FLOE"]), 255]:
                codes, poly_type = icechart.sigrid_codes(sic, sod, floe)
                row = icechart.egg_code_row(1, codes["CT"], [(codes["CA"], codes["SA"], codes["FA"])], poly_type)
                got = icechart.polygon_classes(icechart.parse_polygon_codes(icechart.format_polygon_codes([row])))
                expected = (sic, sod, floe) if sic not in (0, 255) else (sic, sic, sic)
                assert tuple(int(got[c][1][0]) for c in schema.CHARTS) == expected


def test_a_chart_geotiff_renders_as_a_map_with_its_graticule(known, converted, tmp_path):
    import matplotlib.image

    from seaice_lib import plots

    out, _ = converted
    png = plots.save_chart_map_png(out / _name(known, "_SOD.tif"), tmp_path / "sod.png", dpi=60)
    image = matplotlib.image.imread(png)[..., :3]
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in schema.CLASSES["SOD"].colours}
    pixels = {tuple(p) for p in np.unique((image * 255).round().astype(int).reshape(-1, 3), axis=0)}
    assert len(colours & pixels) >= 2  # the classes in their colours
    with pytest.raises(ValueError, match="not a chart GeoTIFF"):
        plots.save_chart_map_png(out / _name(known, "_SOD_probability.tif"), tmp_path / "p.png")


# ---- SIGRID-3 file names ------------------------------------------------------------------------

def test_sigrid_names_follow_the_services_convention():
    """Producer, region, acquisition time (UTC, to the minute), polygons, analysis."""
    at = dt.datetime(2019, 4, 17, 15, 0, 59, tzinfo=dt.timezone.utc)
    assert maps.sigrid_name("SGRDREA", at, "CIS") == "cis_SGRDREA_20190417T1500Z_pl_a"
    assert maps.sigrid_name("CentralEast", at.replace(tzinfo=None)) == "sil_CentralEast_20190417T1500Z_pl_a"
    assert maps.sigrid_name("SGRDREA", at, "A" * 16) == "a" * 16 + "_SGRDREA_20190417T1500Z_pl_a"  # the longest code
    two_hours_east = dt.timezone(dt.timedelta(hours=2))
    assert maps.sigrid_name("Qaanaaq", at.astimezone(two_hours_east)) == "sil_Qaanaaq_20190417T1500Z_pl_a"
    for region in ("Central East", "a/b", "", "Ålesund", "SGRDI_EA"):
        with pytest.raises(ValueError, match=re.escape(f"region {region!r}: not letters and digits")):
            maps.sigrid_name(region, at)


def test_the_chart_file_records_the_region_of_its_scene(synthetic_dir, tmp_path):
    """``write_scene_charts`` records the scene's region (``Scene.region``, from ``original_id``) and
    the polygons are named after it and the file's acquisition time."""
    for scene in sorted(synthetic_dir.glob("*_prep.nc"))[:4:3]:  # one of each synthetic region
        with Scene(scene) as s:
            charts, original = s.charts(), s.ds.attrs["original_id"]
        path = cf.write_scene_charts(tmp_path / f"{scene.name[:19]}_charts.nc", scene, charts)
        with netCDF4.Dataset(path) as nc:
            assert nc.region == schema.region_from_raw(original) and nc.region in sigrid_of(scene)
        assert maps.sigrid_name_of(path) == sigrid_of(scene)


def _edited_copy(known, folder, edit=None, name=None):
    """A copy of the known chart file in ``folder`` (as ``name``), changed by ``edit(dataset)``."""
    copy = folder / (name or known[1].name)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(known[1], copy)
    if edit is not None:
        with netCDF4.Dataset(copy, "r+") as nc:
            edit(nc)
    return copy


def _written_with(known, folder, **attrs):
    """A copy of the known chart file in ``folder`` as written with the global attributes ``attrs``
    (a producer's option, say): its ``content_sha256`` is taken again, as the writer records it."""
    def edit(nc):
        nc.setncatts(attrs)
        nc.setncattr("content_sha256", cf.content_sha256(nc))

    return _edited_copy(known, folder, edit)


def test_the_region_of_sigrid3_names_is_the_one_the_chart_file_recorded(known, tmp_path):
    """A chart file's region comes from its own ``region`` attribute only; none, an empty one, a
    number (never made the text "3"), or one no file name can hold is refused naming the file (the
    attribute is part of ``content_sha256``, so convert refuses an edited one before this)."""
    attrs = {"region": "CentralEast"}
    assert maps.chart_region(known[1], attrs) == "CentralEast"
    for attrs, message in (({}, "no region attribute, which SIGRID-3 file names need: chart the scene again"),
                           ({"region": "Central/East"}, "region 'Central/East' is not letters and digits"),
                           ({"region": ""}, "records no ice-chart region"),
                           ({"region": np.int32(3)}, "the region attribute is np.int32(3) (int32), not text"),
                           ({"region": 3}, "the region attribute is 3 (int), not text"),
                           ({"region": np.array([1.5, 2.0])}, "the region attribute is array([1.5, 2. ]) (ndarray), "
                                                              "not text")):
        with pytest.raises(ValueError, match=re.escape(f"{known[1]}: {message}")):
            maps.chart_region(known[1], attrs)


def test_two_scenes_of_one_region_and_minute_never_replace_each_others_polygons(known, tmp_path, capsys):
    """Another scene of the same region acquired within the same minute: refused, naming both
    (one command) or the scene whose polygons are there (the output folder)."""
    scene_id = known[1].name[:19]
    other_id = f"{scene_id[:13]}{(int(scene_id[13:15]) + 1) % 60:02d}{scene_id[15:]}"  # one second apart
    source = maps.read_source(known[1])
    other = cf.write_charts(tmp_path / "other" / f"{other_id}_charts.nc", other_id, known[2], source.tiepoints,
                            region=source.attrs["region"], attrs={"made_by": "{}"})
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        cli.main(["charts", "convert", str(known[1]), str(other), "--out", str(out), "--format", "sigrid3"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and f"{known[1]} and {other}" in err and _known_sigrid(known) in err
    assert not out.exists() or not any(out.iterdir())
    # predict and edge-predict on named scenes: refused before any polygons are written
    args = argparse.Namespace(out=out, formats=("netcdf", "gpkg"), crs=3413, spacing=80.0, tolerance=80.0, centre="sil")
    with pytest.raises(ValueError, match=f"{re.escape(str(known[1]))} and {re.escape(str(other))}: both scenes"):
        maps.convert_all(args, Walk("scenes", done=[known[1], other]), {})
    assert not out.exists() or not any(out.iterdir())
    maps.convert(known[1], out, ["sigrid3", "gpkg"])
    maps.convert(known[1], out, ["sigrid3", "gpkg"])  # the same scene again: replaced
    folder = out / _known_sigrid(known)
    for formats in (["sigrid3"], ["gpkg"]):
        with pytest.raises(ValueError, match=f"holds the SIGRID-3 polygons of scene {scene_id}; those of scene {other_id}"):
            maps.convert(other, out, formats)
    assert json.loads((folder / f"{folder.name}.json").read_text())["scene_id"] == scene_id
    shutil.rmtree(folder)  # the GeoPackage alone records its scene too
    with pytest.raises(ValueError, match=f"{folder}.gpkg: holds the SIGRID-3 polygons of scene {scene_id}"):
        maps.convert(other, out, ["sigrid3"])


def _twin_chart(known, tmp_path):
    """A chart file of another scene of the known one's region and minute (one second later)."""
    scene_id = known[1].name[:19]
    other_id = f"{scene_id[:13]}{(int(scene_id[13:15]) + 1) % 60:02d}{scene_id[15:]}"
    source = maps.read_source(known[1])
    return cf.write_charts(tmp_path / "other" / f"{other_id}_charts.nc", other_id, known[2], source.tiepoints,
                           region=source.attrs["region"], attrs={"made_by": "{}"})


def test_polygons_without_a_readable_record_of_their_scene_are_never_taken_for_this_scenes(known, tmp_path, capsys):
    """The twin guard without the .json sidecar: the FGDC record's title still names the scene; a
    set (or GeoPackage) that names none readably is of an unknown scene, refused unless --overwrite."""
    scene_id, other = known[1].name[:19], _twin_chart(known, tmp_path)
    out = tmp_path / "out"
    maps.convert(known[1], out, ["sigrid3"])
    folder = out / _known_sigrid(known)
    (folder / f"{folder.name}.json").unlink()
    with pytest.raises(ValueError, match=f"{re.escape(str(folder))}: holds the SIGRID-3 polygons of scene {scene_id}"):
        maps.convert(other, out, ["sigrid3"])
    maps.convert(known[1], out, ["sigrid3"])  # its own scene (the FGDC title says so): replaced
    assert json.loads((folder / f"{folder.name}.json").read_text())["scene_id"] == scene_id
    (folder / f"{folder.name}.json").write_text("{damaged")
    (folder / f"{folder.name}.shp.xml").write_text("<metadata><idinfo>")  # cut short
    (out / f"{folder.name}.gpkg").write_bytes(b"not a GeoPackage")
    for target in (other, known[1]):
        with pytest.raises(ValueError, match=f"{re.escape(str(folder))}: SIGRID-3 polygons that record no scene"):
            maps.convert(target, out, ["sigrid3"])
    assert (out / f"{folder.name}.gpkg").read_bytes() == b"not a GeoPackage"
    capsys.readouterr()
    assert cli.main(["charts", "convert", str(other), "--out", str(out), "--format", "sigrid3,gpkg"]) == 1
    assert f"{folder}: SIGRID-3 polygons that record no scene readably" in capsys.readouterr().err
    assert cli.main(["charts", "convert", str(other), "--out", str(out), "--format", "sigrid3,gpkg",
                     "--overwrite"]) == 0
    assert json.loads((folder / f"{folder.name}.json").read_text())["scene_id"] == other.name[:19]
    assert pyogrio.read_info(out / f"{folder.name}.gpkg")["layer_metadata"]["scene_id"] == other.name[:19]
    with pytest.raises(ValueError, match=f"holds the SIGRID-3 polygons of scene {other.name[:19]}"):
        maps.convert(known[1], out, ["sigrid3"], overwrite=True)  # a known twin's: never replaced


def test_converting_another_chart_of_a_scene_removes_the_outputs_of_the_earlier_one(known, tmp_path, caplog):
    """A second chart file of the scene converted into the folder with other options: the first
    one's outputs that this run does not write (probability maps, a grid of another CRS, polygons
    of another centre) are removed, each named; polygons of the same chart under another centre
    replace its earlier ones too (RT18-R13), while another scene's outputs (a twin's polygons of the
    same minute) and files that are not ours stay."""
    scene, first, _ = known
    scene_id, out = first.name[:19], tmp_path / "out"
    maps.convert(first, out, ["geotiff", "netcdf-grid", "sigrid3", "gpkg"], centre="aaa")
    source = maps.read_source(first)
    second = cf.write_charts(tmp_path / "second" / first.name, scene_id, known[2], source.tiepoints,
                             region=source.attrs["region"], attrs={"made_by": '{"model": "b"}'})
    twin = _twin_chart(known, tmp_path)
    maps.convert(twin, out, ["geotiff", "sigrid3"], centre="ddd")
    (out / f"{scene_id}_notes.tif").write_text("not ours")
    with caplog.at_level("WARNING"):
        maps.convert(second, out, ["geotiff", "netcdf-grid", "sigrid3"], epsg=3995, centre="bbb")
    maps.convert(second, out, ["sigrid3"], centre="ccc")  # the same chart, another centre: replaced
    charts = [f"{scene_id}_{c}.tif" for c in ("SIC", "SOD", "FLOE")]
    removed = [f"{scene_id}_SOD_probability.tif", f"{scene_id}_FLOE_probability.tif", f"{scene_id}_charts_epsg3413.nc",
               _known_sigrid(known, "aaa"), f"{_known_sigrid(known, 'aaa')}.gpkg"]
    assert {p.name for p in out.iterdir()} == {
        *charts, f"{scene_id}_charts_epsg3995.nc", _known_sigrid(known, "ccc"),
        _known_sigrid(known, "ddd"), f"{scene_id}_notes.tif", *(f"{twin.name[:19]}_{c}.tif" for c in ("SIC", "SOD", "FLOE"))}
    for name in removed:
        assert f"{out / name}: removed: made from the chart file {first.name} sha256:" in caplog.text
    with rasterio.open(out / charts[1]) as ds:
        assert ds.tags()["source_chart_file"] == f"{first.name} sha256:{maps.file_sha256(second)}"


# ---- FGDC metadata ------------------------------------------------------------------------------

REQUIRED = ["idinfo/citation/citeinfo/origin", "idinfo/citation/citeinfo/pubdate", "idinfo/citation/citeinfo/title",
            "idinfo/descript/abstract", "idinfo/descript/purpose", "idinfo/timeperd/timeinfo/sngdate/caldate",
            "idinfo/timeperd/current", "idinfo/status/progress", "idinfo/status/update",
            *(f"idinfo/spdom/bounding/{side}bc" for side in ("west", "east", "north", "south")),
            "idinfo/keywords/theme/themekt", "idinfo/keywords/theme/themekey", "idinfo/accconst", "idinfo/useconst",
            "spref/horizsys/planar/mapproj/mapprojn", "spref/horizsys/planar/planci/plandu",
            "spref/horizsys/geodetic/ellips", "eainfo/detailed/enttyp/enttypl", "eainfo/detailed/attr/attrlabl",
            "metainfo/metd", "metainfo/metc/cntinfo", "metainfo/metstdn", "metainfo/metstdv"]


def _lonlat_by_gdal(shapefile) -> np.ndarray:
    """Every polygon vertex in longitude, latitude, reprojected by GDAL's ogr2ogr (GeoJSON)."""
    run = subprocess.run([tool("ogr2ogr"), "-f", "GeoJSON", "/vsistdout/", "-t_srs", "EPSG:4326", str(shapefile)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    points = [point for feature in json.loads(run.stdout)["features"]
              for ring in feature["geometry"]["coordinates"] for point in ring]
    return np.array(points)[:, :2]


def test_the_shapefile_set_carries_fgdc_metadata(known, converted):
    """The ``.shp.xml`` beside the ``.shp``: the elements FGDC asks for, the bounding coordinates
    holding every vertex (GDAL's reprojection), the producer, time and license of the chart file,
    the projection of the ``.prj`` and one attribute per field GDAL reads."""
    out, _ = converted
    stem = _known_sigrid(known)
    shapefile = out / stem / f"{stem}.shp"
    root = ET.parse(out / stem / f"{stem}.shp.xml").getroot()
    assert root.tag == "metadata"
    missing = [path for path in REQUIRED if not (root.findtext(path) or root.find(path) is not None and len(root.find(path)))]
    assert missing == []
    assert root.findtext("metainfo/metstdn") == "FGDC Content Standard for Digital Geospatial Metadata"
    assert root.findtext("metainfo/metstdv") == "FGDC-STD-001-1998"
    assert root.findtext("idinfo/citation/citeinfo/origin") == "Test Ice Service"
    assert root.findtext("metainfo/metc/cntinfo/cntorgp/cntper") == "A. Tester"
    assert re.fullmatch(r"\d{8}", root.findtext("idinfo/citation/citeinfo/pubdate"))
    sid = known[1].name[:19]
    assert root.findtext("idinfo/timeperd/timeinfo/sngdate/caldate") == sid[:8]
    assert root.findtext("idinfo/timeperd/timeinfo/sngdate/time") == f"{sid[9:15]}Z"
    assert "sea ice" in [k.text for k in root.iterfind("idinfo/keywords/theme/themekey")]
    assert root.findtext("idinfo/accconst") == root.findtext("idinfo/useconst") == "CC BY 4.0"
    # bounding coordinates: hold every vertex, and no more than a little beyond them
    box = {side: float(root.findtext(f"idinfo/spdom/bounding/{side}bc")) for side in ("west", "east", "north", "south")}
    lonlat = _lonlat_by_gdal(shapefile)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    assert box["west"] <= lon.min() and lon.max() <= box["east"] and box["south"] <= lat.min() and lat.max() <= box["north"]
    assert max(lon.min() - box["west"], box["east"] - lon.max(), lat.min() - box["south"], box["north"] - lat.max()) < 0.02
    # the projection: that of the .prj, as GDAL reads it
    text = _ogrinfo(shapefile)
    prj = CRS.from_wkt((out / stem / f"{stem}.prj").read_text()).to_cf()
    assert root.findtext("spref/horizsys/planar/mapproj/mapprojn") == CRS.from_epsg(3413).name
    assert float(root.findtext("spref/horizsys/planar/mapproj/polarst/svlong")) == prj["straight_vertical_longitude_from_pole"]
    assert float(root.findtext("spref/horizsys/planar/mapproj/polarst/stdparll")) == prj["standard_parallel"]
    assert float(root.findtext("spref/horizsys/geodetic/semiaxis")) == prj["semi_major_axis"]
    # one attribute per field, in the order GDAL reads them, each defined
    fields = re.findall(r"^(\w+): \w+ \(", text.split("Data axis to CRS axis mapping")[1], re.M)
    assert [a.findtext("attrlabl") for a in root.iterfind("eainfo/detailed/attr")] == fields
    assert all(a.findtext("attrdef") and a.find("attrdomv") is not None for a in root.iterfind("eainfo/detailed/attr"))
    assert root.findtext("eainfo/detailed/enttyp/enttypl") == stem
    count = int(re.search(r"Feature Count: (\d+)", text).group(1))
    assert int(root.findtext("spdoinfo/ptvctinf/sdtsterm/ptvctcnt")) == count


def test_fgdc_metadata_in_another_projection_holds_its_vertices(known, tmp_path):
    """A map projection FGDC has no element for (EPSG:3995, Arctic polar stereographic: still
    ``polarst``; EPSG:6931, Lambert azimuthal equal area: ``lamberta``; EPSG:32624, UTM:
    its WKT as another projection): the bounds still hold every vertex."""
    for epsg, element in ((3995, "polarst"), (6931, "lamberta"), (32624, "mapprojp/otherprj")):
        out = tmp_path / str(epsg)
        maps.convert(known[1], out, ["sigrid3"], epsg=epsg, tolerance_m=0)
        stem = _known_sigrid(known)
        root = ET.parse(out / stem / f"{stem}.shp.xml").getroot()
        assert root.find(f"spref/horizsys/planar/mapproj/{element}") is not None, epsg
        box = {s: float(root.findtext(f"idinfo/spdom/bounding/{s}bc")) for s in ("west", "east", "north", "south")}
        lonlat = _lonlat_by_gdal(out / stem / f"{stem}.shp")
        assert (box["west"] <= lonlat[:, 0].min() and lonlat[:, 0].max() <= box["east"]
                and box["south"] <= lonlat[:, 1].min() and lonlat[:, 1].max() <= box["north"]), epsg


def test_bounding_coordinates_across_the_antimeridian_and_around_the_pole():
    """Longitudes crossing 180°: west > east (FGDC's way); a polygon around the pole: every
    longitude, north 90; a long straight edge: its middle, nearer the pole than its ends, counts."""
    crs = CRS.from_epsg(3413)
    to_map = Transformer.from_crs(4326, crs, always_xy=True)
    across = shapely.Polygon(np.column_stack(to_map.transform([175, -175, -175, 175], [70, 70, 72, 72])))
    box = fgdc.bounding([across], crs)
    assert box["westbc"] <= 175 and box["eastbc"] >= -175 and box["westbc"] > box["eastbc"]
    around = shapely.Polygon([(-5e5, -5e5), (5e5, -5e5), (5e5, 5e5), (-5e5, 5e5)])
    corner = Transformer.from_crs(crs, 4326, always_xy=True).transform(5e5, 5e5)[1]
    assert fgdc.bounding([around], crs) == {"westbc": -180.0, "eastbc": 180.0, "northbc": 90.0,
                                            "southbc": pytest.approx(corner, abs=1e-5)}
    edge = shapely.Polygon([(-4e5, 1e6), (4e5, 1e6), (4e5, 1.2e6), (-4e5, 1.2e6)])  # the pole off its middle
    ends = Transformer.from_crs(crs, 4326, always_xy=True).transform([-4e5, 4e5], [1e6, 1e6])[1]
    middle = Transformer.from_crs(crs, 4326, always_xy=True).transform(0, 1e6)[1]
    assert middle > max(ends) + 0.5 and fgdc.bounding([edge], crs)["northbc"] >= middle


def test_convert_goes_by_the_scene_a_chart_file_holds_not_its_name(known, tmp_path, capsys):
    """A chart file copied under another scene's name is refused by name, and is the same scene as
    the file it was copied from (both would write the same outputs)."""
    misnamed = tmp_path / "in" / "20200101T000000_dmi_charts.nc"
    misnamed.parent.mkdir()
    shutil.copy(known[1], misnamed)
    assert cli.main(["charts", "convert", str(misnamed), "--out", str(tmp_path / "out"), "--format", "netcdf"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {misnamed}: " in err and f"holds the chart of scene '{known[1].name[:19]}'" in err
    assert not (tmp_path / "out" / f"{known[1].name[:19]}_charts.nc").exists()
    with pytest.raises(SystemExit) as stop:
        cli.main(["charts", "convert", str(misnamed), str(known[1]), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and f"two chart files of scene {known[1].name[:19]}" in capsys.readouterr().err


def test_convert_never_writes_into_a_folder_another_command_holds(known, tmp_path, capsys):
    from seaice_lib.atomic import folder_lock

    out = tmp_path / "charts"
    with folder_lock(out, "charting"):  # as seaice predict --out holds it
        assert cli.main(["charts", "convert", str(known[1]), "--out", str(out), "--format", "geotiff"]) == 1
    assert "another process is charting here" in capsys.readouterr().err
    assert not list(out.glob("*.tif"))


# ---- what convert checks before it believes a chart file -----------------------------------------

def _other_chart(known, synthetic_dir, folder):
    """(another scene than the known one, its own charts written as a chart file in ``folder``)."""
    other = next(p for p in sorted(synthetic_dir.glob("*_prep.nc")) if p.name != known[0].name)
    folder.mkdir(exist_ok=True)
    with Scene(other) as s:
        return other, cf.write_scene_charts(folder / f"{other.name[:19]}_charts.nc", other, s.charts(),
                                            attrs={"made_by": cf.made_by("o" * 64, "test", {}, inputs=[other])})


def test_convert_takes_land_and_region_only_from_the_chart_files_own_scene(known, synthetic_dir, tmp_path, capsys):
    """``--scenes`` holding another scene's file under this scene's name gives no polygons with the
    other scene's land (the file fails, named, the others convert); a scene file of another scene
    handed to ``convert`` is refused naming both, and so is the chart's own scene changed since
    (its SHA-256 is not the one ``made_by`` records), or one the chart records no SHA-256 of."""
    other, good = _other_chart(known, synthetic_dir, tmp_path / "good")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(other, wrong / known[0].name)
    shutil.copy(other, wrong / other.name)
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(known[1]), str(good), "--out", str(out), "--scenes", str(wrong),
                     "--format", "sigrid3"]) == 1
    said = capsys.readouterr()
    assert f"failed: {known[1]}" in said.err and f"its scene_id attribute is '{other.name[:19]}'" in said.err
    assert "copied or renamed" in said.err and "converted 1 of 2 chart files" in said.out
    assert [p.name for p in out.glob("*/*.shp")] == [f"{sigrid_of(other)}.shp"]
    with pytest.raises(ValueError, match=re.escape(f"{known[1]}: holds the chart of scene '{known[1].name[:19]}', "
                                                   f"but the scene file {other} is of scene '{other.name[:19]}'")):
        maps.convert(known[1], tmp_path / "c", ["gpkg"], scene=other)
    # the chart's own scene, prepared again since (same id, other contents): its land may differ
    again = tmp_path / "again" / known[0].name
    again.parent.mkdir()
    shutil.copy(known[0], again)
    with netCDF4.Dataset(again, "a") as nc:
        nc.setncattr("history", "prepared again")
    with pytest.raises(ValueError, match=re.escape(f"{known[1]}: charted from a {known[0].name} of SHA-256 ")):
        maps.convert(known[1], tmp_path / "c", ["gpkg"], scene=again)
    unrecorded = cf.write_scene_charts(tmp_path / "unrecorded" / known[1].name, known[0], known[2])  # no made_by
    with pytest.raises(ValueError, match=re.escape(f"{unrecorded}: its made_by records no SHA-256 of {known[0].name}")):
        maps.convert(unrecorded, tmp_path / "c", ["gpkg"], scene=known[0])
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_a_distance_map_that_is_not_finite_gives_no_polygons_naming_it(known, tmp_path, capsys):
    """``land_mask`` is distance map zone 0: a NaN zone is neither land nor water, so a NaN block over
    land would draw the chart's classes there. The scene's polygons fail, naming the variable and
    the count, before any output is written."""
    from tests.scene_edits import copy_scenes, edit_variable

    scene = copy_scenes([known[0]], tmp_path / "scenes") / known[0].name
    with Scene(scene) as s:
        land = s.read("distance_map", units="physical") == 0
    rows, cols = np.nonzero(land)
    block = (slice(rows.min(), rows.min() + 10), slice(cols.min(), cols.min() + 10))
    assert land[block].any()
    edit_variable(scene, "distance_map", lambda v: v.__setitem__(block, np.nan))
    with pytest.raises(SceneError, match=f"{re.escape(str(scene))}: distance_map: 100 values are not finite"):
        maps.land_mask(scene)
    chart = cf.write_scene_charts(tmp_path / "charts" / known[1].name, scene, known[2],  # charted from it
                                  attrs={"made_by": cf.made_by("k" * 64, "test", {}, inputs=[scene])})
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(chart), "--out", str(out), "--scenes", str(scene.parent),
                     "--format", "sigrid3,geotiff"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {chart}" in err and "distance_map: 100 values are not finite" in err
    assert not out.exists()  # nothing written: the folder it made goes again


def test_convert_refuses_a_chart_file_whose_classes_are_not_the_ones_it_was_written_with(known, synthetic_dir,
                                                                                           tmp_path, capsys):
    """Classes, geolocation, probabilities or region edited since the file was written
    (``content_sha256``), or a file that records no hash of its contents, fail by name; the other
    files convert."""
    from tests.scene_edits import edit_variable

    edited = _edited_copy(known, tmp_path / "old")
    edit_variable(edited, "SOD", lambda v: v.__setitem__((slice(10, 40), slice(10, 60)), 5))
    unhashed = _edited_copy(known, tmp_path / "unhashed", lambda nc: nc.delncattr("content_sha256"), "h.nc")

    def shifted(nc):  # the geolocation moved by 5 degrees: maps at the wrong place
        nc["lat"][:] = nc["lat"][:] + 5

    def swapped(nc):  # two classes' probabilities swapped: every pixel still sums to 100
        var = nc["SOD_probability"]
        var.set_auto_maskandscale(False)
        p = var[:]
        var[:] = p[[1, 0, *range(2, p.shape[0])]]

    moved = [_edited_copy(known, tmp_path / "moved", shifted), _edited_copy(known, tmp_path / "swapped", swapped),
             _edited_copy(known, tmp_path / "region", lambda nc: nc.setncattr("region", "Elsewhere"))]
    other, good = _other_chart(known, synthetic_dir, tmp_path / "good")
    changed = "its contents changed since it was written (content_sha256"
    for bad, message in ((edited, changed), *((m, changed) for m in moved), (unhashed, "records no content_sha256")):
        out = tmp_path / f"out_{bad.parent.name}"
        argv = ["charts", "convert", str(bad), str(good), "--out", str(out), "--format", "geotiff,sigrid3"]
        assert cli.main(argv) == 1
        said = capsys.readouterr()
        assert f"failed: {bad}: {message}" in said.err and "converted 1 of 2" in said.out
        assert {p.name for p in out.glob("*.tif")} == {f"{other.name[:19]}_{c}.tif" for c in schema.CHARTS}
        assert [p.name for p in out.glob("*/*.shp")] == [f"{sigrid_of(other)}.shp"]


def test_convert_refuses_a_chart_file_whose_scene_id_and_time_disagree(known, tmp_path, capsys):
    """A file (of any name) whose ``scene_id`` says another acquisition than its ``time``: refused
    by name (its contents changed since written), nothing written under either name; reading its
    acquisition time (as the SIGRID-3 name check does before the walk) names both."""
    mixed = _edited_copy(known, tmp_path / "mixed", lambda nc: nc.setncattr("scene_id", "20190101T000000_dmi"), "h.nc")
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(mixed), "--out", str(out), "--format", "sigrid3,geotiff"]) == 1
    err = capsys.readouterr().err
    acquired = dt.datetime.strptime(known[1].name[:15], "%Y%m%dT%H%M%S")
    assert f"failed: {mixed}: its contents changed since it was written" in err
    assert not out.exists()  # nothing written: the folder it made goes again
    with netCDF4.Dataset(mixed) as nc, pytest.raises(ValueError) as err:
        maps._acquired(nc)
    assert f"{mixed}: its scene_id is '20190101T000000_dmi' but its variable time says " \
           f"{acquired:%Y-%m-%d %H:%M:%S} UTC" in str(err.value)


def test_convert_out_naming_a_file_is_a_usage_error(known, tmp_path, capsys):
    from tests.commands import usage_error

    afile = tmp_path / "afile"
    afile.write_text("")
    err = usage_error(["charts", "convert", str(known[1]), "--out", str(afile)], capsys)
    assert f"argument --out: {afile}: a file, not a folder to write into" in err
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # RT19-R13: not "a file"
    err = usage_error(["charts", "convert", str(known[1]), "--out", str(tmp_path / "dangling")], capsys)
    assert f"argument --out: {tmp_path / 'dangling'}: a symbolic link to nothing, not a folder to write into" in err


@pytest.mark.parametrize("email, ok", [("ice@dmi.dk", True), ("a.b+c@x.y.org", True), ("not an email", False),
                                       ("a@b", False), ("a@@b.c", False), ("a b@c.d", False), ("a@b.c\x01", False),
                                       ("@b.c", False), ("a@.c", False), ("a@b.", False)])
def test_creator_email_is_an_address(email, ok):
    if ok:
        assert maps.check_email(email) == email
    else:
        with pytest.raises(ValueError, match=re.escape(f"--creator-email {email!r}: not an email address")):
            maps.check_email(email)


def test_convert_never_replaces_another_chart_file_of_the_scene_without_overwrite(known, tmp_path, capsys):
    """A folder holding a scene's chart file and an upload package with it: converting another
    chart file of that scene (another model's) into it is refused, naming both, and nothing there
    changes; with ``--overwrite`` the chart is replaced and the package, which held the old chart,
    is removed."""
    scene, chart, charts = known
    folder = tmp_path / "charted"
    folder.mkdir()
    shutil.copy(chart, folder / chart.name)
    cf.write_upload_package([folder / chart.name], folder / "upload_package.nc")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = cf.write_scene_charts(tmp_path / "other" / chart.name, scene, {**charts, "SOD": np.where(
        charts["SOD"] == 255, 255, (charts["SOD"].astype(int) + 1) % schema.N_CLASSES["SOD"]).astype(np.uint8)})
    argv = ["charts", "convert", str(other), "--out", str(folder), "--format", "netcdf"]
    assert cli.main(argv) == 1
    assert f"{folder / chart.name}: another chart file of this scene is there" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} == before
    maps_only = ["charts", "convert", str(other), "--out", str(folder), "--format", "geotiff"]  # RT18-R25: its maps
    assert cli.main(maps_only) == 1                                                             # beside this chart
    assert f"{folder / chart.name}: another chart file of this scene is there than {other}, whose maps" in \
        capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} == before
    assert cli.main(argv + ["--overwrite"]) == 0
    assert (folder / chart.name).read_bytes() == other.read_bytes()
    assert not (folder / "upload_package.nc").exists() and "upload_package.nc: removed" in capsys.readouterr().err
    assert cli.main(argv) == 0  # the same file again: nothing to replace


def test_a_chart_file_without_a_scene_id_fails_by_name_and_the_rest_convert(known, synthetic_dir, tmp_path, capsys):
    bad = tmp_path / "bad" / known[1].name
    bad.parent.mkdir()
    shutil.copy(known[1], bad)
    with netCDF4.Dataset(bad, "a") as nc:
        nc.delncattr("scene_id")
    other, good = _other_chart(known, synthetic_dir, tmp_path / "good")
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(bad), str(good), "--out", str(out), "--format", "geotiff"]) == 1
    said = capsys.readouterr()
    assert f"failed: {bad}: scene_id attribute None, not a scene id" in said.err and "Traceback" not in said.err
    assert "converted 1 of 2" in said.out and {p.name[:19] for p in out.glob("*.tif")} == {other.name[:19]}


def test_convert_counts_the_outputs_a_chart_file_wrote_before_it_failed(known, tmp_path, capsys):
    """A chart file whose GeoTIFFs are written before its SIGRID-3 set fails (an institution XML
    cannot hold): the summary counts the GeoTIFFs on disk as written and the file as failed, and
    the command ends non-zero."""
    odd = _written_with(known, tmp_path / "odd", institution="Inst\x01X")
    out = tmp_path / "out"
    assert cli.main(["charts", "convert", str(odd), "--out", str(out), "--format", "geotiff,sigrid3"]) == 1
    said = capsys.readouterr()
    tifs = list(out.glob("*.tif"))
    assert tifs and not list(out.glob("*/*.shp"))  # the case: some outputs were written before the failure
    assert f"converted 0 of 1 chart files into {out}: {len(tifs)} outputs written, 1 failed" in said.out
    assert "which XML cannot hold" in said.err


def test_convert_says_and_every_map_records_where_the_chart_file_has_no_class_for_a_model_fault(known, tmp_path,
                                                                                                capsys, caplog):
    """RT16-R12: the maps of a chart whose model gave non-finite outputs dropped what the chart file
    records of it, and convert said nothing: a GIS user saw "no data" with nothing saying the model
    failed there. Each map records the chart file's no-class attributes, and convert warns naming it."""
    problem = {"non_finite_model_outputs": "store pixels without a class: SOD 1600",
               "left_out_history_inputs": "20181110T000000_dmi_prep.nc: unreadable"}
    odd = _written_with(known, tmp_path / "odd", **problem)
    out = tmp_path / "maps"
    with caplog.at_level(logging.WARNING):
        assert cli.main(["charts", "convert", str(odd), "--out", str(out), "--scenes", str(known[0].parent)]) == 0
    assert (f"{odd}: {known[0].name[:19]}: the model gave non-finite outputs, store pixels without a class: SOD 1600"
            in caplog.text) and "its maps have no class there either, and record it" in caplog.text
    with netCDF4.Dataset(next(out.glob("*_epsg3413.nc"))) as nc:
        assert {k: nc.getncattr(k) for k in problem} == problem
    tags = _gdalinfo(out / odd.name.replace("_charts.nc", "_SOD.tif"))["metadata"][""]
    assert {k: tags[k] for k in problem} == problem
    stem = _known_sigrid(known)
    sidecar = json.loads((out / stem / f"{stem}.json").read_text())
    assert {k: sidecar[k] for k in problem} == problem
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a chart file without them: nothing said, nothing recorded
        assert cli.main(["charts", "convert", str(known[1]), "--out", str(tmp_path / "clean")]) == 0
    assert "its maps have no class" not in caplog.text
    with netCDF4.Dataset(next((tmp_path / "clean").glob("*_epsg3413.nc"))) as nc:
        assert not set(problem) & set(nc.ncattrs())
