"""Charts as maps, from a CF chart file (:mod:`seaice_lib.charts.cf`), torch-free.

* **Gridded charts** on a map grid (EPSG:3413 by default, any projected EPSG code, a spacing in
  metres): a Cloud-Optimized GeoTIFF per chart with its class colour table, one per chart's
  probabilities, and a CF netCDF with ``grid_mapping`` and x/y coordinates. The swath is warped by
  GDAL (rasterio) through ground control points at the scene's tie points in the map's own plane
  (thin-plate spline); classes by nearest neighbour, probabilities bilinearly (then renormalised).
* **SIGRID-3 polygons**: the three charts combined into polygons of one ice regime each
  (:func:`seaice_lib.data.icechart.sigrid_codes`), polygonised on the swath grid by GDAL, placed
  by the tie points and simplified together as a coverage (no gaps or overlaps) with a tolerance
  in metres; a SIGRID-3 shapefile set (.shp .shx .dbf .prj .cpg, and its FGDC metadata
  ``.shp.xml``: :mod:`.fgdc`) and a GeoPackage, named ``{centre}_{region}_{YYYYMMDDTHHMMZ}_pl_a``
  (:func:`sigrid_name`).

Every output is written under a temporary name and renamed when whole (:mod:`seaice_lib.atomic`)
and records the source chart file's ``made_by``, its SHA-256 and a ``history`` line. Formats, file
names and which user each suits: docs/charts.md ("Maps and SIGRID-3").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import re
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import netCDF4
import numpy as np
import pyogrio.raw
import rasterio
import rasterio.errors
import rasterio.features
import rasterio.shutil
import rasterio.warp
import shapely
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer
from pyproj.exceptions import CRSError
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from .. import logs, schema
from ..arguments import Parser, UsageError
from ..atomic import atomic_path, folder_lock, not_there, out_folder
from ..data import icechart
from ..data.geo import TiePointGrid
from ..data.scene import Scene, SceneError
from ..data.tiles import percent
from ..provenance import file_sha256, history_line
from ..stages import CHARTS, other_stage
from ..walk import ITEM_ERRORS, Walk, one_line
from . import cf, fgdc

log = logging.getLogger(__name__)

FORMATS = ("netcdf", "sigrid3", "gpkg", "geotiff", "netcdf-grid")
DEFAULT_FORMATS = ("netcdf",)
DEFAULT_EPSG = 3413  # NSIDC Sea Ice Polar Stereographic North
DEFAULT_SPACING_M = 80.0  # the charts' own pixel spacing
MAX_SPACING_M = 25_000.0  # the coarsest grid worth drawing an 80 m chart on (passive microwave's 25 km)
DEFAULT_TOLERANCE_M = 80.0  # SIGRID-3 simplification: one 80 m pixel
DEFAULT_CENTRE = "sil"  # producer code in SIGRID-3 file names (seaice_lib); --centre sets a service's
# services' codes have 2-4 letters; with 16, "{centre}_{region}_{YYYYMMDDTHHMMZ}_pl_a.shp.xml" leaves a
# region 210 of the 255 bytes a file name may have (longer names get a hashed temporary name: atomic)
MAX_CENTRE = 16
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@.\s\x00-\x1f\x7f]+(\.[^@.\s\x00-\x1f\x7f]+)+")
SIGRID_TIME = "%Y%m%dT%H%MZ"  # acquisition time in SIGRID-3 file names: UTC, to the minute
SIGRID_FIELDS = ("CT", "CA", "SA", "FA", "CB", "SB", "FB", "CC", "SC", "FC", "CN", "CD", "CF")
_TIE_POINTS = 21  # GCPs per side of the swath (the scenes' own tie-point grid)
_LAND = -1  # regime id of land pixels


def parse_formats(text: str) -> tuple[str, ...]:
    """``"netcdf,sigrid3"`` -> ``("netcdf", "sigrid3")``; ValueError naming ``--format`` and the
    formats there are."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ValueError(f"--format {text}: {', '.join(bad) or 'no format'} is not one of {', '.join(FORMATS)}")
    return names


def map_crs(epsg: int) -> CRS:
    """The projected CRS of an EPSG code (metres); ValueError naming ``--crs`` otherwise."""
    try:
        crs = CRS.from_epsg(int(epsg))
    except (CRSError, ValueError, TypeError):
        raise ValueError(f"--crs {epsg}: not an EPSG code PROJ knows") from None
    if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
        raise ValueError(f"--crs {epsg}: {crs.name} is not a projected CRS in metres (maps need one, "
                         f"e.g. {DEFAULT_EPSG})")
    return crs


MAX_SCALE_ERROR = 2.0  # a map CRS may stretch (or shrink) the swath's lengths by at most this factor


def check_scale(tiepoints: TiePointGrid, scene_id: str, crs: CRS) -> None:
    """:class:`UsageError` naming ``--crs`` where its projection stretches or shrinks lengths at the
    swath's tie points by more than :data:`MAX_SCALE_ERROR` (PROJ's scale factors): a CRS of another
    region (EPSG:3031, south polar, maps an Arctic scene 56 times too large some 73 000 km out),
    while any Arctic one stays near 1 (EPSG:3413: 1.12 at 47 N)."""
    factors = Proj(crs).get_factors(tiepoints.lon.ravel(), tiepoints.lat.ravel())
    scale = np.concatenate([factors.meridional_scale, factors.parallel_scale])
    worst = float(np.nanmax(np.maximum(scale, 1 / scale))) if np.isfinite(scale).any() else math.inf
    if worst > MAX_SCALE_ERROR:
        raise UsageError(f"--crs {crs.to_epsg()}: {crs.name} distorts lengths on scene {scene_id} by a factor of "
                         f"{worst:.3g} (more than {MAX_SCALE_ERROR:g}: a CRS of another region); give one of the "
                         f"scene's region (default {DEFAULT_EPSG})")


@dataclass
class ChartSource:
    """A chart file read for mapping: classes (H, W) uint8 (255 no label), tie points on that grid,
    probabilities chart -> (K, h, w) uint8 percent on the model grid (downsample ``d``), and what
    made it (``made_by``, SHA-256, ``history``)."""

    path: Path
    scene_id: str
    charts: dict[str, np.ndarray]
    tiepoints: TiePointGrid
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    downsample: int = 1
    made_by: str = "unknown"
    sha256: str = ""
    history: str = ""
    attrs: dict[str, object] = field(default_factory=dict)
    acquired: dt.datetime | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.charts["SIC"].shape

    @property
    def time(self) -> dt.datetime:
        """The acquisition time (UTC): the file's ``time`` coordinate, else its scene id's."""
        if self.acquired is not None:
            return self.acquired
        return dt.datetime.strptime(self.scene_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)


def _tiepoints(nc: netCDF4.Dataset, shape: tuple[int, int]) -> TiePointGrid:
    """The tie points of an open chart file of ``shape`` (H, W): its lat/lon at a 21 x 21 grid of pixels."""
    h, w = shape
    lines = np.unique(np.linspace(0, h - 1, min(h, _TIE_POINTS)).round().astype(int))
    samples = np.unique(np.linspace(0, w - 1, min(w, _TIE_POINTS)).round().astype(int))
    lat = np.asarray(nc["lat"][lines, samples], float)
    lon = np.asarray(nc["lon"][lines, samples], float)
    return TiePointGrid(lines.astype(float), samples.astype(float), lat, lon)


