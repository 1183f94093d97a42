"""Synthetic AI4Arctic scenes: files in the exact dataset schema, rendered from a hidden world.

Per region a drifting ice state (:mod:`.world`), charts as polygons with SIGRID-3 egg codes, and
acquisitions with their own footprints and tie points, each observed by ERA5, AMSR2 and SAR
(:mod:`.sensors`); written as raw files and made ready-to-train by
:func:`seaice_lib.data.prepare.rtt_from_raw`. On request, a truth file per scene holds the hidden
state and the pixels whose class only the history decides. Deterministic for a seed. What each
modality carries and why: docs/synthetic.md. CLI: ``seaice synthetic --help``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage, special

from .. import logs, schema
from ..arguments import Parser
from ..atomic import folder_lock, out_folder, write_text
from ..data.geo import lonlat_to_xy, xy_to_lonlat
from ..data.prepare import rtt_from_raw, write_scene
from ..data.scene import Scene
from ..grid import block_reduce, blocks
from ..provenance import file_sha256, written_files
from ..stages import SCENES, other_stage
from . import sensors
from .world import (
    NEW,
    NEW_ICE_DAYS,
    OLD,
    REGION_CATALOGUE,
    WATER,
    YOUNG,
    YOUNG_ICE_DAYS,
    Region,
    RegionSpec,
    draw_chart,
    gaussian_field,
)

TRUTH_DIR = "truth"  # beside the scenes; never read by a model
HISTORY_WINDOW_DAYS = 7.0  # the earlier acquisitions a truth file's history-decisive mask considers


# --- acquisitions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Acquisition:
    """One SAR acquisition: when, where (footprint in the polar-stereographic plane), which pass."""

    region: RegionSpec
    index: int
    time: dt.datetime
    day: float  # days since the region's first acquisition
    centre_xy: tuple[float, float]  # metres, EPSG:3413
    heading_deg: float  # direction of the sample axis, from map +x
    ascending: bool
    shape: tuple[int, int]  # (lines, samples) at 80 m

    def pixel_xy(self, lines: np.ndarray, samples: np.ndarray, spacing: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Map position (m) of pixel centres ``lines`` x ``samples`` (grid) at ``spacing`` metres."""
        h_m = self.shape[0] * schema.RTT_PIXEL_SPACING_M
        w_m = self.shape[1] * schema.RTT_PIXEL_SPACING_M
        u = (np.asarray(samples, float) + 0.5) * spacing - w_m / 2  # across track
        v = (np.asarray(lines, float) + 0.5) * spacing - h_m / 2  # along track, down the image
        c, s = np.cos(np.deg2rad(self.heading_deg)), np.sin(np.deg2rad(self.heading_deg))
        x = self.centre_xy[0] + u[None, :] * c + v[:, None] * s
        y = self.centre_xy[1] + u[None, :] * s - v[:, None] * c
        return x, y

    def rotate_to_track(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map-frame vector components to (along samples, along lines), as ERA5 ``*_rotated``."""
        c, s = np.cos(np.deg2rad(self.heading_deg)), np.sin(np.deg2rad(self.heading_deg))
        return east * c + north * s, east * s - north * c

    def raw_name(self, rng: np.random.Generator) -> str:
        """A raw file name in the dataset's pattern (RTT name = name[17:32] + _service + _prep.nc)."""
        start = self.time.strftime("%Y%m%dT%H%M%S")
        end = (self.time + dt.timedelta(seconds=60)).strftime("%Y%m%dT%H%M%S")
        orbit, take, crc = rng.integers(1000, 99999), rng.integers(0, 0xFFFFFF), rng.integers(0, 0xFFFF)
        head = f"S1{'AB'[self.index % 2]}_EW_GRDM_1SDH_{start}_{end}_{orbit:06d}_{take:06X}_{crc:04X}"
        chart_time = self.time.replace(minute=0, second=0)
        if self.region.service == "cis":
            tail = f"{self.region.name}_{chart_time:%Y%m%dT%H%MZ}_pl_a"
        else:
            tail = f"{chart_time:%Y%m%d%H%M}_{self.region.name}_RIC"
        return f"{head}_icechart_{self.region.service}_{tail}.nc"



@dataclass
class Observed:
    """What one acquisition saw, kept for the truth files of later acquisitions of its region."""

    acq: Acquisition
    stage: np.ndarray  # (h, w) uint8 true SOD class at render spacing
    valid: np.ndarray  # (h, w) bool SAR data


@dataclass
class Rendered:
    """A rendered acquisition: the raw dataset and the hidden state at its pixels."""

    ds: xr.Dataset
    conc: np.ndarray  # (h, w) true ice concentration 0..1
    stage: np.ndarray  # (h, w) true SOD class, 255 on land
    age: np.ndarray  # (h, w) days since the spot froze, NaN where not formed in the history
    history_decisive: np.ndarray  # (h, w) bool: new or young ice whose earlier views decide it
    observed: Observed
    amsr2_offset_h: float


def _cell_centres(acq: Acquisition, shape2: tuple[int, int], cell: int, spacing: float, per_cell: int = 1
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Map x, y of ``per_cell`` x ``per_cell`` points spread over each 2 km cell (all cells)."""
    offsets = (np.arange(per_cell) + 0.5) * cell / per_cell - 0.5  # pixel positions within a cell
    lines = (np.arange(shape2[0])[:, None] * cell + offsets[None, :]).ravel()
    samples = (np.arange(shape2[1])[:, None] * cell + offsets[None, :]).ravel()
    return acq.pixel_xy(lines, samples, spacing)


def _lagged_ice(region: Region, conc: np.ndarray):
    """ERA5's view of the ice: the previous day's concentration at its resolution, as f(x, y)."""
    f = max(1, int(round(2000 / region.res)))
    coarse = ndimage.gaussian_filter(blocks(conc, f).mean(axis=(-3, -1)),
                                     sensors.ERA5_SMOOTHING_KM * 1000 / (region.res * f), mode="nearest")
    dr, dc = region.drift_cells(sensors.ERA5_ICE_LAG_DAYS)  # yesterday's ice here is now downstream

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r, c = region.grid_index(x, y)
        return ndimage.map_coordinates(coarse, ((r + dr - (f - 1) / 2) / f, (c + dc - (f - 1) / 2) / f),
                                       order=1, mode="nearest")
    return at


def _history_decisive(acq: Acquisition, x: np.ndarray, y: np.ndarray, stage: np.ndarray,
                      earlier: list[Observed], spacing: float) -> np.ndarray:
    """New and young ice share one signature on a single date; an earlier view decides the class
    when it brackets the ice's age on the right side of ``NEW_ICE_DAYS``: open water seen at most
    that many days before proves new ice, ice seen at least that long before proves young ice.

    Views are geographic (co-registration follows the earth, not the drifting ice), and a pixel
    counts only where what they show agrees with its true class.
    """
    seen_ice_before = np.zeros(stage.shape)  # the longest gap at which ice was seen here
    seen_water_since = np.full(stage.shape, np.inf)  # the shortest gap at which water was seen
    for obs in earlier:
        gap = acq.day - obs.acq.day
        if not 0 < gap <= HISTORY_WINDOW_DAYS:
            continue
        r, c = _map_to_pixel(obs.acq, x, y, spacing)
        h, w = obs.stage.shape
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        r, c = np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)
        covered = inside & obs.valid[r, c]
        water = obs.stage[r, c] == WATER
        seen_ice_before = np.where(covered & ~water, np.maximum(seen_ice_before, gap), seen_ice_before)
        seen_water_since = np.where(covered & water, np.minimum(seen_water_since, gap), seen_water_since)
    return (((stage == NEW) & (seen_water_since <= NEW_ICE_DAYS))
            | ((stage == YOUNG) & (seen_ice_before >= NEW_ICE_DAYS)))


def render(region: Region, acq: Acquisition, spacing: float, rng: np.random.Generator,
           chart_spacing_km: float, earlier: list[Observed]) -> Rendered:
    """One acquisition as a raw-format dataset at ``spacing`` metres (physical units)."""
    spec = region.spec
    scale = schema.RTT_PIXEL_SPACING_M / spacing
    h, w = int(acq.shape[0] * scale), int(acq.shape[1] * scale)
    cell = int(round(schema.GRID2KM_SPACING_M / spacing))
    cell_km = schema.GRID2KM_SPACING_M / 1000
    n2 = (h // cell, w // cell)
    lines, samples = np.arange(h), np.arange(w)
    x, y = acq.pixel_xy(lines, samples, spacing)
    gr, gc = region.grid_index(x, y)

    ice = region.state(acq.day)
    polygon_ids, codes = draw_chart(region, ice, rng, chart_spacing_km)

    def sample(field: np.ndarray, order: int = 1, rows=gr, cols=gc) -> np.ndarray:
        return ndimage.map_coordinates(field, (rows, cols), order=order, mode="nearest").astype(np.float32)

    conc = np.clip(sample(ice.conc), 0, 1)
    stage = sample(ice.stage, 0).astype(np.int64)
    floe = sample(ice.floe, 0).astype(np.int64)
    age = sample(ice.age, 0)
    land = sample(region.land.astype(np.float32), 0) > 0.5
    dist_km = sample(region.dist_land_km)
    polygon = sample(polygon_ids.astype(np.float32), 0)

    # ice fraction per pixel: resolved floes where floes are larger than a pixel, else a mix
    ice_frac = conc.copy()
    for cls in (2, 3, 4, 5):
        scale_px = sensors.FLOE_SCALE_M[cls] / spacing
        if scale_px < 1:
            continue
        where = floe == cls
        if where.any():
            pattern = special.ndtr(gaussian_field(rng, (h, w), scale_px))
            ice_frac = np.where(where, (pattern < conc).astype(np.float32), ice_frac)

    # ERA5 on the 2 km cells: a coarse, day-old view of the ice
    cx, cy = _cell_centres(acq, n2, cell, spacing)
    wx = sensors.era5(_lagged_ice(region, ice.conc), cx, cy, spec.t2m_c, rng)
    u_rot, v_rot = acq.rotate_to_track(wx["u"], wx["v"])

    # AMSR2: the nearest swath, hours away from the SAR; the ice has drifted in between
    offset_h = float(rng.uniform(-sensors.AMSR2_TIME_OFFSET_H, sensors.AMSR2_TIME_OFFSET_H))
    dr, dc = region.drift_cells(offset_h / 24)
    k = 5  # points per cell side for cell means
    px, py = _cell_centres(acq, n2, cell, spacing, k)
    pr, pc = region.grid_index(px, py)
    at_swath = {name: sample(field, order, pr - dr, pc - dc).reshape(n2[0], k, n2[1], k)
                for name, field, order in (("conc", ice.conc, 1), ("stage", ice.stage, 0),
                                           ("snow", ice.snow, 1), ("ponds", ice.ponds, 1))}
    conc_c = at_swath["conc"].mean(axis=(1, 3))
    share = {s: (at_swath["conc"] * np.isin(at_swath["stage"], s)).mean(axis=(1, 3))
             / np.maximum(conc_c, 1e-6) for s in ((OLD,), (NEW, YOUNG))}
    air = sensors.atmosphere(wx, rng, cell_km)
    tb = sensors.amsr2(rng, conc_c, share[(OLD,)], share[(NEW, YOUNG)], at_swath["snow"].mean(axis=(1, 3)),
                       at_swath["ponds"].mean(axis=(1, 3)), air, wx["skt"], np.hypot(wx["u"], wx["v"]),
                       cell_km)

    # SAR: incidence across the swath (near range first when ascending), wind from ERA5
    frac_across = (samples + 0.5) / w
    if not acq.ascending:
        frac_across = 1 - frac_across
    incidence = np.broadcast_to(sensors.EW_INCIDENCE[0] + (sensors.EW_INCIDENCE[1] - sensors.EW_INCIDENCE[0])
                                * frac_across, (h, w)).astype(np.float32)
    coords = np.meshgrid((lines + 0.5) / cell - 0.5, (samples + 0.5) / cell - 0.5, indexing="ij")
    wind_u, wind_v = (ndimage.map_coordinates(v, coords, order=1, mode="nearest") for v in (u_rot, v_rot))
    bright = np.zeros((h, w), bool)
    if len(region.bergs):  # grounded icebergs: bright point targets, fixed on the map
        r, c = _map_to_pixel(acq, region.bergs[:, 0], region.bergs[:, 1], spacing)
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        bright[r[ok], c[ok]] = True
    hh_db, hv_db = sensors.sar(rng, ice_frac, stage, land, bright, incidence, frac_across, wind_u, wind_v,
                               1 if acq.ascending else -1, spec.melting, spacing)

    # no-data borders: strips at near and far range and a slanted cut at the start of the swath
    nodata = np.zeros((h, w), bool)
    left, right = rng.integers(0, max(2, w // 40), 2)
    nodata[:, :left] = True
    nodata[:, w - right:] = True
    cut = rng.uniform(0, 0.06) * h
    nodata |= lines[:, None] < cut * (1 - samples[None, :] / w)
    hh_db[nodata] = np.nan
    hv_db[nodata] = np.nan
    incidence = np.where(nodata, np.nan, incidence)

    zone = np.digitize(dist_km, schema.DISTANCE_ZONE_EDGES_KM[1:]) + 1
    zone = np.where(land, 0, np.minimum(zone, schema.N_DISTANCE_ZONES - 1)).astype(np.float32)
    polygon = np.where(polygon > 0, polygon, np.nan)
    grid2km = {**tb, "u10m_rotated": u_rot, "v10m_rotated": v_rot,
               **{name: wx[name] for name in ("t2m", "skt", "tcwv", "tclw")}}
    ds = _raw_dataset(acq, spacing, (h, w), hh_db, hv_db, incidence, zone, polygon, codes, grid2km)
    true_stage = np.where(land, 255, stage).astype(np.uint8)
    decisive = _history_decisive(acq, x, y, true_stage, earlier, spacing)
    return Rendered(ds, np.where(land, 0.0, conc).astype(np.float32), true_stage, age, decisive,
                    Observed(acq, true_stage, ~nodata), offset_h)


def truth_dataset(rendered: Rendered, rtt: xr.Dataset, factor: int, earlier: list[Observed]
                  ) -> xr.Dataset:
    """The hidden state of a scene on its 80 m grid (``factor`` render pixels per side): true
    concentration, stage, ice age and freeze time, and the history-decisive mask (only where the
    chart's SOD label is the pixel's true class)."""
    acq = rendered.observed.acq
    stage = block_reduce(rendered.stage, factor, "centre")
    age = block_reduce(rendered.age, factor, "centre")
    decisive = block_reduce(rendered.history_decisive, factor, "centre") & (rtt["SOD"].values == stage)
    epoch = dt.datetime(1970, 1, 1)
    freeze = (acq.time - epoch).total_seconds() / 86400 - age.astype(np.float64)
    gaps = [round(acq.day - o.acq.day, 4) for o in earlier if 0 < acq.day - o.acq.day <= HISTORY_WINDOW_DAYS]
    dims = schema.SAR_DIMS
    return xr.Dataset(
        {"true_concentration": (dims, block_reduce(rendered.conc, factor, "mean"),
                                {"units": "1", "description": "ice concentration of the hidden state"}),
         "true_stage": (dims, stage, {"description": "SOD class of the hidden state; 255 = land"}),
         "ice_age": (dims, age, {"units": "days", "description": "time since the spot froze; NaN for "
                                 "ice older than the region's history and for open water"}),
         "freeze_time": (dims, freeze, {"units": "days since 1970-01-01 00:00:00",
                                        "description": "when the spot froze (NaN: see ice_age)"}),
         "history_decisive": (dims, decisive.astype(np.uint8), {
             "description": "1: new or young ice (one single-date signature) whose class the earlier "
                            "acquisitions decide, and whose chart label is that class"})},
        attrs={"scene_id": rtt.attrs["scene_id"], "region": acq.region.name,
               "melting": int(acq.region.melting), "history_days_before": gaps,
               "history_window_days": HISTORY_WINDOW_DAYS, "new_ice_days": NEW_ICE_DAYS,
               "young_ice_days": YOUNG_ICE_DAYS, "amsr2_time_offset_hours": round(rendered.amsr2_offset_h, 3),
               "note": "generator truth for scoring and diagnosis only; no model input reads it"})


def truth_path(scenes_dir: str | Path, scene_id: str) -> Path:
    """Where :func:`generate` writes the truth file of ``scene_id`` (with ``truth=True``)."""
    return Path(scenes_dir) / TRUTH_DIR / f"{schema.scene_key(scene_id)}_truth.nc"


def _map_to_pixel(acq: Acquisition, x: np.ndarray, y: np.ndarray, spacing: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest pixel (line, sample) of map positions, the inverse of :meth:`Acquisition.pixel_xy`."""
    c, s = np.cos(np.deg2rad(acq.heading_deg)), np.sin(np.deg2rad(acq.heading_deg))
    dx, dy = x - acq.centre_xy[0], y - acq.centre_xy[1]
    u, v = dx * c + dy * s, dx * s - dy * c
    h_m = acq.shape[0] * schema.RTT_PIXEL_SPACING_M
    w_m = acq.shape[1] * schema.RTT_PIXEL_SPACING_M
    return (np.floor((v + h_m / 2) / spacing).astype(int),
            np.floor((u + w_m / 2) / spacing).astype(int))


def _raw_dataset(acq: Acquisition, spacing: float, shape: tuple[int, int], hh: np.ndarray,
                 hv: np.ndarray, incidence: np.ndarray, zone: np.ndarray, polygon: np.ndarray,
                 codes: list[str], grid2km: dict[str, np.ndarray]) -> xr.Dataset:
    h, w = shape
    n = schema.TIEPOINTS_PER_SIDE
    tl, ts = np.linspace(0, h - 1, n), np.linspace(0, w - 1, n)
    tx, ty = acq.pixel_xy(tl, ts, spacing)
    lon, lat = xy_to_lonlat(tx, ty)
    grid_line, grid_sample = np.meshgrid(tl, ts, indexing="ij")
    inc_tp = np.interp(grid_sample, np.arange(w), np.nan_to_num(incidence[h // 2], nan=np.nanmean(incidence)))
    sar = schema.SAR_DIMS
    data = {
        "nersc_sar_primary": (sar, hh.astype(np.float32), {"polarisation": "HH", "units": "dB"}),
        "nersc_sar_secondary": (sar, hv.astype(np.float32), {"polarisation": "HV", "units": "dB"}),
        "sar_incidenceangle": (sar, incidence.astype(np.float32), {"units": "degrees"}),
        "distance_map": (sar, zone, {"description": "distance-to-land zone id, 0 = land"}),
        "polygon_icechart": (sar, polygon.astype(np.float32), {"description": "ice chart polygon id"}),
        "polygon_codes": (("polygon_codes",), np.array(codes, dtype=object), {}),
    }
    points = (schema.RAW_TIEPOINT_DIM,)
    for name, values in (("sar_grid_line", grid_line), ("sar_grid_sample", grid_sample),
                         ("sar_grid_latitude", lat), ("sar_grid_longitude", lon),
                         ("sar_grid_incidenceangle", inc_tp), ("sar_grid_height", np.zeros_like(lat))):
        data[name] = (points, np.asarray(values, np.float64).ravel(), {})
    for name, values in grid2km.items():
        data[name] = (schema.GRID2KM_DIMS, values.astype(np.float32), {"units": schema.UNITS[name]})
    return xr.Dataset(data, attrs={"ice_service": acq.region.service, "pixel_spacing": int(spacing),
                                   "flip": int(not acq.ascending),
                                   "acquisition_time": acq.time.isoformat()})


def plan_acquisitions(spec: RegionSpec, n: int, shape: tuple[int, int], year: int,
                      rng: np.random.Generator) -> list[Acquisition]:
    """``n`` acquisitions of a region, 1-6 days apart, with jittered footprints and passes."""
    start = dt.datetime(year, spec.month, 1) + dt.timedelta(days=int(rng.integers(0, 18)))
    extent = np.array(shape[::-1], float) * schema.RTT_PIXEL_SPACING_M  # (width, height) m
    cx, cy = lonlat_to_xy(spec.lon, spec.lat)
    day, out = 0.0, []
    for i in range(n):
        if i:
            day += float(rng.choice([1, 2, 3, 4, 6]))
        ascending = bool(rng.random() < 0.5)
        heading = -12.0 + rng.normal(0, 6) + (0 if ascending else 180)
        offset = rng.uniform(-0.2, 0.2, 2) * extent
        when = start + dt.timedelta(days=day, hours=float(rng.uniform(0, 23.5)))
        when = when.replace(microsecond=0)
        out.append(Acquisition(spec, i, when, (when - start).total_seconds() / 86400,
                               (float(cx + offset[0]), float(cy + offset[1])), heading, ascending,
                               shape))
    return out


MAX_SIZE = 6000  # 80 m pixels a side: above the real scenes' (31.8 M pixels at most), far below what fills memory
MANIFEST = "synthetic_files.json"  # in the folder: the SHA-256 of each scene file the generator wrote there


def _written(out: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files the generator wrote into ``out`` ({} before any)."""
    try:
        return written_files(out / MANIFEST)
    except ValueError as err:
        raise ValueError(f"{err}: delete it") from None


def _check_kept(path: Path, out: Path, written: dict[str, str]) -> None:
    """ValueError naming ``path`` (in ``out``) unless the generator recorded writing it as it is now."""
    name = str(path.relative_to(out))
    if name not in written:
        raise ValueError(f"{path}: already there, but not among the files {MANIFEST} records as written by "
                         "`seaice synthetic` (its record lost, or an earlier version's folder): delete it to have "
                         "it written again, or write into another --out")
    if file_sha256(path) != written[name]:
        raise ValueError(f"{path}: changed since `seaice synthetic` wrote it (its SHA-256 is not the one "
                         f"{MANIFEST} records): delete it to have it written again, or write into another --out")


OWN_OUTPUTS = ("*_prep.nc", MANIFEST, "raw", TRUTH_DIR)  # what the generator writes into its folder


def not_its_own(out: Path) -> list[str]:
    """The entries of ``out`` (hidden ones aside) that the generator does not write (:data:`OWN_OUTPUTS`):
    another stage's outputs (a patch store, a run, an export, charts) or someone's files, sorted."""
    ours = {p for pattern in OWN_OUTPUTS for p in out.glob(pattern)}
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p not in ours)


def check_folder(out: Path, options: dict) -> None:
    """ValueError naming ``out`` unless every ready-to-train scene already in it records
    ``synthetic_options`` equal to ``options``: a set of another seed or other options has other
    file names, so writing into its folder would mix two sets (nothing is written then)."""
    for path in sorted(out.glob("*_prep.nc")):
        with Scene(path, validate=False) as found:
            recorded = found.ds.attrs.get("synthetic_options")
        try:
            was = json.loads(recorded) if isinstance(recorded, str) else None
        except ValueError:
            was = None
        if not isinstance(was, dict):
            raise ValueError(f"{out}: holds {path.name}, which records no synthetic options (not written by "
                             "`seaice synthetic`, or by an earlier version): write into another --out, or empty it")
        if was != options:
            differ = ", ".join(f"{k} {was.get(k)!r}, not {v!r}" for k, v in options.items() if was.get(k) != v)
            raise ValueError(f"{out}: already holds synthetic scenes written with other options ({differ}), "
                             f"{path.name} among them: write into another --out, or empty it")


def generate(out: str | Path, regions: int = 2, scenes_per_region: int = 3,
             size: tuple[int, int] = (800, 800), seed: int = 0, raw: bool = False, truth: bool = False,
             progress: bool = True) -> list[Path]:
    """Write ``regions x scenes_per_region`` RTT scenes (and raw scenes with ``raw``, truth files
    under ``out/truth`` with ``truth``) into ``out``.

    Returns the RTT paths. Raw files are rendered at 40 m and prepared to 80 m; without ``raw`` the
    scenes are rendered at 80 m directly. Each RTT file records the options that decide its content
    (``synthetic_options``: seed, scenes per region, size, raw). Files already present are kept
    (reruns are idempotent); a folder holding a scene that records other options or none
    (:func:`check_folder`), or one of another size, is an error naming it, before anything is written.
    Scenes (and raw files) of the folder that are not of this set, those of regions after the first
    ``regions`` of the catalogue, are an error naming them once the set's own are checked: each
    region's scenes are the same whatever ``regions`` is, so what this call wrote belongs to the
    folder's larger set as well.
    """
    if not 1 <= regions <= len(REGION_CATALOGUE):
        raise ValueError(f"regions must be 1..{len(REGION_CATALOGUE)}, not {regions}")
    if scenes_per_region < 1:
        raise ValueError(f"scenes_per_region must be >= 1, not {scenes_per_region}")
    if min(size) < 2 * schema.CELL_80M:
        raise ValueError(f"scenes must be at least {2 * schema.CELL_80M} pixels a side, not {size}")
    if max(size) > MAX_SIZE:
        raise ValueError(f"scenes must be at most {MAX_SIZE} pixels a side (the largest AI4Arctic scenes are "
                         f"about 5000 x 5200 at 80 m), not {size}")
    out = Path(out)
    raw_dir = out / "raw"
    spacing = schema.RAW_PIXEL_SPACING_M if raw else schema.RTT_PIXEL_SPACING_M
    factor = 2 if raw else 1
    options = {"seed": seed, "scenes_per_region": scenes_per_region, "size": [int(n) for n in size], "raw": raw}
    check_folder(out, options)
    written = _written(out)
    root = np.random.SeedSequence(seed)
    paths, ours = [], set()
    bar = logs.progress_bar(total=regions * scenes_per_region, desc="synthetic scenes", unit="scene",
               disable=not progress)
    for spec, region_seed in zip(REGION_CATALOGUE[:regions], root.spawn(regions)):
        rng = np.random.default_rng(region_seed)
        year = 2018 + int(rng.integers(0, 4))
        acqs = plan_acquisitions(spec, scenes_per_region, size, year, rng)
        scene_extent = np.hypot(*size) * schema.RTT_PIXEL_SPACING_M
        res = max(4 * schema.RTT_PIXEL_SPACING_M, scene_extent / 1500)
        region = Region(spec, scene_extent / 1000, res, acqs[-1].day + 1, rng)
        chart_km = max(4.0, scene_extent / 1000 / 7)
        earlier: list[Observed] = []
        for acq, acq_seed in zip(acqs, np.random.SeedSequence(rng.integers(2**32)).spawn(len(acqs))):
            acq_rng = np.random.default_rng(acq_seed)
            name = acq.raw_name(acq_rng)
            rtt_path = out / schema.rtt_name_from_raw(name)
            raw_path = raw_dir / name
            wanted = [rtt_path] + ([raw_path] if raw else []) + \
                ([truth_path(out, rtt_path.name)] if truth else [])
            ours |= {rtt_path, raw_path}
            if rtt_path.exists():  # kept only when it is the scene these options make (its size, its bytes)
                with Scene(rtt_path, validate=False) as kept:
                    if kept.shape != tuple(size):
                        raise ValueError(f"{rtt_path}: already there with {kept.shape[0]} x {kept.shape[1]} pixels, "
                                         f"not {size[0]} x {size[1]}: write into another --out, or delete it")
            for path in wanted:
                if path.exists():
                    _check_kept(path, out, written)
            if all(p.exists() for p in wanted) and not truth:
                paths.append(rtt_path)
                bar.update()
                continue
            rendered = render(region, acq, spacing, acq_rng, chart_km, earlier)
            rtt = rtt_from_raw(Scene.from_dataset(rendered.ds, name, kind="raw"), factor=factor)
            rtt.attrs["synthetic_options"] = json.dumps(options, sort_keys=True)
            if not all(p.exists() for p in wanted):
                if raw:
                    write_scene(rendered.ds, raw_path)
                write_scene(rtt, rtt_path)
                if truth:
                    write_scene(truth_dataset(rendered, rtt, factor, earlier), truth_path(out, rtt_path.name))
                written |= {str(p.relative_to(out)): file_sha256(p) for p in wanted}
                write_text(out / MANIFEST, json.dumps(written, indent=1, sort_keys=True))
            earlier.append(rendered.observed)
            paths.append(rtt_path)
            bar.update()
    bar.close()
    others = sorted(p.name for p in {*out.glob("*_prep.nc"), *(raw_dir.glob("*.nc") if raw else ())} - ours)
    if others:
        raise ValueError(f"{out}: also holds {len(others)} files of regions this call does not write (written with a "
                         f"larger --regions than {regions}): {logs.first_few(others, 10)}: write into another --out, "
                         "or run with that --regions")
    return paths


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Write synthetic AI4Arctic scenes (ready-to-train, optionally raw).", epilog=logs.EPILOG)
    parser.add_argument("--out", type=out_folder, required=True, help="output directory")
    parser.add_argument("--regions", type=int, default=2, help=f"1..{len(REGION_CATALOGUE)}")
    parser.add_argument("--scenes-per-region", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 800), metavar=("H", "W"),
                        help="RTT scene size in 80 m pixels (lines samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true",
                        help="also write raw 40 m files (with polygon egg codes) under OUT/raw")
    parser.add_argument("--truth", action="store_true",
                        help="also write the hidden state and history-decisive masks under OUT/truth "
                             "(for scoring and diagnosis; never a model input)")
    logs.add_quiet(parser)
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, not {args.seed}")
    if other := other_stage(args.out, own=(SCENES,)):  # another stage's folder, or one inside a store or weights
        parser.error(f"--out {args.out}: {other}, not a folder of scenes: give another folder")
    if args.out.is_dir() and (theirs := not_its_own(args.out)):  # someone's files
        parser.error(f"{args.out}: holds {logs.first_few(theirs, 5)}, which seaice synthetic does not write (a "
                     "patch store, a run, an export or charts?): write into a new or empty folder, or one of "
                     "synthetic scenes")
    t0 = time.perf_counter()
    with folder_lock(args.out, "writing synthetic scenes"):  # one writer per output folder
        there = set(args.out.glob("*_prep.nc"))
        truths = set((args.out / TRUTH_DIR).glob("*_truth.nc"))
        try:
            paths = generate(args.out, args.regions, args.scenes_per_region, tuple(args.size), args.seed,
                             args.raw, args.truth, progress=not args.quiet)
        except ValueError as err:
            parser.error(str(err))
    kept = len(set(paths) & there)
    new_truths = len(set((args.out / TRUTH_DIR).glob("*_truth.nc")) - truths)
    print(f"{len(paths)} scenes in {args.out} ({len(paths) - kept} written, {kept} already there, kept"
          + (f"; {new_truths} truth files written" if new_truths else "") + f") in {time.perf_counter() - t0:.1f} s")
    return 0
