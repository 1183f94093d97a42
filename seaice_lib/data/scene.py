"""Reading AI4Arctic scene files: lazy, validated views of ready-to-train (RTT) and raw netCDF scenes.

A :class:`Scene` opens a file lazily with xarray (nothing is read until asked), checks it against the
schema, and reads windows of the SAR grid and of the 2 km AMSR2/ERA5 grid with their exact alignment:
2 km cell ``(a, b)`` covers SAR pixels ``[a*c, (a+1)*c) x [b*c, (b+1)*c)`` with ``c = 2000 m / pixel
spacing`` (25 at 80 m, 50 at 40 m); the 2 km grid starts at pixel 0 and may end one cell short.

Units: RTT files store standard-scaled values (z = (x - mean) / std, 0 = no data for SAR-grid inputs);
raw files store physical units (dB, degrees, K, ...) with NaN for no data. ``read(..., units=...)``
returns either, whatever the file holds.

Values are checked where they are read: data the file cannot give back (damaged chunks), chart
classes out of range, tie points that are NaN or do not form an even grid, a scene without one
pixel of SAR data (:meth:`Scene.checked_sar_valid`) and a file name without a real date all raise
:class:`SceneError` naming the file, the variable and the problem. NaN counts as no data in either
kind of file.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema
from ..grid import cell_index
from . import icechart
from .geo import TiePointGrid, footprint_problem, tiepoint_problems, tiepoints_are_line_major

log = logging.getLogger(__name__)

Units = str  # "standard" | "physical"
_NAME_EXAMPLE = {"rtt": "20180124T194759_dmi_prep.nc",
                 "raw": "S1A_EW_GRDM_1SDH_20180124T194759_20180124T194859_..._icechart_dmi_....nc"}


class SceneError(ValueError):
    """A scene file that cannot be used, naming the file, the variable and the problem."""

    def __init__(self, path: str | Path, problem: str, variable: str | None = None):
        self.path, self.problem, self.variable = str(path), problem, variable
        where = f"{self.path}: {variable}: " if variable else f"{self.path}: "
        super().__init__(where + problem)


def name_time(path: str | Path) -> dt.datetime | None:
    """Acquisition time from a ``YYYYMMDDTHHMMSS_...`` file name (or scene id), None for other names."""
    try:
        return dt.datetime.strptime(Path(path).name[:16], "%Y%m%dT%H%M%S_")
    except ValueError:
        return None


def scene_id_from_name(path: str | Path, kind: str = "rtt") -> str:
    """``YYYYMMDDTHHMMSS_{dmi|cis}`` of a scene file: the first 19 characters of an RTT name, the
    dataset's rule (:func:`schema.rtt_name_from_raw`) for a raw one. A name that does not follow
    the pattern, or whose date does not exist, raises :class:`SceneError` naming the file."""
    name = Path(path).name
    scene_id = schema.scene_key(schema.rtt_name_from_raw(name) if kind == "raw" else name)
    if not schema.SCENE_ID.fullmatch(scene_id):
        raise SceneError(path, f"the file name does not follow the AI4Arctic {kind} pattern "
                               f"{_NAME_EXAMPLE[kind]!r}: it names no acquisition time and ice service")
    try:
        dt.datetime.strptime(scene_id[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        raise SceneError(path, f"the file name holds an impossible date {scene_id[:15]!r}") from None
    return scene_id


def check_chart_classes(path: str | Path, chart: str, labels: np.ndarray) -> None:
    """Raise :class:`SceneError` naming the file and the chart if ``labels`` hold a class outside
    ``0..n-1`` and 255 (no label)."""
    labels = np.asarray(labels)
    bad = (labels != schema.CHART_FILL) & ((labels < 0) | (labels >= schema.N_CLASSES[chart]))
    if bad.any():
        raise SceneError(path, f"classes {sorted(np.unique(labels[bad]).tolist())[:5]} outside "
                               f"0..{schema.N_CLASSES[chart] - 1} and {schema.CHART_FILL} (no label)",
                         chart)


def spacing_problem(spacing) -> str | None:
    """What is wrong with a ``pixel_spacing`` attribute (metres), or None: it must be a positive
    number that divides a 2 km cell into whole pixels."""
    try:
        metres = float(spacing)
    except (TypeError, ValueError):
        return f"global attribute pixel_spacing = {spacing!r} is not a number of metres"
    if not math.isfinite(metres) or metres <= 0:
        return f"global attribute pixel_spacing = {spacing!r}: must be a positive number of metres"
    cell = schema.GRID2KM_SPACING_M / metres
    if abs(cell - round(cell)) > 1e-6:
        return (f"global attribute pixel_spacing = {spacing!r} m does not divide a 2 km cell into "
                f"whole pixels")
    return None


def to_standard(name: str, values: np.ndarray) -> np.ndarray:
    """Physical units to the toolbox's standard scaling, z = (x - mean) / std."""
    mean, std = schema.NORM_STATS[name]
    return ((np.asarray(values, np.float32) - mean) / std).astype(np.float32)