def read_source(path: str | Path) -> ChartSource:
    """A chart file of :func:`seaice_lib.charts.cf.write_charts` whose contents are those it was
    written with (refused by name otherwise: :func:`~seaice_lib.charts.cf.read_intact_charts`,
    :func:`_acquired`), with its tie points taken from its lat/lon at a 21 x 21 grid of pixels."""
    path = Path(path)
    scene_id, charts = cf.read_intact_charts(path)
    probabilities = cf.read_probabilities(path)
    with netCDF4.Dataset(path) as nc:
        tiepoints = _tiepoints(nc, charts["SIC"].shape)
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        acquired = _acquired(nc)
    return ChartSource(path, scene_id, charts, tiepoints, probabilities, int(attrs.get("model_grid_downsample", 1)),
                       str(attrs.get("made_by", "unknown")), file_sha256(path), str(attrs.get("history", "")), attrs,
                       acquired)


def _acquired(nc: netCDF4.Dataset) -> dt.datetime | None:
    """The chart file's ``time`` coordinate (the SAR acquisition start, CF units) as a UTC
    datetime; None where the file has none. ValueError naming the file where it is not a time, or
    not the acquisition time its ``scene_id`` says (to the second)."""
    if "time" not in nc.variables:
        return None
    var = nc["time"]
    seconds = np.asarray(var[...], float)
    try:
        if not np.isfinite(seconds).all():
            raise ValueError("not finite")
        value = netCDF4.num2date(seconds, var.units, getattr(var, "calendar", "standard"),
                                 only_use_cftime_datetimes=False, only_use_python_datetimes=True)
        acquired = np.asarray(value).item().replace(tzinfo=dt.timezone.utc)  # a scalar: a datetime
    except (ValueError, OverflowError, AttributeError) as err:
        raise ValueError(f"{nc.filepath()}: variable time: {seconds} {getattr(var, 'units', '')} is not an "
                         f"acquisition time ({err})") from None
    scene_id = str(nc.getncattr("scene_id")) if "scene_id" in nc.ncattrs() else ""
    if schema.SCENE_ID.fullmatch(scene_id) and acquired.strftime("%Y%m%dT%H%M%S") != scene_id[:15]:
        raise ValueError(f"{nc.filepath()}: its scene_id is {scene_id!r} but its variable time says "
                         f"{acquired:%Y-%m-%d %H:%M:%S} UTC (another acquisition): an edited or mixed-up chart file")
    return acquired


@dataclass(frozen=True)
class MapGrid:
    """A north-up map grid: ``crs``, ``transform`` (affine, pixel corner -> metres), ``height`` x
    ``width`` pixels of ``spacing`` metres."""

    crs: CRS
    transform: Affine
    height: int
    width: int
    spacing: float

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x (width,) and y (height,) of the pixel centres, metres (y decreasing)."""
        x = self.transform.c + (np.arange(self.width) + 0.5) * self.spacing
        y = self.transform.f - (np.arange(self.height) + 0.5) * self.spacing
        return x, y


def _to_crs(crs: CRS):
    """(x, y in EPSG:3413 metres) -> (x, y in ``crs``)."""
    if crs.to_epsg() == DEFAULT_EPSG:
        return lambda x, y: (np.asarray(x, float), np.asarray(y, float))
    transformer = Transformer.from_crs(CRS.from_epsg(DEFAULT_EPSG), crs, always_xy=True)
    return transformer.transform


def _swath_xy(tiepoints: TiePointGrid, lines: np.ndarray, samples: np.ndarray, crs: CRS):
    """Map x, y (m, in ``crs``) of fractional swath (line, sample) positions (pixel centres at
    integers)."""
    x, y = tiepoints.points_xy(lines, samples)
    return _to_crs(crs)(x, y)


def grid_for(source: ChartSource, crs: CRS, spacing: float) -> MapGrid:
    """The map grid covering the swath: its outline placed in ``crs``, the bounds snapped outwards
    to multiples of ``spacing`` metres."""
    if not spacing > 0:
        raise ValueError(f"--spacing {spacing}: must be > 0 metres")
    h, w = source.shape
    along_lines, along_samples = np.linspace(-0.5, h - 0.5, 65), np.linspace(-0.5, w - 0.5, 65)
    lines = np.concatenate([np.full(65, -0.5), np.full(65, h - 0.5), along_lines, along_lines])
    samples = np.concatenate([along_samples, along_samples, np.full(65, -0.5), np.full(65, w - 0.5)])
    x, y = _swath_xy(source.tiepoints, lines, samples, crs)
    left, right = np.floor(x.min() / spacing) * spacing, np.ceil(x.max() / spacing) * spacing
    bottom, top = np.floor(y.min() / spacing) * spacing, np.ceil(y.max() / spacing) * spacing
    width, height = int(round((right - left) / spacing)), int(round((top - bottom) / spacing))
    if width * height > 40_000 ** 2:
        raise ValueError(f"--spacing {spacing}: a grid of {width} x {height} pixels; choose a larger spacing")
    return MapGrid(crs, Affine(spacing, 0, left, 0, -spacing, top), height, width, float(spacing))


def _gcps(source: ChartSource, crs: CRS, downsample: int = 1) -> list[GroundControlPoint]:
    """Ground control points at the tie points: (row, col) of the pixel-corner convention on a grid
    ``downsample`` times coarser than the charts' -> (x, y) in ``crs``."""
    tp = source.tiepoints
    lines, samples = np.meshgrid(tp.lines, tp.samples, indexing="ij")
    x, y = _swath_xy(tp, lines, samples, crs)
    return [GroundControlPoint(row=(line + 0.5) / downsample, col=(sample + 0.5) / downsample, x=float(px), y=float(py))
            for line, sample, px, py in zip(lines.ravel(), samples.ravel(), x.ravel(), y.ravel(), strict=True)]


def warp(bands: np.ndarray, source: ChartSource, grid: MapGrid, resampling: Resampling, nodata: float,
         downsample: int = 1) -> np.ndarray:
    """(B, h, w) swath bands (``downsample`` times coarser than the charts) -> (B, H, W) on ``grid``
    by GDAL's warper (thin-plate spline through :func:`_gcps`); ``nodata`` where no swath pixel
    lands or the source is ``nodata``."""
    out = np.full((bands.shape[0], grid.height, grid.width), nodata, bands.dtype)
    rasterio.warp.reproject(source=np.ascontiguousarray(bands), destination=out, gcps=_gcps(source, grid.crs, downsample),
                            src_crs=grid.crs, src_nodata=nodata, dst_transform=grid.transform, dst_crs=grid.crs,
                            dst_nodata=nodata, resampling=resampling, SRC_METHOD="GCP_TPS")
    return out


def gridded_charts(source: ChartSource, grid: MapGrid) -> dict[str, np.ndarray]:
    """chart -> (H, W) uint8 classes on ``grid`` (nearest neighbour, 255 outside the swath)."""
    stack = np.stack([source.charts[c] for c in schema.CHARTS])
    warped = warp(stack, source, grid, Resampling.nearest, schema.CHART_FILL)
    return dict(zip(schema.CHARTS, warped, strict=True))


def gridded_probabilities(source: ChartSource, grid: MapGrid) -> dict[str, np.ndarray]:
    """chart -> (K, H, W) uint8 percent on ``grid``: the model-grid probabilities interpolated
    bilinearly as fractions, renormalised to sum to 1 and rounded to percent summing to 100
    (:func:`seaice_lib.data.tiles.percent`); 255 outside the swath."""
    out = {}
    for chart, p in source.probabilities.items():
        fractions = np.where(p == 255, np.nan, p / 100.0).astype(np.float32)
        warped = warp(fractions, source, grid, Resampling.bilinear, np.nan, source.downsample)
        with np.errstate(invalid="ignore", divide="ignore"):
            warped = warped / warped.sum(axis=0, keepdims=True)
        out[chart] = percent(warped)
    return out


def _colormap(chart: str) -> dict[int, tuple[int, ...]]:
    colours = {k: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) + (255,) for k, c in enumerate(schema.CLASSES[chart].colours)}
    return {**colours, schema.CHART_FILL: (0, 0, 0, 0)}


