"""CF-conventions chart files: one netCDF per scene (``{scene_id}_charts.nc``), torch-free.

``SIC``, ``SOD`` and ``FLOE`` are uint8 classes at 80 m on (sar_lines, sar_samples): CF flag
variables (``flag_values`` 0..K-1, ``flag_meanings`` from :data:`seaice_lib.schema.CLASSES`),
``_FillValue`` 255 = no label (no SAR data there), ``valid_range`` [0, K-1], the project's chart
colours (:data:`seaice_lib.schema.CLASSES`; the dataset defines none) in ``flag_colors`` (not a CF
attribute), and ``coordinates = "time lat lon"``: per-pixel latitude and
longitude (float32) interpolated from the scene's tie points (:class:`~seaice_lib.data.geo.TiePointGrid`)
and the acquisition time. On request, ``{chart}_probability`` (class, model_lines, model_samples) holds
the model's blended class probabilities as uint8 percent on the model's own grid (80 m x downsample),
with its own ``model_lat``/``model_lon``. Global attributes carry the provenance: model, a SHA-256
of the run's config.yaml, the input files. Every variable and attribute: docs/charts.md.

Files are written under a temporary name and renamed when whole (:func:`seaice_lib.atomic.atomic_path`);
:func:`read_charts` refuses anything that is not a whole chart file, naming the file and the variable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import netCDF4
import numpy as np

from .. import logs, schema
from ..atomic import atomic_path
from ..data.geo import TiePointGrid
from ..data.scene import Scene, SceneError, check_chart_classes, open_dataset
from ..data.tiles import SceneCharts, ScenePaths, left_out_lines, percent, scene_paths
from ..provenance import file_sha256, history_line
from ..provenance import provenance as software_provenance
from ..walk import Walk
from . import submission

log = logging.getLogger(__name__)

CONVENTIONS = "CF-1.11"
CHART_FORMAT = "seaice-charts-cf/1"  # global attribute ``chart_format``: what read_charts accepts
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
# CF standard names where the CF table has one (FLOE: none names a floe-size class); SIC class k is
# k tenths of the sea area covered by ice, hence its units "0.1" and "area: mean where sea"
STANDARD_NAMES = {"SIC": {"standard_name": "sea_ice_area_fraction", "units": "0.1",
                          "cell_methods": "area: mean where sea"},
                  "SOD": {"standard_name": "sea_ice_classification"}}
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
DEFAULT_LICENSE = ("Charts made by a model from Copernicus Sentinel-1 data; the AI4Arctic dataset's terms "
                   "(CC BY 4.0) apply to the inputs; set by the producer")
PRODUCER_KEYS = ("institution", "creator_name", "creator_email", "creator_url", "license")
# a chart file's attributes, there only when its charts have no class where the swath has data: the
# model's non-finite outputs, masked earlier acquisitions, earlier acquisitions left out (write_predicted)
NO_CLASS_ATTRS = ("non_finite_model_outputs", "masked_history_inputs", "left_out_history_inputs")
LONG_NAMES = {"SIC": "sea ice concentration class (tenths of the area)",
              "SOD": "sea ice stage of development class",
              "FLOE": "sea ice floe size class"}
CHUNK = 1024  # chunk side (pixels) of the 2-D variables
_GEO_BLOCK_LINES = 256  # lat/lon are interpolated and written this many lines at a time


def charts_path(out_dir: str | Path, scene_id: str) -> Path:
    """Where a scene's chart file goes: ``out_dir/{scene_id}_charts.nc``."""
    return Path(out_dir) / f"{scene_id}_charts.nc"


def flag_meanings(chart: str) -> list[str]:
    """One CF word per class of ``chart`` (blank-free: ``"10%"`` -> ``"10_percent"``,
    ``"Thin first-year ice"`` -> ``"thin_first-year_ice"``)."""
    return [name.lower().replace("%", "_percent").replace(" ", "_")
            for name in schema.CLASSES[chart].names]


def software() -> str:
    """``"seaice_lib VERSION (commit COMMIT)"``: the software running now, as chart files and
    upload packages record it (``software``, and in ``made_by``)."""
    record = software_provenance()
    return f"seaice_lib {record['version']} (commit {record['commit']})"


def provenance(model: str, config: str | Path | None, inputs: Sequence[str | Path]) -> dict[str, str]:
    """Global attributes naming what made a chart: ``model``, ``model_config_sha256`` (of the run's
    config.yaml; "unknown" without one), ``input_files`` (the scene files read, comma-separated
    names, the charted scene last) and ``software`` (package version and commit)."""
    return {"model": model,
            "model_config_sha256": file_sha256(config) if config is not None else "unknown",
            "input_files": ", ".join(Path(p).name for p in inputs), "software": software()}


def producer(institution: str | None = None, creator: str | None = None, email: str | None = None,
             url: str | None = None, license: str | None = None) -> dict[str, str]:
    """The producer's ACDD attributes given by options (``--institution``, ``--creator``,
    ``--creator-email``, ``--creator-url``, ``--license``): only those set."""
    given = {"institution": institution, "creator_name": creator, "creator_email": email,
             "creator_url": url, "license": license}
    return {k: v for k, v in given.items() if v}


