"""Reading AI4Arctic scene files: lazy, validated views of ready-to-train (RTT) and raw netCDF scenes.

A :class:`Scene` opens a file lazily with xarray (nothing is read until asked), checks it against the
schema, and reads windows of the SAR grid and of the 2 km AMSR2/ERA5 grid with their exact alignment:
2 km cell ``(a, b)`` covers SAR pixels ``[a*c, (a+1)*c) x [b*c, (b+1)*c)`` with ``c = 2000 m / pixel
spacing`` (25 at 80 m, 50 at 40 m); the 2 km grid starts at pixel 0 and may end one cell short.

Units: RTT files store standard-scaled values (z = (x - mean) / std, 0 = no data for SAR-grid inputs);
raw files store physical units (dB, degrees, K, ...) with NaN for no data. ``read(..., units=...)``
returns either, whatever the file holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema
from ..grid import cell_index
from . import icechart
from .geo import TiePointGrid, tiepoints_are_line_major

Units = str  # "standard" | "physical"


class SceneError(ValueError):
    """A scene file that cannot be used, naming the file, the variable and the problem."""

    def __init__(self, path: str | Path, problem: str, variable: str | None = None):
        self.path, self.problem, self.variable = str(path), problem, variable
        where = f"{self.path}: {variable}: " if variable else f"{self.path}: "
        super().__init__(where + problem)


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
    if not problems and all(d in ds.sizes for d in schema.SAR_DIMS + schema.GRID2KM_DIMS):
        spacing = float(ds.attrs.get("pixel_spacing", _default_spacing(kind)))
        cell = schema.GRID2KM_SPACING_M / spacing
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
        self._charts_cache: dict[str, np.ndarray] | None = None

    # --- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def original_name(self) -> str:
        """The raw scene file name (RTT files keep it in ``original_id``)."""
        return str(self.ds.attrs.get("original_id", self.name)) if self.kind == "rtt" else self.name

    @property
    def scene_id(self) -> str:
        """``YYYYMMDDTHHMMSS_{dmi|cis}``, as used in submission variable names."""
        return schema.rtt_name_from_raw(self.original_name)[:19] if self.kind == "raw" \
            else self.name[:19]

    @property
    def ice_service(self) -> str:
        return self.scene_id[16:19]

    @property
    def region(self) -> str:
        return schema.region_from_raw(self.original_name)

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
        return float(self.ds.attrs.get("pixel_spacing", _default_spacing(self.kind)))

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

    def read(self, name: str, rows: slice | None = None, cols: slice | None = None,
             units: Units = "standard") -> np.ndarray:
        """A window of one SAR-grid input variable as float32 (h, w).

        ``units="standard"``: z-scores with 0 where there is no data (the RTT convention);
        ``units="physical"``: dB / degrees / zone id with NaN where there is no data.
        """
        if name not in schema.SAR_GRID_VARIABLES:
            raise KeyError(f"{name!r} is not a SAR-grid input; use read_grid2km for 2 km variables")
        r, c = self._window(rows, cols)
        values = np.asarray(self.ds[name][r, c].values, np.float32)
        if self.kind == "rtt" and name != "distance_map":  # the distance map has no no-data value
            nodata = values == schema.SAR_FILL
        else:
            nodata = ~np.isfinite(values)
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

    def sar_valid(self, rows: slice | None = None, cols: slice | None = None) -> np.ndarray:
        """(h, w) bool: pixels with SAR data (both polarisations)."""
        r, c = self._window(rows, cols)
        hh = np.asarray(self.ds["nersc_sar_primary"][r, c].values)
        hv = np.asarray(self.ds["nersc_sar_secondary"][r, c].values)
        if self.kind == "rtt":
            return (hh != schema.SAR_FILL) & (hv != schema.SAR_FILL)
        return np.isfinite(hh) & np.isfinite(hv)

    def read_sar(self, rows: slice | None = None, cols: slice | None = None,
                 variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3],
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Standard-scaled SAR-grid inputs (C, h, w) float32 with 0 at no data, and the (h, w) mask."""
        data = np.stack([self.read(v, rows, cols) for v in variables])
        return data, self.sar_valid(rows, cols)

    def charts(self, rows: slice | None = None, cols: slice | None = None) -> dict[str, np.ndarray]:
        """Chart label windows, chart -> uint8 (h, w), 255 = no label.

        Raw scenes convert their SIGRID-3 polygons (the whole scene once, then cached).
        """
        if not self.has_charts:
            raise SceneError(self.path, "has no ice charts (a test scene?)")
        r, c = self._window(rows, cols)
        if self.kind == "rtt":
            return {ch: np.asarray(self.ds[ch][r, c].values, np.uint8) for ch in schema.CHARTS}
        if self._charts_cache is None:
            codes = [s.decode() if isinstance(s, bytes) else str(s)
                     for s in self.ds["polygon_codes"].values]
            try:
                self._charts_cache = icechart.rasterize_charts(
                    np.asarray(self.ds["polygon_icechart"].values), codes)
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
            values = np.asarray(self.ds[name][win.cells_rows, win.cells_cols].values, np.float32)
            stored = "standard" if self.kind == "rtt" else "physical"
            if units != stored:
                values = to_physical(name, values) if units == "physical" else to_standard(name, values)
            out.append(values)
        block = np.stack(out)
        return (win.upsample(block) if upsample else block), win

    # --- geolocation ----------------------------------------------------------------------------
    @property
    def tiepoints(self) -> TiePointGrid:
        """The scene's geolocation tie points, oriented lines x samples."""
        if self.kind == "raw":
            d = self.ds
            return TiePointGrid.from_points(d["sar_grid_line"].values, d["sar_grid_sample"].values,
                                            d["sar_grid_latitude"].values,
                                            d["sar_grid_longitude"].values)
        lat = np.asarray(self.ds["sar_grid2d_latitude"].values, float)
        lon = np.asarray(self.ds["sar_grid2d_longitude"].values, float)
        line_major = {"dims": False, "line_major": True}.get(self.tiepoint_order)
        if line_major is None:
            guess = tiepoints_are_line_major(lat, lon, self.shape)
            line_major = bool(guess)  # None (near-square): trust the dim names
        if not line_major:  # dims say (samples, lines)
            lat, lon = lat.T, lon.T
        return TiePointGrid.regular(lat, lon, self.shape)

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
    """Scene files in a directory, sorted by name (= by acquisition time within a service)."""
    return sorted(Path(directory).glob(pattern))