def _provenance_tags(source: ChartSource, action: str) -> dict[str, str]:
    """What made an output of ``source`` (GeoTIFF tags, the SIGRID-3 sidecar), with where its charts
    have no class beyond the swath (:data:`~seaice_lib.charts.cf.NO_CLASS_ATTRS`)."""
    return {"made_by": source.made_by, "source_chart_file": f"{source.path.name} sha256:{source.sha256}",
            "history": "\n".join(h for h in (source.history, history_line(action)) if h), "scene_id": source.scene_id,
            **{k: str(source.attrs[k]) for k in cf.NO_CLASS_ATTRS if k in source.attrs}}


def _write_cog(path: Path, bands: np.ndarray, grid: MapGrid, nodata: int, tags: Mapping[str, str],
               descriptions: Sequence[str], colormap: Mapping | None = None, overviews: str = "NEAREST") -> Path:
    profile = dict(driver="GTiff", dtype="uint8", count=bands.shape[0], height=grid.height, width=grid.width,
                   crs=grid.crs.to_wkt(), transform=grid.transform, nodata=nodata)
    with MemoryFile() as memory:
        with memory.open(**profile) as ds:
            ds.write(bands)
            ds.update_tags(**tags)
            for i, text in enumerate(descriptions, start=1):
                ds.set_band_description(i, text)
            if colormap is not None:
                ds.write_colormap(1, colormap)
        with memory.open() as ds, atomic_path(path) as tmp:
            rasterio.shutil.copy(ds, str(tmp), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE="512",
                                 OVERVIEW_RESAMPLING=overviews)
    return path


def write_geotiffs(out_dir: str | Path, source: ChartSource, grid: MapGrid, charts: Mapping[str, np.ndarray],
                   probabilities: Mapping[str, np.ndarray], written: list[Path] | None = None) -> list[Path]:
    """``{scene_id}_{chart}.tif`` per chart (classes, colour table, 255 nodata) and
    ``{scene_id}_{chart}_probability.tif`` (one uint8-percent band per class) as COGs; each is
    appended to ``written`` as it is made (returned)."""
    out = [] if written is None else written
    for chart in schema.CHARTS:
        names = cf.flag_meanings(chart)
        tags = {**_provenance_tags(source, f"gridded {chart} onto {grid.crs.to_string()} at {grid.spacing:g} m"),
                "chart": chart, "long_name": cf.LONG_NAMES[chart], "flag_values": " ".join(map(str, range(len(names)))),
                "flag_meanings": " ".join(names), **{f"class_{k}": n for k, n in enumerate(schema.CLASSES[chart].names)}}
        path = Path(out_dir) / f"{source.scene_id}_{chart}.tif"
        out.append(_write_cog(path, charts[chart][None], grid, schema.CHART_FILL, tags, [f"{chart} class"],
                              _colormap(chart)))
        if chart in probabilities:
            tags = {**_provenance_tags(source, f"gridded {chart} probabilities onto {grid.crs.to_string()}"),
                    "chart": chart, "units": "percent"}
            path = Path(out_dir) / f"{source.scene_id}_{chart}_probability.tif"
            out.append(_write_cog(path, probabilities[chart], grid, 255, tags,
                                  [f"{chart} probability of {n} (percent)" for n in names], overviews="AVERAGE"))
    return out


def _grid_lonlat(grid: MapGrid, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    x, y = grid.centres()
    xx, yy = np.meshgrid(x, y[rows])
    lon, lat = Transformer.from_crs(grid.crs, CRS.from_epsg(4326), always_xy=True).transform(xx, yy)
    return lon, lat


def _grid_mapping(crs: CRS) -> dict[str, object]:
    """CF grid-mapping attributes of ``crs`` (pyproj's), with the ``latitude_of_projection_origin``
    (+-90) CF requires of a polar stereographic mapping that gives its standard parallel instead."""
    attrs = dict(crs.to_cf())
    if attrs.get("grid_mapping_name") == "polar_stereographic" and "latitude_of_projection_origin" not in attrs:
        attrs["latitude_of_projection_origin"] = 90.0 if attrs.get("standard_parallel", 90.0) > 0 else -90.0
    return attrs


def write_grid_netcdf(path: str | Path, source: ChartSource, grid: MapGrid, charts: Mapping[str, np.ndarray],
                      probabilities: Mapping[str, np.ndarray], attrs: Mapping[str, object] | None = None) -> Path:
    """A CF netCDF of the gridded charts: ``SIC``/``SOD``/``FLOE`` (y, x) uint8 with the chart
    file's flag attributes and ``grid_mapping = "crs"``, ``x``/``y`` projection coordinates (m),
    ``lat``/``lon`` auxiliary coordinates, ``{chart}_probability`` (class, y, x) percent."""
    x, y = grid.centres()
    tp = source.tiepoints
    meta = cf.global_metadata(
        source.scene_id, f"Sea ice charts of the Sentinel-1 scene {source.scene_id} on {grid.crs.name} at {grid.spacing:g} m",
        cf.outline(tp), f"gridded the chart file {source.path.name} onto {grid.crs.to_string()} at {grid.spacing:g} m",
        {k: source.attrs[k] for k in ("model", "model_config_sha256", "input_files", "software", *cf.PRODUCER_KEYS,
                                      *cf.NO_CLASS_ATTRS) if k in source.attrs},
        processing_level="model-derived ice chart classes gridded onto a map projection")
    meta["history"] = "\n".join(h for h in (source.history, str(meta["history"])) if h)
    meta |= {"made_by": source.made_by, "source_chart_file": f"{source.path.name} sha256:{source.sha256}",
             "grid_spacing_m": np.float64(grid.spacing), "grid_crs": grid.crs.to_string(),
             "comment": "flag_colors attributes are not CF: this project's chart colours (seaice_lib.schema.CLASSES)",
             **(attrs or {})}
    chunks = (min(grid.height, cf.CHUNK), min(grid.width, cf.CHUNK))
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.setncatts(meta)
        nc.createDimension("y", grid.height)
        nc.createDimension("x", grid.width)
        crs = nc.createVariable("crs", "i4", ())
        crs.setncatts({**_grid_mapping(grid.crs), "long_name": f"{grid.crs.name} (EPSG:{grid.crs.to_epsg()})"})
        for name, values, axis in (("x", x, "X"), ("y", y, "Y")):
            var = nc.createVariable(name, "f8", (name,))
            var.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m", "axis": axis,
                           "coverage_content_type": "coordinate",
                           "long_name": f"{name} of the pixel centre in {grid.crs.name}"})
            var[:] = values
        t = nc.createVariable("time", "f8", ())
        t.setncatts({"standard_name": "time", "long_name": "SAR acquisition start", "units": cf.TIME_UNITS,
                     "calendar": "standard", "units_metadata": "leap_seconds: none",
                     "coverage_content_type": "coordinate"})
        t.assignValue(source.time.timestamp())
        geo = {}
        for name, standard, units in (("lat", "latitude", "degrees_north"), ("lon", "longitude", "degrees_east")):
            geo[name] = nc.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=4, shuffle=True, chunksizes=chunks)
            geo[name].setncatts({"standard_name": standard, "units": units, "coverage_content_type": "coordinate",
                                 "long_name": f"{standard} of the pixel centre"})
        lat_range, lon_range = [np.inf, -np.inf], [np.inf, -np.inf]
        for start in range(0, grid.height, 256):
            rows = slice(start, min(start + 256, grid.height))
            lon, lat = _grid_lonlat(grid, rows)
            lat, lon = lat.astype(np.float32), ((lon + 180) % 360 - 180).astype(np.float32)
            geo["lat"][rows], geo["lon"][rows] = lat, lon
            for bounds, values in ((lat_range, lat), (lon_range, lon)):
                bounds[:] = min(bounds[0], float(values.min())), max(bounds[1], float(values.max()))
        nc.setncatts(cf.extents((lat_range[0], lat_range[1]), (lon_range[0], lon_range[1])))
        for chart in schema.CHARTS:
            n = schema.N_CLASSES[chart]
            var = nc.createVariable(chart, "u1", ("y", "x"), zlib=True, complevel=4, chunksizes=chunks,
                                    fill_value=np.uint8(schema.CHART_FILL))
            var.setncatts({"long_name": cf.LONG_NAMES[chart], "coordinates": "time lat lon", "grid_mapping": "crs",
                           "valid_range": np.array([0, n - 1], np.uint8), "flag_values": np.arange(n, dtype=np.uint8),
                           "flag_meanings": " ".join(cf.flag_meanings(chart)),
                           "flag_colors": " ".join(schema.CLASSES[chart].colours),
                           "coverage_content_type": "thematicClassification", **cf.STANDARD_NAMES.get(chart, {}),
                           "comment": f"{schema.CHART_FILL} (_FillValue): no label, outside the swath or no SAR data"})
            var.set_auto_mask(False)
            var[:] = charts[chart]
            if chart in probabilities:
                dim = f"{chart}_class"
                nc.createDimension(dim, n)
                classes = nc.createVariable(dim, "u1", (dim,))
                classes.setncatts({"long_name": f"{chart} class", "coverage_content_type": "coordinate",
                                   "flag_values": np.arange(n, dtype=np.uint8),
                                   "flag_meanings": " ".join(cf.flag_meanings(chart))})
                classes[:] = np.arange(n, dtype=np.uint8)
                var = nc.createVariable(f"{chart}_probability", "u1", (dim, "y", "x"), zlib=True, complevel=4,
                                        chunksizes=(1, *chunks), fill_value=np.uint8(255))
                var.setncatts({"long_name": f"probability of each {chart} class", "units": "percent",
                               "valid_range": np.array([0, 100], np.uint8), "grid_mapping": "crs",
                               "coverage_content_type": "modelResult",
                               "coordinates": "time lat lon",
                               "comment": "bilinear from the model grid, renormalised; the classes of a pixel sum to 100"})
                var.set_auto_mask(False)
                var[:] = probabilities[chart]
    return Path(path)