def to_physical(name: str, values: np.ndarray) -> np.ndarray:
    """Standard-scaled values back to physical units, x = z * std + mean."""
    mean, std = schema.NORM_STATS[name]
    return (np.asarray(values, np.float32) * std + mean).astype(np.float32)


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a netCDF file lazily with on-disk dtypes (no masking or scaling by xarray)."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(path, "no such file")
    try:
        return xr.open_dataset(path, engine="netcdf4", mask_and_scale=False, decode_times=False)
    except Exception as err:  # netCDF4/HDF5 raise OSError, RuntimeError, ValueError, KeyError
        raise SceneError(path, f"not a readable netCDF file ({type(err).__name__}: {err})") from err


def detect_kind(ds: xr.Dataset) -> str:
    """``"rtt"`` or ``"raw"`` from the variables a dataset holds."""
    if "sar_grid_latitude" in ds or "polygon_icechart" in ds:
        return "raw"
    return "rtt"


def _dtype_matches(actual: np.dtype, expected: str) -> bool:
    if expected == "str":
        return actual.kind in "OUS"
    return actual == np.dtype(expected)


def fill_problem(chart: xr.DataArray) -> str | None:
    """Why a chart variable's declared ``chart_fill_value`` is not the dataset's no-label value 255
    (:data:`schema.CHART_FILL`), or None (also without one)."""
    fill = chart.attrs.get("chart_fill_value")
    if fill is not None and str(fill) != str(schema.CHART_FILL):
        return f"chart_fill_value {fill}: the dataset's no-label value is {schema.CHART_FILL}"
    return None


def validation_problems(ds: xr.Dataset, kind: str) -> list[tuple[str | None, str]]:
    """Every way ``ds`` departs from the ``kind`` schema, as (variable, problem) pairs."""
    spec = schema.RTT_SCHEMA if kind == "rtt" else schema.RAW_SCHEMA
    problems: list[tuple[str | None, str]] = []
    for name, var in spec.variables.items():
        if name not in ds.variables:
            if var.required:
                problems.append((name, "missing variable"))
            continue
        got = ds[name]
        if got.dims != var.dims:
            problems.append((name, f"dims {got.dims}, expected {var.dims}"))
        if not _dtype_matches(got.dtype, var.dtype):
            problems.append((name, f"dtype {got.dtype}, expected {var.dtype}"))
    for attr in spec.global_attrs:
        if attr not in ds.attrs:
            problems.append((None, f"missing global attribute {attr!r}"))
    charts = [c for c in schema.CHARTS if c in ds.variables]
    if kind == "rtt" and 0 < len(charts) < len(schema.CHARTS):
        problems.append((None, f"has charts {charts} but not all of {list(schema.CHARTS)}"))
    if kind == "raw" and ("polygon_icechart" in ds) != ("polygon_codes" in ds):
        problems.append((None, "polygon_icechart and polygon_codes must come together"))
    spacing = ds.attrs.get("pixel_spacing", _default_spacing(kind))
    if problem := spacing_problem(spacing):
        problems.append((None, problem))
    if "flip" in ds.attrs and str(ds.attrs["flip"]) not in ("0", "1"):  # the dataset's 0 or 1
        problems.append((None, f"global attribute flip = {ds.attrs['flip']}: must be 0 or 1"))
    for chart in charts:
        if problem := fill_problem(ds[chart]):
            problems.append((chart, problem))
    if not problems and all(d in ds.sizes for d in schema.SAR_DIMS + schema.GRID2KM_DIMS):
        cell = schema.GRID2KM_SPACING_M / float(spacing)
        for sar_dim, grid_dim in zip(schema.SAR_DIMS, schema.GRID2KM_DIMS):
            n, n2 = ds.sizes[sar_dim], ds.sizes[grid_dim]
            if not np.floor(n / cell) <= n2 <= np.ceil(n / cell):
                problems.append((grid_dim, f"{n2} cells do not cover {sar_dim}={n} at "
                                           f"{cell:g} pixels per cell"))
    return problems