def outline_wkt(lat: np.ndarray, lon: np.ndarray) -> str:
    """ACDD ``geospatial_bounds``: a WKT polygon through the outline points (degrees), in
    EPSG:4326's axis order (latitude first)."""
    points = [*zip(np.asarray(lat, float).ravel(), np.asarray(lon, float).ravel(), strict=True)]
    points.append(points[0])
    return "POLYGON ((" + ", ".join(f"{la:.5f} {lo:.5f}" for la, lo in points) + "))"


def extents(lat: tuple[float, float], lon: tuple[float, float]) -> dict[str, np.float64]:
    """ACDD latitude and longitude extents from (min, max) of each, degrees."""
    return {"geospatial_lat_min": np.float64(lat[0]), "geospatial_lat_max": np.float64(lat[1]),
            "geospatial_lon_min": np.float64(lon[0]), "geospatial_lon_max": np.float64(lon[1])}


def global_metadata(scene_id: str, title: str, outline: tuple[np.ndarray, np.ndarray], action: str,
                    attrs: Mapping[str, object] | None = None, processing_level: str = "") -> dict[str, object]:
    """The global attributes of every chart file (swath or map): CF ``Conventions``, ACDD 1.3
    discovery metadata (summary, keywords, license, creator, institution, publisher, time coverage
    from the scene id, space coverage from the ``outline`` (lat, lon) points in degrees, in order
    around the area), and a ``history`` line (:func:`history_line`); ``attrs`` (provenance, the
    producer's) are added last and win. The writer sets the exact extents of what it wrote
    (:func:`extents`) afterwards."""
    scene_id = submission.scene_id(scene_id)
    time = dt.datetime.strptime(scene_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    record = software_provenance()
    lat, lon = (np.asarray(v, float) for v in outline)
    unset = "unknown (set by the producer: {})".format
    producer = {"institution": unset("--institution"), "creator_name": unset("--creator"),
                "creator_email": unset("--creator-email"), "creator_url": unset("--creator-url"),
                "license": DEFAULT_LICENSE, **{k: v for k, v in (attrs or {}).items() if k in PRODUCER_KEYS}}
    return {
        "Conventions": f"{CONVENTIONS}, ACDD-1.3", "title": title,
        "summary": f"Sea ice concentration (SIC), stage of development (SOD) and floe size (FLOE) classes charted by "
                   f"a deep-learning model from the Sentinel-1 SAR scene {scene_id} (and AMSR2, ERA5) in the "
                   "AI4Arctic format; not an ice service's chart",
        "keywords": "sea ice concentration, stage of development, floe size, ice chart, Sentinel-1, SAR",
        "id": f"{scene_id}_charts", "naming_authority": "seaice_lib",
        "project": "AI4Arctic / AutoICE: automatic sea ice charting from Sentinel-1 SAR",
        "acknowledgement": "Contains modified Copernicus Sentinel-1 data; inputs from the AI4Arctic Sea Ice Challenge "
                           "dataset (DTU, DMI, CIS, ESA)",
        "processing_level": processing_level or "model-derived ice chart classes on the Sentinel-1 swath grid",
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "source": "seaice_lib: a deep-learning model applied to Sentinel-1 SAR (and AMSR2, ERA5) in the AI4Arctic "
                  "format",
        **producer, "publisher_name": producer["creator_name"], "publisher_email": producer["creator_email"],
        "publisher_url": producer["creator_url"], "product_version": str(record["version"]),
        "history": history_line(action), "date_created": created,
        "references": "https://doi.org/10.11583/DTU.c.6244065", "scene_id": scene_id,
        "time_coverage_start": time.isoformat(), "time_coverage_end": time.isoformat(),
        "time_coverage_duration": "PT0S", "time_coverage_resolution": "PT0S",
        **extents((float(lat.min()), float(lat.max())), (float(lon.min()), float(lon.max()))),
        "geospatial_lat_units": "degrees_north", "geospatial_lon_units": "degrees_east",
        "geospatial_bounds": outline_wkt(lat, lon), "geospatial_bounds_crs": "EPSG:4326",
        "geospatial_vertical_min": np.float64(0.0), "geospatial_vertical_max": np.float64(0.0),
        "geospatial_vertical_positive": "up", "geospatial_bounds_vertical_crs": "EPSG:5829",
        **(attrs or {})}


def made_by(weights_sha256: str, runtime: str, options: Mapping[str, object],
            inputs: Sequence[str | Path] = (), producer: Mapping[str, str] | None = None) -> str:
    """What decides a chart file's content, as its ``made_by`` attribute (JSON): the SHA-256 of the
    weights, the runtime, the options, the producer's metadata given (:func:`producer`, when any),
    the software (version and commit, :func:`software`) and the SHA-256 of each input scene file
    (the target, the earlier acquisitions its sequence uses and those of its time window left out
    unread, by name: :func:`~seaice_lib.data.tiles.chart_inputs`). A chart file is reused only when
    this matches (:func:`reusable`)."""
    digests = {Path(p).name: file_sha256(p) for p in inputs}
    given = {"producer": dict(producer)} if producer else {}
    return json.dumps({"weights_sha256": weights_sha256, "runtime": runtime, **options, **given,
                       "software": software(), "inputs": digests}, sort_keys=True, default=str)


def content_sha256(nc: netCDF4.Dataset) -> str:
    """SHA-256 of what an open chart file says: every variable's stored values (classes,
    probabilities, lat/lon, time), dtype, shape and attributes, and every global attribute but
    ``content_sha256`` itself, by name and value (those outputs and checks read: ``scene_id``,
    ``region``, ``made_by``, and ``masked_history_inputs``, ``non_finite_model_outputs``,
    ``left_out_history_inputs``, which are there only when the chart has that problem, so one
    removed or added since changes it too). Recorded as ``content_sha256`` when written, so that a
    file edited or damaged since is never kept nor converted (:func:`read_intact_charts`)."""
    digest = hashlib.sha256()

    def add(text: str, value: object) -> None:
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{text}:{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes() if array.dtype.kind != "U" else str(array.tolist()).encode())

    for name in sorted(nc.variables):
        var = nc[name]
        var.set_auto_maskandscale(False)
        add(name, var[...])
        for key in sorted(var.ncattrs()):
            add(f"{name}.{key}", var.getncattr(key))
    for key in sorted(set(nc.ncattrs()) - {"content_sha256"}):
        add(f":{key}", nc.getncattr(key))
    return digest.hexdigest()


def reusable(path: Path, made: str, overwrite: bool = False) -> bool:
    """Whether the chart file ``path`` can stand for a new one made by ``made`` (:func:`made_by`):
    True when it records the same maker and is the chart of the scene its name says; False (chart
    it again) when it is missing, with ``overwrite``, when only its input files changed since
    (the scene was reprocessed, or an earlier acquisition arrived), or when only the software that
    made it differs (another version or commit, or one from before ``made_by`` recorded it:
    warned, naming both); else a ValueError naming the
    file and what differs (another model, runtime or option). A file of the same maker whose
    contents were edited or damaged since it was written (``content_sha256``), or that records
    none (an earlier version's), is charted again. (``made_by`` holds what decides the classes;
    attributes such as ``region`` stay out of it, so that a new attribute never makes an older file
    read as another model's.)"""
    if overwrite or not path.exists():
        return False
    try:
        with netCDF4.Dataset(path) as nc:
            found = nc.getncattr("made_by") if "made_by" in nc.ncattrs() else None
            scene = nc.getncattr("scene_id") if "scene_id" in nc.ncattrs() else None
    except OSError as err:
        raise ValueError(f"{path}: an unreadable file where a chart would go ({err}); --overwrite replaces it") from None
    if scene != path.name.removesuffix("_charts.nc"):
        raise ValueError(f"{path}: holds the chart of scene {scene!r}, not of the scene its name says; "
                         "--overwrite charts the scene again")
    if found == made:
        try:
            read_intact_charts(path)
        except ChartsChanged as err:
            log.warning("%s; charted again", err)
            return False
        except (ValueError, OSError) as err:
            log.warning("%s: not a whole chart file any more (%s); charted again", path, err)
            return False
        return True
    old, new = (json.loads(found) if found else {}), json.loads(made)
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if set(differ) <= {"inputs", "software"}:
        if "software" in differ:
            log.warning("%s: made by %s, not by the %s running now; charted again", path,
                        old.get("software", "a version that did not record itself in made_by"), new["software"])
        return False
    raise ValueError(f"{path}: a chart made by another model or with other options (differs in "
                     f"{', '.join(differ) or 'made_by'}); --overwrite charts the scene again, or use another --out")


def outdated(path: str | Path, made: str) -> bool:
    """Whether the chart file ``path`` is of other input files than ``made`` (:func:`made_by`)
    records, or is no longer whole (unreadable, edited or damaged since it was written)."""
    try:
        with netCDF4.Dataset(path) as nc:
            found = nc.getncattr("made_by") if "made_by" in nc.ncattrs() else ""
        read_intact_charts(path)
        recorded = json.loads(found) if found else {}
    except (ValueError, OSError):
        return True
    return not isinstance(recorded, dict) or recorded.get("inputs") != json.loads(made).get("inputs")


def chart_each(targets: ScenePaths, out_dir: str | Path, record: Callable[[Path], str],
               write: Callable[[Path, str], object], overwrite: bool = False, walk: Walk | None = None,
               progress: bool = False, withdraw: Callable[[Path, str], object] | None = None,
               before_change: Callable[[], object] | None = None) -> list[Path]:
    """Chart every target into ``out_dir/{scene_id}_charts.nc`` through ``walk`` (default: one that
    stops at the first failure): ``record(target)`` is the ``made_by`` of the chart the model would
    write (:func:`made_by`, hashing the scene files it reads), and ``write(target, made)`` charts the
    scene recording it. A file already there is kept when :func:`reusable` says so; when charting
    the scene again fails, ``withdraw(chart_file, made)`` is called before the failure goes on
    (:func:`seaice_lib.charts.maps.withdraw_outdated`). ``before_change()`` is called before each
    chart is written or may be withdrawn (``predict`` removes the set's upload package there); an
    upload package there holding the scene's chart is removed then too (:func:`remove_package_of`).
    The one loop of the PyTorch and ONNX charting commands; returns the chart files written or kept."""
    walk = walk or Walk("scenes", stop_on_failure=True)

    def changing(scene_id: str) -> None:
        if before_change is not None:
            before_change()
        remove_package_of(out_dir, scene_id, "which is charted again")

    def chart(target: Path) -> Path:
        try:
            with Scene(target, validate=False) as scene:
                scene_id = scene.scene_id
            out = charts_path(out_dir, scene_id)
        except BaseException:  # a file that no longer opens (truncated, replaced): its earlier chart goes
            if withdraw is not None:
                if charts_path(out_dir, schema.scene_key(target)).exists():
                    changing(schema.scene_key(target))
                try:
                    made = record(target)
                except (ValueError, OSError):  # its files cannot be hashed: the chart there cannot be vouched for
                    made = "{}"
                withdraw(charts_path(out_dir, schema.scene_key(target)), made)
            raise
        made = record(target)
        if reusable(out, made, overwrite):
            walk.kept += 1
            return out
        changing(scene_id)
        try:
            write(target, made)
        except BaseException:
            if withdraw is not None:
                withdraw(out, made)
            raise
        return out

    return walk.each(scene_paths(targets), chart, progress=progress)


def stopped_line(signal_name: str, targets: Sequence[Path], walk: Walk, out_dir: str | Path,
                 not_made: str = "") -> str:
    """The line of a one-shot charting command that ``signal_name`` stopped
    (:class:`~seaice_lib.stopping.Stopped`): the ``targets`` charted into ``out_dir`` (``walk.done``)
    and those not (failed or not reached), with all charted that their other outputs may be
    missing, and ``not_made``: what else the command did not make."""
    charted = {Path(p) for p in walk.done}
    missing = [t.name for t in targets if charts_path(out_dir, schema.scene_key(t)) not in charted]
    failed = f" ({len(walk.failed)} of them failed, named above)" if walk.failed else ""
    rest = f"not charted: {logs.first_few(missing)}{failed}" if missing else "their other outputs not all made"
    return (f"stopped by {signal_name}: {len(targets) - len(missing)} of {len(targets)} scenes charted into "
            f"{out_dir}, {rest}{'; ' + not_made if not_made else ''}; run the same command again to go on "
            "(the charts made are kept)")


def _model_grid_centres(shape: tuple[int, int], downsample: int) -> tuple[np.ndarray, np.ndarray]:
    """80 m (line, sample) of the centre of each model-grid pixel ``(i, j)``, which covers lines
    ``[i d, (i + 1) d)`` and samples ``[j d, (j + 1) d)``."""
    half = (downsample - 1) / 2
    return (np.arange(shape[0]) * downsample + half, np.arange(shape[1]) * downsample + half)


def _geo_variables(nc: netCDF4.Dataset, prefix: str, dims: tuple[str, str], where: str,
                   chunks: tuple[int, int]) -> tuple[netCDF4.Variable, netCDF4.Variable]:
    out = []
    for name, standard, units in (("lat", "latitude", "degrees_north"),
                                  ("lon", "longitude", "degrees_east")):
        var = nc.createVariable(prefix + name, "f4", dims, zlib=True, complevel=4, shuffle=True,
                                chunksizes=chunks)
        var.setncatts({"standard_name": standard, "long_name": f"{standard} of {where}", "coverage_content_type": "coordinate",
                       "units": units})
        out.append(var)
    return out[0], out[1]


def _write_lonlat(lat: netCDF4.Variable, lon: netCDF4.Variable, tiepoints: TiePointGrid,
                  lines: np.ndarray, samples: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Write lat/lon at ``lines`` x ``samples``; returns their (min, max) each, as written."""
    lat_range, lon_range = [np.inf, -np.inf], [np.inf, -np.inf]
    for start in range(0, len(lines), _GEO_BLOCK_LINES):
        block = lines[start:start + _GEO_BLOCK_LINES]
        lon_block, lat_block = tiepoints.pixel_lonlat(block, samples)
        lat_block = lat_block.astype(np.float32)
        lon_block = ((lon_block + 180) % 360 - 180).astype(np.float32)
        lat[start:start + len(block)] = lat_block
        lon[start:start + len(block)] = lon_block
        for bounds, values in ((lat_range, lat_block), (lon_range, lon_block)):
            bounds[:] = min(bounds[0], float(values.min())), max(bounds[1], float(values.max()))
    return (lat_range[0], lat_range[1]), (lon_range[0], lon_range[1])


def outline(tiepoints: TiePointGrid) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of the tie points around the scene's edge, in order."""
    n_l, n_s = tiepoints.lat.shape
    ring = ([(0, j) for j in range(n_s)] + [(i, n_s - 1) for i in range(1, n_l)]
            + [(n_l - 1, j) for j in range(n_s - 2, -1, -1)] + [(i, 0) for i in range(n_l - 2, 0, -1)])
    rows, cols = np.array(ring).T
    return tiepoints.lat[rows, cols], tiepoints.lon[rows, cols]


def _checked_charts(scene_id: str, charts: Mapping[str, np.ndarray]) -> tuple[int, int]:
    missing = [c for c in schema.CHARTS if c not in charts]
    if missing:
        raise ValueError(f"{scene_id}: charts {missing} missing")
    shapes = {c: np.shape(charts[c]) for c in schema.CHARTS}
    if len(set(shapes.values())) != 1 or len(shapes["SIC"]) != 2:
        raise ValueError(f"{scene_id}: charts must be 2-D arrays of one shape, not {shapes}")
    for chart in schema.CHARTS:
        values = np.asarray(charts[chart])
        bad = (values >= schema.N_CLASSES[chart]) & (values != schema.CHART_FILL) | (values < 0)
        if values.dtype.kind not in "iu" or bad.any():
            raise ValueError(f"{scene_id}: {chart}: classes must be integers 0.."
                             f"{schema.N_CLASSES[chart] - 1} or {schema.CHART_FILL} (no label)")
    return shapes["SIC"]


def scene_region(scene: Scene) -> str:
    """The ice-chart region of a scene (:attr:`Scene.region <seaice_lib.data.scene.Scene.region>`,
    from its ``original_id``), or "" when its ``original_id`` names none: what a chart file records
    as ``region``."""
    try:
        return scene.region
    except SceneError as err:
        log.warning("%s; its chart records no region (SIGRID-3 file names need one)", err)
        return ""


def write_charts(path: str | Path, scene_id: str, charts: Mapping[str, np.ndarray],
                 tiepoints: TiePointGrid, probabilities: Mapping[str, np.ndarray] | None = None,
                 downsample: int | None = None, attrs: Mapping[str, str] | None = None,
                 region: str = "") -> Path:
    """Write one CF chart file; returns ``path``.

    Args:
        scene_id: ``YYYYMMDDTHHMMSS_{dmi|cis}`` (gives the ``time`` coordinate).
        charts: chart -> (H, W) integer classes at 80 m, 255 = no label.
        tiepoints: the scene's tie points on that (H, W) grid (lat/lon of every pixel).
        probabilities: chart -> (K, h, w) float probabilities on the model grid (h = H // d,
            w = W // d), as ``SceneCharts.blended``; single-channel entries (SIC regression) have
            no probabilities and are left out. Needs ``downsample`` (d).
        attrs: more global attributes, e.g. :func:`provenance`.
        region: the scene's ice-chart region (:func:`scene_region`), recorded as the global
            attribute ``region`` ("" when unknown); SIGRID-3 file names are made from it.
    """
    scene_id = submission.scene_id(scene_id)
    shape = _checked_charts(scene_id, charts)
    probabilities = {c: np.asarray(p) for c, p in (probabilities or {}).items() if np.shape(p)[0] > 1}
    if probabilities:
        if not downsample or downsample < 1:
            raise ValueError(f"{scene_id}: probabilities need the model grid's downsample (>= 1)")
        model_shape = (shape[0] // downsample, shape[1] // downsample)
        for chart, p in probabilities.items():
            expected = (schema.N_CLASSES.get(chart), *model_shape)
            if p.shape != expected:
                raise ValueError(f"{scene_id}: {chart} probabilities: shape {p.shape}, expected "
                                 f"{expected} (classes, H // {downsample}, W // {downsample})")
    time = dt.datetime.strptime(scene_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    chunks = (min(shape[0], CHUNK), min(shape[1], CHUNK))
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.setncatts(global_metadata(
            scene_id, f"Sea ice charts of the Sentinel-1 scene {scene_id} at 80 m", outline(tiepoints),
            "charted the scene on its SAR swath grid",
            {"chart_format": CHART_FORMAT, "pixel_spacing_m": np.int32(schema.RTT_PIXEL_SPACING_M),
             "comment": "flag_colors attributes are not CF: this project's chart colours "
                        "(seaice_lib.schema.CLASSES), one per flag value",
             "region": str(region), **(attrs or {})}))
        nc.createDimension(schema.SAR_DIMS[0], shape[0])
        nc.createDimension(schema.SAR_DIMS[1], shape[1])
        t = nc.createVariable("time", "f8", ())
        t.setncatts({"standard_name": "time", "long_name": "SAR acquisition start",
                     "units": TIME_UNITS, "calendar": "standard",
                     "units_metadata": "leap_seconds: none"})
        t.assignValue(time.timestamp())
        lat, lon = _geo_variables(nc, "", schema.SAR_DIMS, "the 80 m pixel centres", chunks)
        for chart in schema.CHARTS:
            n = schema.N_CLASSES[chart]
            var = nc.createVariable(chart, "u1", schema.SAR_DIMS, zlib=True, complevel=4,
                                    chunksizes=chunks, fill_value=np.uint8(schema.CHART_FILL))
            var.setncatts({
                "long_name": LONG_NAMES[chart], "coordinates": "time lat lon",
                "valid_range": np.array([0, n - 1], np.uint8),
                "flag_values": np.arange(n, dtype=np.uint8),
                "flag_meanings": " ".join(flag_meanings(chart)),
                "flag_colors": " ".join(schema.CLASSES[chart].colours), "coverage_content_type": "thematicClassification",
                **STANDARD_NAMES.get(chart, {}),
                "comment": f"{schema.CHART_FILL} (_FillValue): no label, no SAR data there"})
            var.set_auto_mask(False)
            var[:] = np.asarray(charts[chart]).astype(np.uint8)
        if probabilities:
            nc.createDimension("model_lines", model_shape[0])
            nc.createDimension("model_samples", model_shape[1])
            model_chunks = (min(model_shape[0], CHUNK), min(model_shape[1], CHUNK))
            where = f"the model grid's pixel centres ({downsample} x 80 m)"
            mlat, mlon = _geo_variables(nc, "model_", ("model_lines", "model_samples"), where,
                                        model_chunks)
            assert downsample is not None  # checked above, with the probabilities
            _write_lonlat(mlat, mlon, tiepoints, *_model_grid_centres(model_shape, downsample))
            nc.setncattr("model_grid_downsample", np.int32(downsample))
            for chart, p in probabilities.items():
                n = schema.N_CLASSES[chart]
                dim = f"{chart}_class"
                nc.createDimension(dim, n)
                classes = nc.createVariable(dim, "u1", (dim,))
                classes.setncatts({"long_name": f"{chart} class", "coverage_content_type": "coordinate",
                                   "flag_values": np.arange(n, dtype=np.uint8),
                                   "flag_meanings": " ".join(flag_meanings(chart))})
                classes[:] = np.arange(n, dtype=np.uint8)
                var = nc.createVariable(f"{chart}_probability", "u1", (dim, "model_lines",
                                                                      "model_samples"),
                                        zlib=True, complevel=4, chunksizes=(1, *model_chunks),
                                        fill_value=np.uint8(255))
                var.setncatts({"long_name": f"probability of each {chart} class",
                               "units": "percent", "valid_range": np.array([0, 100], np.uint8),
                               "coverage_content_type": "modelResult",
                               "comment": "the classes of a pixel sum to exactly 100; 255 where the "
                                          "model gave no finite probabilities or any 80 m pixel it "
                                          "covers has no class (no SAR data, inputs not finite or "
                                          "out of range)",
                               "coordinates": "time model_lat model_lon"})
                var.set_auto_mask(False)
                var[:] = percent(p)
        nc.setncatts(extents(*_write_lonlat(lat, lon, tiepoints, np.arange(shape[0]), np.arange(shape[1]))))
        nc.setncattr("content_sha256", content_sha256(nc))  # last: of the file as written
    return Path(path)


def write_scene_charts(path: str | Path, target: str | Path, charts: Mapping[str, np.ndarray],
                       probabilities: Mapping[str, np.ndarray] | None = None,
                       downsample: int | None = None, attrs: Mapping[str, str] | None = None) -> Path:
    """:func:`write_charts` for the scene file ``target`` (its id, tie points and region)."""
    with Scene(target, validate=False) as scene:
        scene_id, tiepoints, region = scene.scene_id, scene.tiepoints, scene_region(scene)
    return write_charts(path, scene_id, charts, tiepoints, probabilities, downsample, attrs, region)


def write_predicted(out_dir: str | Path, target: str | Path, predicted: SceneCharts, downsample: int,
                    attrs: Mapping[str, str]) -> Path:
    """The chart file of a predicted scene in ``out_dir`` (:func:`charts_path`), its probabilities
    when kept. Store pixels where the model gave non-finite outputs carry no class (255): they are
    counted in the file (``non_finite_model_outputs``) and reported as a warning naming the scene.
    So do the pixels that input values masked as not finite or out of range reach
    (:attr:`SceneCharts.masked_inputs`): a warning names the scene and each file and variable, and
    an earlier acquisition's are counted in the file (``masked_history_inputs``). Earlier
    acquisitions of the target's time window that could not be read (:attr:`SceneCharts.left_out_history`)
    are named in a warning and in the file (``left_out_history_inputs``): the charts lack them."""
    attrs = dict(attrs)
    if predicted.left_out_history:
        attrs["left_out_history_inputs"] = "; ".join(left_out_lines(predicted.left_out_history))
        log.warning("%s: charted without earlier acquisitions that could not be read: %s",
                    predicted.scene_id, attrs["left_out_history_inputs"])
    if predicted.masked_inputs:
        target_file = Path(target).name
        files = predicted.masked_values()
        if history := [f"{file}: {counts}" for file, counts in files.items() if file != target_file]:
            attrs["masked_history_inputs"] = f"{'; '.join(history)} masked as not finite or out of range"
        log.warning("%s: inputs masked as not finite or out of range (%s): their %d pixels charted as no data (255)",
                    predicted.scene_id, "; ".join(f"{'' if file == target_file else 'earlier acquisition '}{file}: {counts}"
                                                  for file, counts in files.items()), predicted.n_masked_pixels)
    if predicted.non_finite:
        counts = ", ".join(f"{chart} {n}" for chart, n in predicted.non_finite.items())
        attrs["non_finite_model_outputs"] = f"store pixels without a class: {counts}"
        log.warning("%s: the model gave non-finite outputs on store pixels (%s); charted as no data (255)",
                    predicted.scene_id, counts)
    return write_scene_charts(charts_path(out_dir, predicted.scene_id), target, predicted.charts,
                              predicted.blended, downsample, attrs)


def unusable_inputs(targets: Sequence[Path], chart_files: Sequence[Path], inputs: tuple[str, ...]) -> str:
    """Why the charts of ``chart_files`` (of the scene files ``targets``) may not pass for complete,
    uploadable ones, naming each scene and file; ``""`` when they may. Each target whose SAR-grid
    model ``inputs`` were masked (:func:`_masked_sar`), whose earlier acquisitions' masked values
    reach its pixels or whose model gave non-finite outputs (:func:`_chart_problems`): its charts
    have no class (255) on pixels the reference charts may label; and each charted without an
    earlier acquisition that could not be read (:func:`_left_out_history`). The one policy of
    ``predict``'s upload package (:func:`seaice_lib.charts.inference.check_package`), ``edge-predict``'s
    exit status and both ``--follow`` modes' summary."""
    no_class = _masked_sar(targets, inputs) + _chart_problems(chart_files)
    left_out = _left_out_history(chart_files)
    said = [f"{'; '.join(no_class)}: those pixels have no class (255) where the reference charts may have "
            "labels, and the official scorer would count each as wrong"] if no_class else []
    said += [f"{'; '.join(left_out)}: charted from fewer acquisitions than the data hold"] if left_out else []
    return "; ".join(said)


def recorded_problems(chart_file: Path) -> list[str]:
    """What a chart file records of its charts' problems (:data:`NO_CLASS_ATTRS`: pixels of no class
    for the model's non-finite outputs or masked earlier acquisitions, earlier acquisitions left out),
    each said as :func:`unusable_inputs` says it; [] where it records none."""
    return _chart_problems([chart_file]) + _left_out_history([chart_file])


def _left_out_history(chart_files: Sequence[Path]) -> list[str]:
    """``"SCENE: earlier acquisition FILE: problem (left out)"`` for each chart file made without
    earlier acquisitions that could not be read (``left_out_history_inputs``, :func:`write_predicted`)."""
    out = []
    for path in chart_files:
        with netCDF4.Dataset(path) as nc:
            if "left_out_history_inputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: earlier acquisition "
                           f"{nc.getncattr('left_out_history_inputs')} (left out)")
    return out


def _chart_problems(chart_files: Sequence[Path]) -> list[str]:
    """``"SCENE: the model gave non-finite outputs, store pixels without a class: SIC 12, ..."`` for
    each chart file in which the model gave non-finite outputs (``non_finite_model_outputs``) and
    ``"SCENE: earlier acquisition FILE: HH 3 values masked ..."`` for each whose earlier acquisitions'
    masked values reach its pixels (``masked_history_inputs``; both :func:`write_predicted`)."""
    out = []
    for path in chart_files:
        with netCDF4.Dataset(path) as nc:
            if "masked_history_inputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: earlier acquisition {nc.getncattr('masked_history_inputs')}")
            if "non_finite_model_outputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: the model gave non-finite outputs, "
                           f"{nc.getncattr('non_finite_model_outputs')}")
    return out


def _masked_sar(targets: Sequence[Path], inputs: tuple[str, ...]) -> list[str]:
    """``"SCENE: HH 3600 values"`` for each target whose SAR or other SAR-grid model ``inputs`` (the
    incidence angle) the reader masked beyond the dataset's own no-data convention (not finite or
    out of range): its charts carry 255 there, inside the swath."""
    out = []
    others = [n for n in inputs if n not in schema.SAR_VARIABLES]
    for path in targets:
        with Scene(path) as scene:
            report = {n: k for n, k in scene.value_report().items() if n in schema.SAR_VARIABLES}
            if report:
                out.append(f"{scene.scene_id}: {', '.join(f'{n} {k} values' for n, k in report.items())} "
                           "masked as not finite or out of range")
            if lost := int((scene.sar_valid(inputs=()) & ~scene.sar_valid(inputs=tuple(others))).sum()):
                out.append(f"{scene.scene_id}: {lost} pixels with HH and HV but no data in {', '.join(others)} "
                           "(no-data value, not finite or out of range)")
    return out


def _checked_variable(path: Path, ds, name: str, dims: tuple[str, ...]) -> np.ndarray:
    if name not in ds:
        raise SceneError(path, "missing: not a whole chart file", name)
    var = ds[name]
    if var.dims != dims or var.dtype != np.uint8:
        raise SceneError(path, f"dims {var.dims} and dtype {var.dtype}, expected {dims} uint8", name)
    try:
        return np.asarray(var.values)
    except (RuntimeError, OSError) as err:
        raise SceneError(path, f"damaged data, the file cannot give it back ({err})", name) from err


def read_charts(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(scene id, chart -> (H, W) uint8, 255 = no label) from a file of :func:`write_charts`.

    :class:`~seaice_lib.data.scene.SceneError` names the file (and the variable) when it is not a
    readable chart file of this format, lacks a chart, or holds a class out of range.
    """
    path = Path(path)
    with open_dataset(path) as ds:
        found = ds.attrs.get("chart_format")
        if found != CHART_FORMAT:
            raise SceneError(path, f"not a chart file (chart_format {found!r}, "
                                   f"expected {CHART_FORMAT!r})")
        charts = {}
        for chart in schema.CHARTS:
            values = _checked_variable(path, ds, chart, schema.SAR_DIMS)
            flags = np.asarray(ds[chart].attrs.get("flag_values", []))
            if not np.array_equal(flags, np.arange(schema.N_CLASSES[chart])):
                raise SceneError(path, f"flag_values {flags.tolist()}, expected 0.."
                                       f"{schema.N_CLASSES[chart] - 1}", chart)
            check_chart_classes(path, chart, values)
            charts[chart] = values
        scene_id = ds.attrs.get("scene_id")
        if not (isinstance(scene_id, str) and schema.SCENE_ID.fullmatch(scene_id)):
            raise SceneError(path, f"scene_id attribute {scene_id!r}, not a scene id (YYYYMMDDTHHMMSS_dmi|cis): "
                                   "not a whole chart file")
        return scene_id, charts


class ChartsChanged(ValueError):
    """A chart file whose contents are not the ones it recorded when written (``content_sha256``)."""


def read_intact_charts(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """:func:`read_charts` of a file whose contents are the ones it was written with: their
    SHA-256 (:func:`content_sha256`: classes, probabilities, geolocation, time, global attributes) is its
    ``content_sha256``. :class:`ChartsChanged` naming the file when they differ (edited or damaged
    since) or it records none (an earlier version's file: its maker cannot be vouched for)."""
    scene_id, charts = read_charts(path)
    with netCDF4.Dataset(path) as nc:
        recorded = nc.getncattr("content_sha256") if "content_sha256" in nc.ncattrs() else None
        found = content_sha256(nc)
    if recorded is None:
        raise ChartsChanged(f"{path}: records no content_sha256 (the SHA-256 of its contents when written; "
                            "an earlier version's chart file): it cannot be told from an edited one")
    if recorded != found:
        raise ChartsChanged(f"{path}: its contents changed since it was written (content_sha256: its classes, "
                            "probabilities, lat/lon, time or global attributes; or a version whose content_sha256 "
                            "left global attributes out wrote it)")
    return scene_id, charts


def read_probabilities(path: str | Path) -> dict[str, np.ndarray]:
    """chart -> (K, h, w) uint8 percent on the model grid, for the charts the file has them for."""
    path = Path(path)
    read_charts(path)  # a whole chart file first
    with open_dataset(path) as ds:
        return {c: _checked_variable(path, ds, f"{c}_probability",
                                     (f"{c}_class", "model_lines", "model_samples"))
                for c in schema.CHARTS if f"{c}_probability" in ds}


UPLOAD_PACKAGE = "upload_package.nc"  # the name predict gives the package in its --out folder


def package_scenes(path: Path) -> set[str]:
    """The scene ids of the upload package at ``path`` (none when it is missing or unreadable)."""
    try:
        with netCDF4.Dataset(path) as nc:
            return {key for key in (name.rpartition("_")[0] for name in nc.variables) if schema.SCENE_ID.fullmatch(key)}
    except OSError:
        return set()


def remove_package_of(out_dir: str | Path, scene_id: str, why: str) -> None:
    """Remove the upload package in ``out_dir`` (:data:`UPLOAD_PACKAGE`) where it holds the chart of
    ``scene_id``, which is about to change (``why``, for the warning): no package stands beside
    charts it was not made from."""
    if scene_id in package_scenes(package := Path(out_dir) / UPLOAD_PACKAGE):
        package.unlink()
        log.warning("%s: removed: it held the chart of %s, %s", package, scene_id, why)


def package_is_current(path: Path) -> bool:
    """Whether the upload package at ``path`` was made from chart files that are still beside it as
    it recorded them (``chart_files``: each name and SHA-256); False for one that records none."""
    try:
        with netCDF4.Dataset(path) as nc:
            recorded = str(nc.getncattr("chart_files"))
    except (OSError, AttributeError):
        return False
    entries = [entry.rpartition(" sha256:") for entry in recorded.split(", ")]
    return all(name and (path.parent / name).is_file() and file_sha256(path.parent / name) == digest
               for name, _, digest in entries)


def write_upload_package(charts: Sequence[str | Path] | Mapping[str, Mapping[str, np.ndarray]],
                         path: str | Path = UPLOAD_PACKAGE) -> Path:
    """The official ``upload_package.nc`` (:mod:`seaice_lib.charts.submission`) from chart files or
    from scene -> chart -> (H, W) classes. 255 is kept where a scene has no SAR data: the reference
    charts are unlabelled there, so the scorer never counts it.

    From chart files, the package records their common maker (``made_by`` without the input files,
    which are each scene's own) and each file's SHA-256 (``chart_files``) with the software that
    made them (their ``software``, whatever version packs them); chart files of different models,
    options or software are refused, naming them. From classes, ``software`` is the running one."""
    attrs = {"software": software()}
    if isinstance(charts, Mapping):
        predictions = charts
    else:
        makers: dict[tuple[str, str], list] = {}
        for p in charts:
            with netCDF4.Dataset(p) as nc:
                made = json.loads(nc.getncattr("made_by")) if "made_by" in nc.ncattrs() else {}
                made_with = str(nc.getncattr("software")) if "software" in nc.ncattrs() else "unknown"
            made.pop("inputs", None)
            makers.setdefault((json.dumps(made, sort_keys=True) if made else "unknown", made_with), []).append(p)
        if len(makers) > 1:
            raise ValueError("the chart files were made by different models, options or software versions: "
                             + "; ".join(", ".join(Path(p).name for p in files) for files in makers.values())
                             + ": chart them again with one model (--overwrite)")
        predictions = dict(read_charts(p) for p in charts)
        maker, made_with = next(iter(makers), ("unknown", "unknown"))
        attrs |= {"software": made_with, "made_by": maker,
                  "chart_files": ", ".join(f"{Path(p).name} sha256:{file_sha256(p)}" for p in charts)}
    return submission.write_upload_package(predictions, path, allow_fill=True, attrs=attrs)