def land_mask(scene: str | Path) -> np.ndarray:
    """(H, W) bool: land in a scene file (its ``distance_map`` zone 0). A zone that is not finite or
    out of range leaves land unknown there, neither land nor water: :class:`SceneError` naming the
    variable and the count (no polygons rather than the model's ice drawn over land)."""
    with Scene(scene, validate=False) as s:
        if bad := s.masked_inputs(("distance_map",))[1]:
            lo, hi = schema.PHYSICAL_RANGE["distance_map"]
            raise SceneError(s.path, f"{bad['distance_map']} values are not finite or lie outside {lo:g}..{hi:g} (zone "
                                     "ids): land is unknown there, so no SIGRID-3 or GeoPackage polygons",
                             "distance_map")
        return s.read("distance_map", units="physical") == 0


def _regimes(charts: Mapping[str, np.ndarray], land: np.ndarray | None) -> tuple[np.ndarray, dict[int, tuple]]:
    """(H, W) int32 regime ids and id -> (SIC, SOD, FLOE) classes: pixels that SIGRID-3 writes
    alike share a regime (water and no data carry one class for all three charts)."""
    sic, sod, floe = (np.asarray(charts[c]).astype(np.int32) for c in schema.CHARTS)
    fill = schema.CHART_FILL
    alike = (sic == 0) | (sic == fill)
    sod, floe = np.where(alike, sic, sod), np.where(alike, sic, floe)
    ids = (sic << 16) | (sod << 8) | floe
    if land is not None:
        ids = np.where(land, _LAND, ids)
    return ids.astype(np.int32), {int(i): ((i >> 16) & 255, (i >> 8) & 255, i & 255) for i in np.unique(ids) if i != _LAND}