def _default_spacing(kind: str) -> int:
    return schema.RTT_PIXEL_SPACING_M if kind == "rtt" else schema.RAW_PIXEL_SPACING_M


@dataclass(frozen=True)
class Grid2kmWindow:
    """The 2 km cells under a SAR window and where the window starts inside the first cell.

    ``cells_rows``/``cells_cols`` slice the 2 km grid; SAR pixel ``(i, j)`` of the window lies in cell
    ``((offset[0] + i) // cell, (offset[1] + j) // cell)`` of the sliced block. Where the 2 km grid
    ends short of the window, upsampling repeats the last cell and :meth:`covered` is False there.
    """

    cells_rows: slice
    cells_cols: slice
    offset: tuple[int, int]  # SAR pixels from the first cell's corner to the window's corner
    cell: int  # SAR pixels per 2 km cell side
    shape: tuple[int, int]  # SAR window (h, w)

    def pixel_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column index into the read 2 km block for every window line and sample."""
        n_rows = self.cells_rows.stop - self.cells_rows.start
        n_cols = self.cells_cols.stop - self.cells_cols.start
        return (cell_index(self.offset[0], np.arange(self.shape[0]), 1, self.cell, n_rows),
                cell_index(self.offset[1], np.arange(self.shape[1]), 1, self.cell, n_cols))

    def upsample(self, block: np.ndarray) -> np.ndarray:
        """Nearest upsampling of a ``(..., rows, cols)`` 2 km block onto the SAR window."""
        rows, cols = self.pixel_cells()
        return block[..., rows[:, None], cols[None, :]]

    def covered(self) -> np.ndarray:
        """(h, w) bool: SAR pixels of the window that lie inside the 2 km grid."""
        n_rows = self.cells_rows.stop - self.cells_rows.start
        n_cols = self.cells_cols.stop - self.cells_cols.start
        inside_r = cell_index(self.offset[0], np.arange(self.shape[0]), 1, self.cell) < n_rows
        inside_c = cell_index(self.offset[1], np.arange(self.shape[1]), 1, self.cell) < n_cols
        return inside_r[:, None] & inside_c[None, :]


def _norm_slice(s: slice | None, n: int) -> slice:
    start, stop, step = (s or slice(None)).indices(n)
    if step != 1:
        raise ValueError("windows must be contiguous (step 1)")
    return slice(start, max(start, stop))


class Scene:
    """One AI4Arctic scene file (RTT ``*_prep.nc`` or raw), opened lazily and validated.

    Args:
        path: the netCDF file.
        kind: ``"rtt"``, ``"raw"`` or ``"auto"`` (from the variables present).
        validate: check the file against the schema and raise :class:`SceneError` on any problem.
        tiepoint_order: how the 21 x 21 RTT tie-point arrays map to the image: ``"dims"`` (trust the
            dim names: axis 0 = samples), ``"line_major"`` (axis 0 = lines), or ``"auto"`` (decide
            from geometry, falling back to the dim names for near-square scenes).
    """

    def __init__(self, path: str | Path, kind: str = "auto", validate: bool = True,
                 tiepoint_order: str = "auto"):
        self._attach(open_dataset(path), Path(path), kind, validate, tiepoint_order)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, name: str, kind: str = "auto", validate: bool = True,
                     tiepoint_order: str = "auto") -> "Scene":
        """A scene over a dataset already in memory, ``name`` standing for its file name."""
        scene = cls.__new__(cls)
        scene._attach(ds, Path(name), kind, validate, tiepoint_order)
        return scene

    def _attach(self, ds: xr.Dataset, path: Path, kind: str, validate: bool,
                tiepoint_order: str) -> None:
        self.path, self.ds = path, ds
        self.kind = detect_kind(self.ds) if kind == "auto" else kind
        if self.kind not in ("rtt", "raw"):
            raise ValueError(f"kind must be 'rtt', 'raw' or 'auto', not {kind!r}")
        if tiepoint_order not in ("auto", "dims", "line_major"):
            raise ValueError(f"tiepoint_order must be auto, dims or line_major, not {tiepoint_order!r}")
        self.tiepoint_order = tiepoint_order
        if validate:
            problems = validation_problems(self.ds, self.kind)
            if problems:
                self.ds.close()
                variable, problem = problems[0]
                more = f" (and {len(problems) - 1} more: " + "; ".join(
                    f"{v or 'file'}: {p}" for v, p in problems[1:]) + ")" if len(problems) > 1 else ""
                raise SceneError(self.path, problem + more, variable)
            self._check_identity()
        self._charts_cache: dict[str, np.ndarray] | None = None
        self._unusable: dict[str, int] = {}  # variable -> values masked or refused (value_report)

    # --- identity -------------------------------------------------------------------------------
    def _check_identity(self) -> None:
        """:class:`SceneError` when an attribute that names the acquisition disagrees with the file's
        name: a file copied or renamed under another scene's name (its date or service would lie,
        and a copy under a new date would pose as a second acquisition in every history). RTT
        files: ``scene_id``, ``ice_service`` and the id of ``original_id``; raw files:
        ``ice_service`` and ``acquisition_time`` where they are there."""
        try:
            named = scene_id_from_name(self.path, self.kind)
        except SceneError:
            return  # a name without an id: refused where the id is needed
        expected = {"scene_id": named, "ice_service": schema.service_of(named)} if self.kind == "rtt" else \
            {"ice_service": schema.service_of(named),
             "acquisition_time": dt.datetime.strptime(named[:15], "%Y%m%dT%H%M%S").isoformat()}
        for attr, want in expected.items():
            found = self.ds.attrs.get(attr)
            if found is not None and str(found) != want:
                self.ds.close()
                raise SceneError(self.path, f"its {attr} attribute is {str(found)!r} but its name says {want!r} "
                                            "(copied or renamed under another scene's name?)")
        original = self.ds.attrs.get("original_id") if self.kind == "rtt" else None
        if original is not None and schema.SCENE_ID.fullmatch(
                from_original := schema.scene_key(schema.rtt_name_from_raw(str(original)))) and from_original != named:
            self.ds.close()
            raise SceneError(self.path, f"its original_id attribute names scene {from_original!r} but its name says "
                                        f"{named!r} (copied or renamed under another scene's name?)")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def original_name(self) -> str:
        """The raw scene file name (RTT files keep it in ``original_id``)."""
        return str(self.ds.attrs.get("original_id", self.name)) if self.kind == "rtt" else self.name

    @property
    def scene_id(self) -> str:
        """``YYYYMMDDTHHMMSS_{dmi|cis}``, as used in submission variable names (from the file name;
        :class:`SceneError` if it has none)."""
        return scene_id_from_name(self.path, self.kind)

    @property
    def ice_service(self) -> str:
        return schema.service_of(self.scene_id)

    @property
    def region(self) -> str:
        """The ice-chart region of the raw name (``original_id`` of an RTT file); SceneError if it names none."""
        try:
            return schema.region_from_raw(self.original_name)
        except ValueError as err:
            raise SceneError(self.path, f"original_id: {err}" if self.kind == "rtt" else str(err)) from None

    @property
    def time(self) -> dt.datetime:
        """SAR acquisition start (UTC)."""
        return dt.datetime.strptime(self.scene_id[:15], "%Y%m%dT%H%M%S")

    # --- grids ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """SAR grid (lines, samples)."""
        return self.ds.sizes[schema.SAR_DIMS[0]], self.ds.sizes[schema.SAR_DIMS[1]]

    @property
    def grid2km_shape(self) -> tuple[int, int]:
        return self.ds.sizes[schema.GRID2KM_DIMS[0]], self.ds.sizes[schema.GRID2KM_DIMS[1]]

    @property
    def pixel_spacing(self) -> float:
        """SAR pixel spacing in metres."""
        spacing = self.ds.attrs.get("pixel_spacing", _default_spacing(self.kind))
        problem = spacing_problem(spacing)
        if problem:
            raise SceneError(self.path, problem)
        return float(spacing)

    @property
    def cell(self) -> int:
        """SAR pixels per 2 km cell side."""
        return int(round(schema.GRID2KM_SPACING_M / self.pixel_spacing))

    @property
    def has_charts(self) -> bool:
        return all(c in self.ds for c in schema.CHARTS) or "polygon_icechart" in self.ds

    # --- reading --------------------------------------------------------------------------------
    def _window(self, rows: slice | None, cols: slice | None) -> tuple[slice, slice]:
        return _norm_slice(rows, self.shape[0]), _norm_slice(cols, self.shape[1])

    def values(self, name: str, *index) -> np.ndarray:
        """One variable as stored, read now (``index``: a slice or index per dim; none: all of it).

        Every read of the file goes through here: data it cannot give back (a damaged chunk,
        ``NetCDF: HDF error``) raises :class:`SceneError` naming the file and the variable.
        """
        try:
            return np.asarray(self.ds[name][index].values if index else self.ds[name].values)
        except (RuntimeError, OSError) as err:  # netCDF4 reports HDF5 failures as RuntimeError
            raise SceneError(self.path, f"damaged data, the file cannot give it back "
                                        f"({type(err).__name__}: {err})", name) from err

    def _stored_range(self, name: str) -> tuple[float, float]:
        """:data:`~seaice_lib.schema.PHYSICAL_RANGE` of ``name`` in the units the file stores."""
        lo, hi = schema.PHYSICAL_RANGE[name]
        if self.kind == "rtt":  # standard-scaled: a positive std keeps the order
            lo, hi = (float(v) for v in to_standard(name, np.array([lo, hi])))
        return lo, hi

    def _unusable_values(self, name: str, values: np.ndarray) -> np.ndarray:
        """Values that are not finite or lie outside the variable's physical range."""
        lo, hi = self._stored_range(name)
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(values) | (values < lo) | (values > hi)

    def _dataset_nodata(self, name: str, values: np.ndarray) -> np.ndarray:
        """The dataset's own no-data convention of a SAR-grid variable: 0 in ready-to-train inputs
        (but the distance map, which has none), NaN in raw files."""
        if self.kind == "raw":
            return np.isnan(values)
        return values == schema.SAR_FILL if name != "distance_map" else np.zeros(values.shape, bool)

    def _nodata(self, name: str, values: np.ndarray) -> np.ndarray:
        """Where a SAR-grid variable has no data: the dataset's no-data value, and any value that
        is not finite or lies outside the variable's physical range
        (:data:`~seaice_lib.schema.PHYSICAL_RANGE`)."""
        return self._dataset_nodata(name, values) | self._unusable_values(name, values)

    def _masked(self, name: str, values: np.ndarray) -> np.ndarray:
        """Values masked beyond the dataset's own no-data convention (not finite or out of range)."""
        return self._unusable_values(name, values) & ~self._dataset_nodata(name, values)

    def _masked_count(self, name: str, values: np.ndarray) -> int:
        """How many values are :meth:`_masked`."""
        return int(self._masked(name, values).sum())

    def masked_inputs(self, inputs: Sequence[str], footprint: bool = False) -> tuple[np.ndarray, dict[str, int]]:
        """(H, W) bool: pixels where any of the SAR-grid ``inputs`` holds a value the reader masks
        beyond the dataset's own no-data convention (not finite or out of range; read as no data, a
        model would see a made-up value there), and the count of each variable with any.
        ``footprint``: only where none of ``inputs`` holds the dataset's no-data value (an earlier
        acquisition: where it has no data by its own convention, it covers nothing, bad value or not)."""
        values = {name: self.values(name) for name in inputs if name in self.ds}
        inside = np.ones(self.shape, bool)
        if footprint:
            for name, v in values.items():
                inside &= ~self._dataset_nodata(name, v)
        mask, counts = np.zeros(self.shape, bool), {}
        for name, v in values.items():
            masked = self._masked(name, v)
            if not footprint:
                self._unusable[name] = int(masked.sum())
            masked &= inside
            mask |= masked
            if n := int(masked.sum()):
                counts[name] = n
        return mask, counts

    def value_report(self) -> dict[str, int]:
        """Per input variable, how many values the reader masks (SAR grid: not finite or outside
        the physical range, beyond the dataset's own no-data value) or would refuse (2 km grid);
        only variables with any. Reads each SAR-grid input once."""
        for name in schema.SAR_GRID_VARIABLES:
            if name in self.ds and name not in self._unusable:
                self._unusable[name] = self._masked_count(name, self.values(name))
        for name in schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES:
            if name in self.ds and name not in self._unusable:
                self._unusable[name] = int(self._unusable_values(name, self.values(name)).sum())
        return {name: n for name, n in self._unusable.items() if n}

    def _checked_grid2km(self, name: str, window: tuple[slice, slice]) -> np.ndarray:
        """A window of a 2 km variable as stored; :class:`SceneError` naming the variable and the count
        when any value of the whole variable is not finite or lies outside its physical range (the
        dataset has no no-data value for AMSR2 and ERA5, so no value can stand in)."""
        if name not in self._unusable:
            self._unusable[name] = int(self._unusable_values(name, self.values(name)).sum())
        if bad := self._unusable[name]:
            lo, hi = schema.PHYSICAL_RANGE[name]
            raise SceneError(self.path, f"{bad} of {self.ds[name].size} values are not finite or lie outside "
                                        f"[{lo:g}, {hi:g}] {schema.UNITS[name]}; the dataset has no no-data "
                                        "value for it, so the scene cannot be used", name)
        return self.values(name, *window)

    def read(self, name: str, rows: slice | None = None, cols: slice | None = None,
             units: Units = "standard") -> np.ndarray:
        """A window of one SAR-grid input variable as float32 (h, w).

        ``units="standard"``: z-scores with 0 where there is no data (the RTT convention);
        ``units="physical"``: dB / degrees / zone id with NaN where there is no data.
        """
        if name not in schema.SAR_GRID_VARIABLES:
            raise KeyError(f"{name!r} is not a SAR-grid input; use read_grid2km for 2 km variables")
        r, c = self._window(rows, cols)
        values = self.values(name, r, c).astype(np.float32, copy=False)
        nodata = self._nodata(name, values)
        if (r.start, r.stop, c.start, c.stop) == (0, self.shape[0], 0, self.shape[1]):  # the whole variable
            self._unusable[name] = self._masked_count(name, values)
        stored = "standard" if self.kind == "rtt" else "physical"
        if units == stored:
            out = values
        elif units == "physical":
            out = to_physical(name, values)
        elif units == "standard":
            out = to_standard(name, values)
        else:
            raise ValueError(f"units must be 'standard' or 'physical', not {units!r}")
        out = np.where(nodata, np.nan if units == "physical" else schema.SAR_FILL, out)
        return out.astype(np.float32)

    def sar_valid(self, rows: slice | None = None, cols: slice | None = None,
                  inputs: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3]) -> np.ndarray:
        """(h, w) bool: pixels with SAR data (both polarisations) where the other SAR-grid ``inputs``
        (the incidence angle by default) have data too: their no-data value, or a value not finite
        or out of range, would be read as 0 (the mean), a made-up input. The distance map has no
        no-data value (its 0 is the coast)."""
        r, c = self._window(rows, cols)
        hh, hv = (~self._nodata(name, self.values(name, r, c)) for name in schema.SAR_VARIABLES)
        valid = hh & hv
        for name in inputs:
            if name not in schema.SAR_VARIABLES and name in self.ds:
                valid &= ~self._nodata(name, self.values(name, r, c))
        return valid

    def checked_sar_valid(self) -> np.ndarray:
        """(H, W) bool :meth:`sar_valid` of the whole scene; :class:`SceneError` naming the variable
        when no pixel has SAR data (HH or HV no data or NaN everywhere): nothing to learn from."""
        valid = {name: ~self._nodata(name, self.values(name)) for name in schema.SAR_VARIABLES}
        for name, ok in valid.items():
            if not ok.any():
                raise SceneError(self.path, "no pixel has data (no-data value or NaN everywhere)", name)
        both = valid["nersc_sar_primary"] & valid["nersc_sar_secondary"]
        if not both.any():
            raise SceneError(self.path, "no pixel has data in both HH and HV", "nersc_sar_secondary")
        return both

    def read_sar(self, rows: slice | None = None, cols: slice | None = None,
                 variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3],
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Standard-scaled SAR-grid inputs (C, h, w) float32 with 0 at no data, and the (h, w) mask."""
        data = np.stack([self.read(v, rows, cols) for v in variables])
        return data, self.sar_valid(rows, cols, variables)

    def charts(self, rows: slice | None = None, cols: slice | None = None) -> dict[str, np.ndarray]:
        """Chart label windows, chart -> uint8 (h, w), 255 = no label.

        Raw scenes convert their SIGRID-3 polygons (the whole scene once, then cached). A class
        outside the chart's range raises :class:`SceneError` naming the file and the chart.
        """
        if not self.has_charts:
            raise SceneError(self.path, "has no ice charts (a test scene?)")
        r, c = self._window(rows, cols)
        if self.kind == "rtt":
            charts = {ch: self.values(ch, r, c).astype(np.uint8, copy=False) for ch in schema.CHARTS}
            for chart, labels in charts.items():
                check_chart_classes(self.path, chart, labels)
            return charts
        if self._charts_cache is None:
            codes = [s.decode() if isinstance(s, bytes) else str(s)
                     for s in self.values("polygon_codes")]
            try:
                self._charts_cache = icechart.rasterize_charts(
                    self.values("polygon_icechart"), codes,
                    on_unknown=lambda message: log.warning("%s: %s; left unlabelled (255)", self.path, message))
            except ValueError as err:
                raise SceneError(self.path, str(err), "polygon_codes") from err
        return {ch: a[r, c] for ch, a in self._charts_cache.items()}

    def grid2km_window(self, rows: slice | None = None, cols: slice | None = None) -> Grid2kmWindow:
        """The 2 km cells under a SAR window, with the exact pixel offset."""
        r, c = self._window(rows, cols)
        n2 = self.grid2km_shape
        cell = self.cell
        first = (r.start // cell, c.start // cell)
        last = (-(-r.stop // cell), -(-c.stop // cell))  # exclusive, ceil
        stop = (min(last[0], n2[0]), min(last[1], n2[1]))
        start = (min(first[0], stop[0] - 1), min(first[1], stop[1] - 1))
        offset = (r.start - start[0] * cell, c.start - start[1] * cell)
        return Grid2kmWindow(slice(start[0], stop[0]), slice(start[1], stop[1]), offset, cell,
                             (r.stop - r.start, c.stop - c.start))

    def read_grid2km(self, variables: tuple[str, ...] | list[str], rows: slice | None = None,
                     cols: slice | None = None, units: Units = "standard", upsample: bool = False,
                     ) -> tuple[np.ndarray, Grid2kmWindow]:
        """AMSR2/ERA5 under a SAR window: (C, rows2, cols2) at native 2 km, and the window.

        With ``upsample=True`` the array is (C, h, w) on the SAR window (nearest, exact cells).
        """
        win = self.grid2km_window(rows, cols)
        out = []
        for name in variables:
            values = self._checked_grid2km(name, (win.cells_rows, win.cells_cols)).astype(np.float32, copy=False)
            stored = "standard" if self.kind == "rtt" else "physical"
            if units != stored:
                values = to_physical(name, values) if units == "physical" else to_standard(name, values)
            out.append(values)
        block = np.stack(out)
        return (win.upsample(block) if upsample else block), win

    # --- geolocation ----------------------------------------------------------------------------
    @property
    def tiepoints(self) -> TiePointGrid:
        """The scene's geolocation tie points, oriented lines x samples.

        :class:`SceneError` names the variable when they are not finite, latitudes leave
        [-90, 90], or neighbouring points are not evenly spaced on the ground (damaged values).
        """
        if self.kind == "raw":
            names = {"lat": "sar_grid_latitude", "lon": "sar_grid_longitude"}
            try:
                grid = TiePointGrid.from_points(*(self.values(v) for v in (
                    "sar_grid_line", "sar_grid_sample", names["lat"], names["lon"])))
            except ValueError as err:
                raise SceneError(self.path, str(err), "sar_grid_line, sar_grid_sample") from err
            self._check_tiepoints(grid.lat, grid.lon, names)
            self._check_footprint(grid, names)
            return grid
        names = {"lat": "sar_grid2d_latitude", "lon": "sar_grid2d_longitude"}
        if min(self.shape) < 2:
            raise SceneError(self.path, f"shape {self.shape}: a scene needs at least 2 lines and 2 samples",
                             "nersc_sar_primary")
        lat = self.values(names["lat"]).astype(float)
        lon = self.values(names["lon"]).astype(float)
        n = schema.TIEPOINTS_PER_SIDE
        if lat.shape != (n, n) or lon.shape != (n, n):  # spread evenly over the scene: any other count misplaces them
            raise SceneError(self.path, f"{lat.shape} and {lon.shape} tie points; the ready-to-train format holds "
                                        f"{n} x {n} spread over the scene", f"{names['lat']}, {names['lon']}")
        self._check_tiepoints(lat, lon, names)
        line_major = {"dims": False, "line_major": True}.get(self.tiepoint_order)
        if line_major is None:
            guess = tiepoints_are_line_major(lat, lon, self.shape)
            line_major = bool(guess)  # None (near-square): trust the dim names
        if not line_major:  # dims say (samples, lines)
            lat, lon = lat.T, lon.T
        grid = TiePointGrid.regular(lat, lon, self.shape)
        self._check_footprint(grid, names)
        return grid

    def _check_tiepoints(self, lat: np.ndarray, lon: np.ndarray, names: dict[str, str]) -> None:
        problems = tiepoint_problems(lat, lon)
        if problems:
            which, problem = problems[0]
            both = f"{names['lat']}, {names['lon']}"
            raise SceneError(self.path, problem, both if which is None else names.get(which, both))

    def _check_footprint(self, grid: TiePointGrid, names: dict[str, str]) -> None:
        if problem := footprint_problem(grid, self.pixel_spacing):
            raise SceneError(self.path, problem, f"{names['lat']}, {names['lon']}")

    def lonlat(self, step: int = 1, rows: slice | None = None, cols: slice | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel longitude and latitude (degrees) of a window, every ``step`` pixels."""
        r, c = self._window(rows, cols)
        return self.tiepoints.pixel_lonlat(np.arange(r.start, r.stop, step),
                                           np.arange(c.start, c.stop, step))

    def close(self) -> None:
        self.ds.close()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Scene({self.name!r}, kind={self.kind}, shape={self.shape}, "
                f"grid2km={self.grid2km_shape}, region={self.region}, charts={self.has_charts})")