def sigrid_polygons(source: ChartSource, crs: CRS, tolerance_m: float = DEFAULT_TOLERANCE_M,
                    land: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(polygons in ``crs``, SIGRID-3 attribute columns) of the charts: one polygon per connected
    region of one regime (4-connected pixels, GDAL's polygoniser on the swath grid), its corners
    placed by the tie points, simplified together as a coverage with ``tolerance_m`` metres
    (shapely's coverage simplification: shared edges stay shared). Columns: AREA (km²) and
    PERIMETER (km), geodesic on WGS 84; CT..CF two-character codes ("-9" not filled); POLY_TYPE."""
    if not tolerance_m >= 0:
        raise ValueError(f"--tolerance {tolerance_m}: must be >= 0 metres")
    if land is not None and land.shape != source.shape:
        raise ValueError(f"{source.path}: the land mask is {land.shape}, the charts {source.shape}")
    ids, classes = _regimes(source.charts, land)
    shapes = list(rasterio.features.shapes(ids, connectivity=4, transform=Affine.identity()))
    polygons = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
    values = [int(v) for _, v in shapes]
    # long straight pixel edges get a vertex every 4 pixels (rounded to 1/1024 pixel, so that the
    # two polygons along an edge share their vertices exactly), then corners go to the map
    polygons = shapely.transform(shapely.segmentize(polygons, 4.0), lambda c: np.round(c * 1024) / 1024)
    polygons = shapely.transform(polygons, lambda c: np.column_stack(
        _swath_xy(source.tiepoints, c[:, 1] - 0.5, c[:, 0] - 0.5, crs)))
    if tolerance_m > 0:
        simplified = shapely.coverage_simplify(polygons, tolerance_m)
        gone = shapely.is_empty(simplified)  # a region smaller than the tolerance keeps its outline
        polygons = np.where(gone, polygons, simplified)
    invalid = ~shapely.is_valid(polygons)
    if invalid.any():
        polygons[invalid] = shapely.make_valid(polygons[invalid])
    geod = Geod(ellps="WGS84")
    to_lonlat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    area, perimeter = [], []
    for polygon in shapely.transform(polygons, lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1]))):
        a, p = geod.geometry_area_perimeter(polygon)
        area.append(abs(a) / 1e6)
        perimeter.append(p / 1e3)
    columns: dict[str, list] = {"AREA": area, "PERIMETER": perimeter, **{f: [] for f in SIGRID_FIELDS}, "POLY_TYPE": []}
    for value in values:
        if value == _LAND:
            codes, poly_type = dict.fromkeys(icechart.CODE_COLUMNS[1:], icechart.NOT_FILLED), icechart.POLY_LAND
        else:
            codes, poly_type = icechart.sigrid_codes(*classes[value])
        for name in SIGRID_FIELDS:
            columns[name].append(f"{codes.get(name, icechart.NOT_FILLED):02d}")
        columns["POLY_TYPE"].append(poly_type)
    return polygons, {k: np.asarray(v) for k, v in columns.items()}


def check_centre(centre: str) -> str:
    """The producer code that starts SIGRID-3 file names (``--centre``), lower case; ValueError
    unless letters and digits, at most :data:`MAX_CENTRE` of them."""
    if not centre or not (centre.isascii() and centre.isalnum()):
        raise ValueError(f"--centre {centre!r}: a producer code of letters and digits")
    if len(centre) > MAX_CENTRE:
        raise ValueError(f"--centre {centre[:MAX_CENTRE]}...: at most {MAX_CENTRE} letters and digits, not "
                         f"{len(centre)} (ice services' codes have 2 to 4)")
    return centre.lower()


def check_email(email: str) -> str:
    """``--creator-email``: ValueError naming it unless an address: one ``@``, a dot inside the
    domain, no blanks or control characters."""
    if not EMAIL.fullmatch(email):
        raise ValueError(f"--creator-email {email!r}: not an email address (name@domain.tld)")
    return email


def sigrid_name(region: str, time: dt.datetime, centre: str = DEFAULT_CENTRE) -> str:
    """The SIGRID-3 file name (no suffix) of a chart's polygons, after the ice services' pattern:
    producer code, the chart's area (the scene's ice-chart region), the acquisition time (UTC, to
    the minute), ``pl`` polygons, ``a`` analysis: ``sil_CentralEast_20190417T0758Z_pl_a``. A naive
    ``time`` is taken as UTC. ValueError for a region or producer code that is not letters and
    digits."""
    centre = check_centre(centre)
    if not region or not (region.isascii() and region.isalnum()):
        raise ValueError(f"region {region!r}: not letters and digits, so not a part of a SIGRID-3 file name")
    if time.tzinfo is None:
        time = time.replace(tzinfo=dt.timezone.utc)
    return f"{centre}_{region}_{time.astimezone(dt.timezone.utc):{SIGRID_TIME}}_pl_a"


def chart_region(path: str | Path, attrs: Mapping[str, object]) -> str:
    """The ice-chart region of a chart file: its ``region`` attribute (recorded from the scene when
    charted, :func:`seaice_lib.charts.cf.scene_region`). ValueError naming the file where it has
    none, one that is not text (a number is no region name, and is never made one), or one that is
    not letters and digits."""
    if "region" not in attrs:
        raise ValueError(f"{path}: no region attribute, which SIGRID-3 file names need: chart the scene again")
    region = attrs["region"]
    if not isinstance(region, str):
        raise ValueError(f"{path}: the region attribute is {region!r} ({type(region).__name__}), not text naming "
                         "an ice-chart region; SIGRID-3 file names need one: chart the scene again")
    if not region:
        raise ValueError(f"{path}: records no ice-chart region (its scene's original_id names none); "
                         "SIGRID-3 file names need one")
    if not (region.isascii() and region.isalnum()):
        raise ValueError(f"{path}: region {region!r} is not letters and digits, so not a part of a SIGRID-3 file name")
    return region


def sigrid_name_of(chart_file: str | Path, centre: str = DEFAULT_CENTRE) -> str:
    """:func:`sigrid_name` of a chart file (:func:`chart_region`, its ``time``), its charts unread."""
    with netCDF4.Dataset(chart_file) as nc:
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        acquired = _acquired(nc)
    if acquired is None:
        raise ValueError(f"{chart_file}: no time variable: not a whole chart file")
    return sigrid_name(chart_region(chart_file, attrs), acquired, centre)


def _check_distinct(names: Sequence[tuple[Path, str]]) -> None:
    """ValueError naming both when two (file, SIGRID-3 name) share a name."""
    seen: dict[str, Path] = {}
    for path, name in names:
        if name in seen:
            raise ValueError(f"{seen[name]} and {path}: both scenes would be written as the SIGRID-3 polygons {name} "
                             "(one region, acquired within one minute); write them into different --out folders")
        seen[name] = path


def check_sigrid_names(chart_files: Sequence[Path], centre: str = DEFAULT_CENTRE) -> None:
    """ValueError naming both when two chart files would get one SIGRID-3 file name (two scenes of
    one region acquired within the same minute): one would replace the other's polygons. Files
    whose name cannot be made are left to fail on their own, by name."""
    names = []
    for path in chart_files:
        try:
            names.append((path, sigrid_name_of(path, centre)))
        except (ValueError, OSError):
            continue
    _check_distinct(names)


def check_scenes_maps(args: argparse.Namespace, scenes: Sequence[Path]) -> None:
    """Before any of ``scenes`` is charted into ``args.out`` (``predict``/``edge-predict``, named or
    followed): with a map format, ``--crs`` fits each scene (:func:`check_scale`; UsageError); with a
    polygon format, no two get one SIGRID-3 name (:func:`check_sigrid_names`) and none would replace
    polygons there of another or an unknown scene (:func:`check_sigrid_outputs`; ValueError naming
    them). Scenes that cannot be read fail later on their own, by name."""
    polygons = bool({"sigrid3", "gpkg"} & set(args.formats))
    if not polygons and not {"geotiff", "netcdf-grid"} & set(args.formats):
        return
    crs = map_crs(args.crs)
    named = []
    for scene in scenes:
        try:
            with Scene(scene, validate=False) as s:
                tiepoints, scene_id = s.tiepoints, s.scene_id
                name = sigrid_name(s.region, s.time, args.centre) if polygons else ""
        except (ValueError, OSError):
            continue
        check_scale(tiepoints, scene_id, crs)
        named.append((scene, scene_id, name))
    if not polygons:
        return
    _check_distinct([(scene, name) for scene, _, name in named])
    for scene, scene_id, name in named:
        check_sigrid_outputs(args.out, name, scene_id, scene, args.overwrite)


def _fgdc_scene(folder: Path, name: str) -> str | None:
    """The scene a SIGRID-3 set's FGDC record names (:func:`seaice_lib.charts.fgdc.scene_of`), None if unreadable."""
    try:
        return fgdc.scene_of(folder / f"{name}.shp.xml")
    except (ValueError, OSError):
        return None


def _recorded_scenes(out_dir: Path, name: str) -> list[tuple[Path, str | None]]:
    """(output, scene id) of each SIGRID-3 output called ``name`` already in ``out_dir``: the scene
    its sidecar JSON (else its FGDC record's title) or GeoPackage layer metadata records; None for
    an output that records none readably (of an unknown scene)."""
    found: list[tuple[Path, str | None]] = []
    sidecar, package = out_dir / name / f"{name}.json", out_dir / f"{name}.gpkg"
    for output, read in ((sidecar.parent, lambda: json.loads(sidecar.read_text())),
                         (package, lambda: pyogrio.read_info(package, layer=name)["layer_metadata"])):
        if not output.exists():
            continue
        try:
            meta = read()
            scene = str(meta["scene_id"]) if isinstance(meta, dict) and "scene_id" in meta else None
        except (ValueError, OSError, KeyError, TypeError, pyogrio.errors.DataSourceError,
                pyogrio.errors.DataLayerError):
            scene = None
        if scene is None and output == sidecar.parent:
            scene = _fgdc_scene(output, name)
        found.append((output, scene))
    return found


def check_sigrid_outputs(out_dir: str | Path, name: str, scene_id: str, source: str | Path,
                         overwrite: bool = False) -> None:
    """ValueError unless the SIGRID-3 outputs ``name`` in ``out_dir`` may take the polygons of scene
    ``scene_id`` (from ``source``): those there are of that scene (:func:`_recorded_scenes`), or of
    an unknown scene (their records missing or unreadable) and ``overwrite`` is given. Another
    scene's (a twin: one region, one minute) are never replaced."""
    for output, recorded in _recorded_scenes(Path(out_dir), name):
        if recorded is None and not overwrite:
            raise ValueError(f"{output}: SIGRID-3 polygons that record no scene readably (their .json, FGDC record "
                             f"or layer metadata missing or damaged); those of scene {scene_id} ({source}) would "
                             "replace them: --overwrite replaces them, or write to another --out")
        if recorded is not None and recorded != scene_id:
            raise ValueError(f"{output}: holds the SIGRID-3 polygons of scene {recorded}; those of scene "
                             f"{scene_id} ({source}), of the same region and minute, would replace them: "
                             "write them to another --out")


def write_sigrid3(out_dir: str | Path, source: ChartSource, polygons: np.ndarray, columns: Mapping[str, np.ndarray],
                  crs: CRS, formats: Sequence[str], centre: str = DEFAULT_CENTRE,
                  tolerance_m: float = DEFAULT_TOLERANCE_M, region: str | None = None,
                  overwrite: bool = False, written: list[Path] | None = None) -> list[Path]:
    """The SIGRID-3 shapefile set with its FGDC metadata ``{name}.shp.xml`` (:mod:`.fgdc`) in a
    folder ``{name}/`` (``sigrid3``) and ``{name}.gpkg`` (``gpkg``) in ``out_dir``, ``name`` from
    the chart's ``region`` (default: :func:`chart_region` of the source) and acquisition time
    (:func:`sigrid_name`). Outputs of that name that record another scene (two scenes of one region
    within one minute), or no scene readably unless ``overwrite``, are not replaced: ValueError
    naming them (:func:`check_sigrid_outputs`). Each output is appended to ``written`` as it is
    made (returned)."""
    out_dir = Path(out_dir)
    region = region if region is not None else chart_region(source.path, source.attrs)
    name = sigrid_name(region, source.time, centre)
    check_sigrid_outputs(out_dir, name, source.scene_id, source.path, overwrite)
    fields = list(columns)
    data = [columns[f] for f in fields]
    meta = {**_provenance_tags(source, f"SIGRID-3 polygons, simplified with a tolerance of {tolerance_m:g} m"),
            "region": region, "simplification_tolerance_m": f"{tolerance_m:g}",
            "format": "SIGRID-3 (JCOMM Technical Report No. 23)"}
    wkb = shapely.to_wkb(polygons)
    out = [] if written is None else written
    if "sigrid3" in formats:
        folder = out_dir / name
        record = fgdc.metadata(name, polygons, columns, crs, centre=check_centre(centre), region=region,
                               time=source.time, attrs=source.attrs, scene_id=source.scene_id,
                               history=meta["history"], tolerance_m=tolerance_m)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            pyogrio.raw.write(tmp / f"{name}.shp", wkb, data, fields, driver="ESRI Shapefile", geometry_type="Polygon",
                              crs=crs.to_wkt("WKT1_ESRI"), encoding="UTF-8", promote_to_multi=False)
            fgdc.write(tmp / f"{name}.shp.xml", record)
            (tmp / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")  # what made it (a sidecar)
        out.append(folder)
    if "gpkg" in formats:
        path = out_dir / f"{name}.gpkg"
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The filename extension should be", RuntimeWarning)  # the temporary name
            pyogrio.raw.write(tmp, wkb, data, fields, layer=name, driver="GPKG", geometry_type="Polygon",
                              crs=crs.to_wkt(), layer_metadata=meta, promote_to_multi=False,
                              dataset_options={"VERSION": "1.2"})  # GeoPackage 1.2: what GDAL >= 2.2 reads
        out.append(path)
    return out


def _made_from(output: Path) -> tuple[str, str] | None:
    """(scene id, ``source_chart_file``) an output of :func:`convert` records, None where it records
    none readably (then it is never taken for a scene's)."""
    try:
        if output.suffix == ".tif":
            with rasterio.open(output) as ds:
                meta: Mapping[str, object] = ds.tags()
        elif output.suffix == ".nc":
            with netCDF4.Dataset(output) as nc:
                meta = {k: nc.getncattr(k) for k in ("scene_id", "source_chart_file") if k in nc.ncattrs()}
        elif output.suffix == ".gpkg":
            meta = pyogrio.read_info(output, layer=output.stem)["layer_metadata"] or {}
        else:  # a SIGRID-3 folder: its sidecar
            meta = json.loads((output / f"{output.name}.json").read_text())
        return str(meta["scene_id"]), str(meta["source_chart_file"])
    except (ValueError, OSError, KeyError, TypeError, rasterio.errors.RasterioError, pyogrio.errors.DataSourceError,
            pyogrio.errors.DataLayerError):
        return None


def remove_earlier_outputs(out_dir: str | Path, scene_id: str, time: dt.datetime, chart_file: str | Path,
                           sha256: str | None) -> list[Path]:
    """Remove the outputs of :func:`convert` of scene ``scene_id`` in ``out_dir`` made from another
    chart file than ``chart_file`` (SHA-256 ``sha256``: a chart charted again with another model or
    options, or another chart file of the scene converted into the folder), so that none of them is
    taken for this chart's: GeoTIFFs, gridded netCDFs of any CRS, SIGRID-3 sets and GeoPackages of
    any centre; with ``sha256`` None, those made from any chart file (``chart_file`` is withdrawn). Only
    outputs that record that scene and their source chart file are touched; each removal is logged.
    Returns the outputs removed."""
    out_dir = Path(out_dir)
    candidates = [p for paths in _scene_outputs(out_dir, scene_id, time).values() for p in paths]
    current = f"{Path(chart_file).name} sha256:{sha256}" if sha256 else "no chart file (withdrawn)"
    removed = []
    for output in sorted(candidates):
        made = _made_from(output)
        if made is None or made[0] != scene_id or made[1] == current:
            continue
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
        log.warning("%s: removed: made from the chart file %s of scene %s, not from %s (%s)", output, made[1],
                    scene_id, current, chart_file)
        removed.append(output)
    return removed


def _scene_outputs(out_dir: Path, scene_id: str, time: dt.datetime) -> dict[str, list[Path]]:
    """Format -> the outputs of :func:`convert` in ``out_dir`` that may be of scene ``scene_id``
    (acquired at ``time``) by their names, of any CRS and centre: each records whose it is."""
    stamp = f"{time.astimezone(dt.timezone.utc) if time.tzinfo else time:{SIGRID_TIME}}_pl_a"  # sigrid_name's end
    return {"geotiff": list(out_dir.glob(f"{scene_id}_*.tif")),
            "netcdf-grid": list(out_dir.glob(f"{scene_id}_charts_epsg*.nc")),
            "sigrid3": [p for p in out_dir.glob(f"*_{stamp}") if p.is_dir()],
            "gpkg": list(out_dir.glob(f"*_{stamp}.gpkg"))}


def remove_replaced_maps(out_dir: Path, source: ChartSource, formats: Sequence[str], written: Sequence[Path]) -> list[Path]:
    """Remove the outputs of scene ``source`` in ``out_dir`` of the ``formats`` just ``written``
    that this call did not write: SIGRID-3 sets and GeoPackages under another ``--centre``, gridded
    netCDFs of another ``--crs``. A folder holds one set of maps per scene, so a delivery of its
    ``*_pl_a`` files never sends a scene twice. Only outputs that record that scene are touched;
    each removal is logged. Returns those removed."""
    candidates = [p for fmt, paths in _scene_outputs(out_dir, source.scene_id, source.time).items()
                  if fmt in formats and fmt != "geotiff" for p in paths]  # GeoTIFFs: one name per chart
    removed = []
    for output in sorted(set(candidates) - set(written)):
        if (made := _made_from(output)) is None or made[0] != source.scene_id:
            continue
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
        log.warning("%s: removed: an earlier output of scene %s in a format this call wrote again (under another "
                    "--centre or --crs)", output, source.scene_id)
        removed.append(output)
    return removed


def withdraw_outdated(chart_file: str | Path, made: str) -> list[Path]:
    """After charting a scene again failed: its chart file ``chart_file`` is removed when it was
    made from other input files than ``made`` (:func:`seaice_lib.charts.made_by`) records, or is no
    longer whole (:func:`seaice_lib.charts.cf.outdated`), with the outputs converted from it, each
    named: nothing in the folder passes for the chart of the scene as it is now. Returns them."""
    chart_file = Path(chart_file)
    if not chart_file.is_file() or not cf.outdated(chart_file, made):
        return []
    scene_id = chart_file.name.removesuffix("_charts.nc")
    acquired = dt.datetime.strptime(scene_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    removed = remove_earlier_outputs(chart_file.parent, scene_id, acquired, chart_file, None)
    chart_file.unlink()
    log.warning("%s: removed: made from the scene's input files as they were, and the scene as it is now could "
                "not be charted (named above)", chart_file)
    return [*removed, chart_file]


def convert(chart_file: str | Path, out_dir: str | Path, formats: Sequence[str], epsg: int = DEFAULT_EPSG,
            spacing_m: float = DEFAULT_SPACING_M, tolerance_m: float = DEFAULT_TOLERANCE_M,
            centre: str = DEFAULT_CENTRE, scene: str | Path | None = None, overwrite: bool = False,
            written: list[Path] | None = None) -> list[Path]:
    """Write ``formats`` of the chart file into ``out_dir`` (no model needed): ``netcdf`` (the
    chart file itself, copied when ``out_dir`` is elsewhere), ``geotiff`` and ``netcdf-grid`` on the
    grid of ``epsg`` at ``spacing_m``, ``sigrid3`` and ``gpkg`` simplified with ``tolerance_m``
    (land from ``scene``'s distance map when given). ``overwrite``: SIGRID-3 outputs there that
    record no scene (:func:`check_sigrid_outputs`) and another chart file of the scene there are
    replaced (else ValueError naming them; an upload package holding the replaced chart is removed).
    The scene's earlier outputs made from another chart file are removed
    (:func:`remove_earlier_outputs`). Returns the outputs; each is also appended to ``written`` as
    it is made, so a caller counts those written before a later one fails."""
    formats = tuple(formats)
    chart_file, out_dir = Path(chart_file), Path(out_dir)
    crs = map_crs(epsg)
    source = read_source(chart_file)
    if chart_file.name.endswith("_charts.nc") and schema.scene_key(chart_file) != source.scene_id:
        raise ValueError(f"{chart_file}: holds the chart of scene {source.scene_id!r}, not of the scene its name "
                         "says (copied or renamed?); its outputs would be named for the scene it holds")
    polygon_formats = {"sigrid3", "gpkg"} & set(formats)
    if polygon_formats or {"geotiff", "netcdf-grid"} & set(formats):
        check_scale(source.tiepoints, source.scene_id, crs)
    if scene is not None and polygon_formats:
        check_scene_of(source, scene)
    region = chart_region(chart_file, source.attrs) if polygon_formats else None  # refused before any work
    land = land_mask(scene) if scene is not None and polygon_formats else None  # so is unknown land
    target = cf.charts_path(out_dir, source.scene_id)
    copy = "netcdf" in formats and target.resolve() != chart_file.resolve()
    replaced = copy and _replaces_chart_file(chart_file, source.sha256, target, overwrite)
    if "netcdf" not in formats and target.is_file() and target.resolve() != chart_file.resolve() and \
            file_sha256(target) != source.sha256:  # maps of one chart beside another chart file of the scene
        raise ValueError(f"{target}: another chart file of this scene is there than {chart_file}, whose maps would "
                         "lie beside it: add the netcdf format (with --overwrite) to replace it, or give another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [] if written is None else written
    start = len(written)
    if "netcdf" in formats:
        if copy:
            with atomic_path(target) as tmp:
                shutil.copyfile(chart_file, tmp)
        if replaced:
            cf.remove_package_of(out_dir, source.scene_id, f"which {chart_file} replaced")
        written.append(target)
    if {"geotiff", "netcdf-grid"} & set(formats):
        grid = grid_for(source, crs, spacing_m)
        charts, probabilities = gridded_charts(source, grid), gridded_probabilities(source, grid)
        if all((source.charts[c] != schema.CHART_FILL).any() and (charts[c] == schema.CHART_FILL).all() for c in charts):
            raise ValueError(f"--spacing {spacing_m:g}: the {grid.width} x {grid.height} map of scene {source.scene_id} "
                             "holds no charted pixel (its cells fall outside the swath or on unlabelled pixels): give "
                             "a finer spacing")
        if "geotiff" in formats:
            write_geotiffs(out_dir, source, grid, charts, probabilities, written)
        if "netcdf-grid" in formats:
            written.append(write_grid_netcdf(out_dir / f"{source.scene_id}_charts_epsg{crs.to_epsg()}.nc", source, grid,
                                             charts, probabilities))
    if polygon_formats:
        polygons, columns = sigrid_polygons(source, crs, tolerance_m, land)
        write_sigrid3(out_dir, source, polygons, columns, crs, formats, centre, tolerance_m, region, overwrite,
                      written)
    remove_earlier_outputs(out_dir, source.scene_id, source.time, chart_file, source.sha256)
    remove_replaced_maps(out_dir, source, formats, written[start:])
    return written[start:]


def _replaces_chart_file(chart_file: Path, sha256: str, target: Path, overwrite: bool) -> bool:
    """Whether copying ``chart_file`` (SHA-256 ``sha256``) to ``target`` replaces another chart file of its scene there;
    ValueError naming both unless ``overwrite`` (a chart of another model or options, or charted
    again since, is never replaced without a word)."""
    if not (target.exists() or target.is_symlink()):
        return False
    if target.is_file() and file_sha256(target) == sha256:
        return False
    if not overwrite:
        raise ValueError(f"{target}: another chart file of this scene is there (of another model, other options "
                         f"or charted again since) than {chart_file}: --overwrite replaces it")
    return True


def check_scene_of(source: ChartSource, scene: str | Path) -> None:
    """ValueError naming both files unless ``scene`` is the scene file the chart was made from: its
    attributes say its name's scene (the check of every charting command:
    :class:`~seaice_lib.data.scene.Scene`), that scene is the chart file's ``scene_id``, and its
    SHA-256 is the one the chart's ``made_by`` records for it (a scene re-prepared or replaced since
    may have other land)."""
    scene = Path(scene)
    with Scene(scene) as charted:
        if charted.scene_id != source.scene_id:
            raise ValueError(f"{source.path}: holds the chart of scene {source.scene_id!r}, but the scene file "
                             f"{scene} is of scene {charted.scene_id!r}: its land is not this chart's")
    try:
        recorded = json.loads(str(source.attrs.get("made_by", ""))).get("inputs", {}).get(scene.name)
    except (ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):
        raise ValueError(f"{source.path}: its made_by records no SHA-256 of {scene.name}, so the land of {scene} "
                         "cannot be told to be that of the scene it was charted from")
    if recorded != (found := file_sha256(scene)):
        raise ValueError(f"{source.path}: charted from a {scene.name} of SHA-256 {recorded[:12]}, but {scene} has "
                         f"{found[:12]} (prepared again or replaced since): its land may not be this chart's")


def add_options(parser: argparse.ArgumentParser, default_formats: str = "netcdf", producer: bool = True) -> None:
    """``--format`` and the map options (``--crs``, ``--spacing``, ``--tolerance``, ``--centre``) of
    ``seaice predict``, ``edge-predict`` and ``charts convert``; with ``producer``, the producer's
    metadata (``--institution``, ``--creator``, ``--creator-email``, ``--creator-url``,
    ``--license``) the charting commands write into each chart file."""
    group = parser.add_argument_group("chart formats (docs/charts.md, \"Maps and SIGRID-3\")")
    group.add_argument("--format", default=default_formats, metavar="LIST",
                       help=f"comma-separated, of {', '.join(FORMATS)} (default: {default_formats}); the swath "
                            "chart file is always written: the others are made from it")
    group.add_argument("--crs", type=int, default=DEFAULT_EPSG, metavar="EPSG",
                       help=f"EPSG code of the map grid and the polygons, a projected CRS in metres (default {DEFAULT_EPSG})")
    group.add_argument("--spacing", type=float, default=DEFAULT_SPACING_M, metavar="METRES",
                       help=f"pixel spacing of the map grid (default {DEFAULT_SPACING_M:g})")
    group.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_M, metavar="METRES",
                       help=f"simplification tolerance of the SIGRID-3 polygons (default {DEFAULT_TOLERANCE_M:g}; 0: none)")
    group.add_argument("--centre", default=DEFAULT_CENTRE, metavar="CODE",
                       help=f"producer code that starts SIGRID-3 file names (default {DEFAULT_CENTRE})")
    if not producer:
        return
    meta = parser.add_argument_group("producer metadata (ACDD attributes of every chart file)")
    meta.add_argument("--institution", default=None)
    meta.add_argument("--creator", default=None, help="creator_name")
    meta.add_argument("--creator-email", default=None)
    meta.add_argument("--creator-url", default=None)
    meta.add_argument("--license", default=None)


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors of :func:`add_options`'s options (one line, status 2); sets ``args.formats``
    and, where the parser has the producer's options, ``args.producer`` (:func:`seaice_lib.charts.cf.producer`)."""
    try:
        args.formats = parse_formats(args.format)
        map_crs(args.crs)
        check_centre(args.centre)
    except ValueError as err:
        parser.error(str(err))
    if not 0 < args.spacing <= MAX_SPACING_M:
        parser.error(f"--spacing {args.spacing}: must be a number of metres in (0, {MAX_SPACING_M:g}]")
    if not 0 <= args.tolerance < float("inf"):
        parser.error(f"--tolerance {args.tolerance}: must be a finite number of metres >= 0")
    if not hasattr(args, "creator"):  # charts convert: the chart file's producer stays
        return
    if args.creator_email:
        try:
            check_email(args.creator_email)
        except ValueError as err:
            parser.error(str(err))
    for option in ("institution", "creator", "creator_email", "creator_url", "license"):
        if (value := getattr(args, option)) and (bad := fgdc.NOT_XML.search(value)):
            parser.error(f"--{option.replace('_', '-')} {value!r}: the character {bad.group()!r} cannot go into "
                         "the metadata files (XML)")
    args.producer = cf.producer(args.institution, args.creator, args.creator_email, args.creator_url, args.license)


def convert_for(args: argparse.Namespace, chart_file: str | Path, scene: str | Path | None = None) -> list[Path]:
    """:func:`convert` a chart file into ``args.out`` with the options of :func:`add_options`
    (the swath chart file is already there); with no other format, the scene's outputs made from
    an earlier chart file are removed all the same (:func:`remove_earlier_outputs`)."""
    formats = [f for f in args.formats if f != "netcdf"]
    if not formats:
        with netCDF4.Dataset(chart_file) as nc:
            scene_id, acquired = str(nc.getncattr("scene_id")), _acquired(nc)
        if acquired is not None:
            remove_earlier_outputs(args.out, scene_id, acquired, chart_file, file_sha256(chart_file))
        return []
    return convert(chart_file, args.out, formats, args.crs, args.spacing, args.tolerance, args.centre, scene,
                   args.overwrite)


def convert_all(args: argparse.Namespace, walk: Walk, scenes: Mapping[str, Path]) -> None:
    """:func:`convert_for` each chart file of ``walk.done`` (its scene from ``scenes`` by scene id),
    after checking that no two get one SIGRID-3 file name (:func:`check_sigrid_names`): ``predict``
    and ``edge-predict`` on named scenes. A scene whose outputs fail is named as a failure of
    ``walk`` (its chart file stays; the command makes no upload package) and the others go on."""
    chart_files = [Path(p) for p in walk.done]
    if {"sigrid3", "gpkg"} & set(args.formats):
        check_sigrid_names(chart_files, args.centre)
    for path in chart_files:
        scene = scenes.get(schema.scene_key(path))
        try:
            convert_for(args, path, scene)
        except ITEM_ERRORS as err:
            walk.fail(str(scene or path), f"its maps: {one_line(err)}")


def _check_crs_fits(parser: argparse.ArgumentParser, chart_files: Sequence[Path], crs: CRS) -> None:
    """A usage error, before anything is written, where ``crs`` does not fit one of the chart files
    (:func:`check_scale`: a CRS of another region); a file that cannot be read fails later, by name."""
    for path in chart_files:
        try:
            with netCDF4.Dataset(path) as nc:
                tiepoints = _tiepoints(nc, nc["lat"].shape)
        except (OSError, ValueError, KeyError, IndexError):
            continue
        try:
            check_scale(tiepoints, _held_scene(path), crs)
        except UsageError as err:
            parser.error(str(err))


def _held_scene(path: Path) -> str:
    """The scene a chart file holds (its ``scene_id``); the one its name says where it has none or
    cannot be read (its conversion then fails, naming it)."""
    try:
        with netCDF4.Dataset(path) as nc:
            if "scene_id" in nc.ncattrs():
                return str(nc.getncattr("scene_id"))
    except OSError:
        pass
    return schema.scene_key(path)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``seaice charts convert CHART_FILE... --out DIR --format ...``: maps and SIGRID-3 polygons of
    chart files, without the model."""
    parser = Parser(prog=prog, description="Work on chart files without the model.", epilog=logs.EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = commands.add_parser("convert", help="chart files -> maps (GeoTIFF, gridded netCDF) and SIGRID-3 polygons",
                              description="Convert CF chart files of `seaice predict` / `edge-predict` into other "
                                          "formats (docs/charts.md).")
    sub.add_argument("charts", type=Path, nargs="+", metavar="CHART_FILE", help="*_charts.nc files")
    sub.add_argument("--out", type=out_folder, required=True, help="output folder")
    sub.add_argument("--scenes", type=Path, default=None, metavar="DIR",
                     help="folder of the charted *_prep.nc scenes: their land becomes SIGRID-3 land polygons")
    add_options(sub, default_formats="sigrid3,gpkg,geotiff,netcdf-grid", producer=False)  # the chart file's stays
    sub.add_argument("--overwrite", action="store_true",
                     help="replace another chart file of a scene in --out, and SIGRID-3 outputs there that record "
                          "no scene readably (default: refused)")
    args = parser.parse_args(argv)
    check_options(sub, args)
    if other := other_stage(args.out, own=(CHARTS,)):  # maps may lie beside their chart files
        sub.error(f"--out {args.out}: {other}, not a folder of maps: give another folder")
    seen: dict[str, Path] = {}
    for path in args.charts:
        if not path.is_file():
            sub.error(f"{path}: no such chart file")
        key = _held_scene(path)
        if key in seen:  # both would write the same outputs
            sub.error(f"two chart files of scene {key}: {seen[key]} and {path}; name one of them")
        seen[key] = path
    if args.scenes is not None and not args.scenes.is_dir():
        sub.error(f"--scenes {args.scenes}: {not_there(args.scenes, folder=True)}")

    def scene_of(path: Path) -> Path | None:
        return None if args.scenes is None else args.scenes / path.name.replace("_charts.nc", "_prep.nc")

    if {"sigrid3", "gpkg"} & set(args.formats):
        try:
            check_sigrid_names(args.charts, args.centre)
        except ValueError as err:
            sub.error(str(err))
    if {"sigrid3", "gpkg", "geotiff", "netcdf-grid"} & set(args.formats):
        _check_crs_fits(sub, args.charts, map_crs(args.crs))
    written: list[Path] = []
    walk = Walk("chart files")

    def one(path: Path) -> Path:
        scene = scene_of(path)
        if scene is not None and not scene.is_file():
            raise ValueError(f"--scenes {args.scenes}: no {scene.name} for the chart file {path}")
        convert(path, args.out, args.formats, args.crs, args.spacing, args.tolerance, args.centre, scene,
                args.overwrite, written)  # counted as each is written, those of a file that then fails too
        if problems := cf.recorded_problems(path):  # as predict said when it charted them; the maps record it too
            log.warning("%s: %s; its maps have no class there either, and record it", path, "; ".join(problems))
        return path

    with folder_lock(args.out, "converting charts"):  # one writer per output folder
        walk.each(args.charts, one)
    print(f"converted {len(walk.done)} of {len(args.charts)} chart files into {args.out}: {len(written)} outputs "
          f"written, {len(walk.failed)} failed")
    if walk.failed:
        print(walk.summary("converted"), file=sys.stderr)
    return walk.exit_code