def find_scenes(directory: str | Path, pattern: str = "*_prep.nc") -> list[Path]:
    """Scene files in a directory (names that begin with the scene id), sorted by name (= by
    acquisition time within a service).

    An entry matching ``pattern`` that is not a readable file (a folder named like a scene, a
    dangling link or a loop of symbolic links, a file without read permission) is skipped and
    named in a warning (:func:`scan_scenes` returns them); two files of one scene id are a
    ValueError naming both.
    """
    found, skipped = scan_scenes(directory, pattern)
    for err in skipped:
        log.warning("%s: skipped, %s", err.path, err.problem)
    return found


def scan_scenes(directory: str | Path, pattern: str = "*_prep.nc") -> tuple[list[Path], list[SceneError]]:
    """(:func:`find_scenes`'s files, a :class:`SceneError` for each entry it skips)."""
    found: dict[str, Path] = {}
    skipped = []
    for path in sorted(Path(directory).glob(pattern)):
        if not path.is_file():  # False for folders, dangling links and link loops (ELOOP)
            skipped.append(SceneError(path, "not a scene file (a folder, a dangling link or a loop of links)"))
            continue
        if not os.access(path, os.R_OK):
            skipped.append(SceneError(path, "not readable (permissions)"))
            continue
        key = schema.scene_key(path)
        if key in found:
            raise ValueError(f"{directory}: two files of scene {key}: {found[key].name} and {path.name}; "
                             "keep one of them there")
        found[key] = path
    return list(found.values()), skipped
