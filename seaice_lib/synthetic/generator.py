"""Synthetic AI4Arctic scenes: files in the exact dataset schema, from a physically motivated model.

Per region a drifting ice state, charts as polygons with SIGRID-3 egg codes, acquisitions with
their own footprints and tie points, and SAR, AMSR2 and ERA5 rendered from that state; written as
raw files and made ready-to-train by :func:`seaice_lib.data.prepare.rtt_from_raw`. Deterministic for
a seed. What each modality carries and why: docs/synthetic.md. CLI: ``seaice synthetic --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage, special
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from .. import schema
from ..data import icechart
from ..data.geo import lonlat_to_xy, xy_to_lonlat
from ..data.prepare import rtt_from_raw, write_scene
from ..data.scene import Scene
from ..grid import blocks

# --- physical constants of the model ------------------------------------------------------------
WATER_FREEZING_K = 271.35
NEW_ICE_DAYS, YOUNG_ICE_DAYS = 4.0, 15.0  # ice age limits of new and young ice
# stage classes of the SOD chart
WATER, NEW, YOUNG, THIN_FYI, THICK_FYI, OLD = range(6)
# HH and HV backscatter (dB) at 35 degrees incidence, and HH slope (dB/degree), per SOD class
ICE_HH_DB = np.array([np.nan, -19.0, -18.6, -16.0, -13.5, -9.5])
ICE_HV_DB = np.array([np.nan, -27.5, -27.3, -25.0, -23.0, -18.5])
ICE_SLOPE_DB = np.array([np.nan, -0.25, -0.25, -0.22, -0.2, -0.15])
WET_SNOW_DB = (-3.0, -4.0)  # HH, HV darkening of ice under melt
# floe classes of the FLOE chart and the length scale (m) of their SAR pattern (0: sub-pixel)
FLOE_SCALE_M = np.array([0.0, 0.0, 60.0, 300.0, 1200.0, 4000.0, 0.0])
ENL_40M = 2.7  # equivalent number of looks of Sentinel-1 EW GRDM speckle at 40 m pixels
EW_INCIDENCE = (19.0, 47.0)  # Sentinel-1 EW swath, near to far range (degrees)
N_SUBSWATHS = 5
# AMSR2: emissivities (water, first-year ice, old ice) per channel, footprint FWHM (km), and
# atmospheric opacities (oxygen at nadir, per kg/m^2 of water vapour, per kg/m^2 of cloud liquid)
AMSR2_FREQS = ("6_9", "7_3", "10_7", "18_7", "23_8", "36_5", "89_0")
EMISSIVITY = {  # freq -> ((water H, water V), (FYI H, FYI V), (old H, old V))
    "6_9": ((0.29, 0.57), (0.88, 0.96), (0.85, 0.94)),
    "7_3": ((0.29, 0.57), (0.88, 0.96), (0.85, 0.94)),
    "10_7": ((0.30, 0.59), (0.88, 0.96), (0.84, 0.92)),
    "18_7": ((0.33, 0.62), (0.88, 0.95), (0.80, 0.88)),
    "23_8": ((0.35, 0.64), (0.87, 0.95), (0.77, 0.85)),
    "36_5": ((0.39, 0.68), (0.86, 0.93), (0.72, 0.80)),
    "89_0": ((0.50, 0.78), (0.80, 0.86), (0.65, 0.72)),
}
FOOTPRINT_KM = {"6_9": 45, "7_3": 45, "10_7": 30, "18_7": 16, "23_8": 14, "36_5": 8, "89_0": 4}
OPACITY = {  # (oxygen, per kg/m^2 vapour, per kg/m^2 liquid)
    "6_9": (0.011, 0.0001, 0.012), "7_3": (0.011, 0.0001, 0.014), "10_7": (0.012, 0.0003, 0.028),
    "18_7": (0.016, 0.0022, 0.085), "23_8": (0.020, 0.0078, 0.12), "36_5": (0.035, 0.0032, 0.27),
    "89_0": (0.070, 0.013, 1.2),
}
AMSR2_INCIDENCE = np.deg2rad(55.0)
NEDT_K = 0.5


@dataclass(frozen=True)
class RegionSpec:
    """A chart region: where it is, its season, and the character of its ice."""

    service: str
    name: str
    lat: float
    lon: float
    month: int
    t2m_c: float  # mean 2 m air temperature over the acquisitions (deg C)
    old_ice: float  # share of the pack that is old (multi-year) ice
    land_bearing: float  # direction (deg, from map +x) towards the coast
    pack_bearing: float  # direction (deg) towards the pack ice
    land_share: float  # target share of the region that is land

    @property
    def melting(self) -> bool:
        return self.t2m_c > -1.0


REGION_CATALOGUE = (
    RegionSpec("dmi", "CentralEast", 72.0, -19.0, 11, -16.0, 0.50, 200, 330, 0.18),
    RegionSpec("cis", "SGRDIFOXE", 66.5, -79.0, 11, -14.0, 0.0, 20, 110, 0.15),
    RegionSpec("dmi", "SouthEast", 65.5, -37.0, 3, -7.0, 0.35, 170, 300, 0.20),
    RegionSpec("cis", "SGRDINFLD", 51.5, -54.0, 2, -8.0, 0.0, 250, 80, 0.12),
    RegionSpec("dmi", "Qaanaaq", 77.0, -70.0, 12, -22.0, 0.20, 60, 210, 0.22),
    RegionSpec("cis", "SGRDIEA", 74.0, -78.0, 10, -11.0, 0.40, 300, 150, 0.15),
    RegionSpec("dmi", "CapeFarewell", 59.8, -44.0, 6, 1.5, 0.30, 120, 260, 0.15),
    RegionSpec("cis", "SGRDIHA", 60.0, -84.0, 7, 3.0, 0.0, 0, 180, 0.10),
    RegionSpec("dmi", "NorthEast", 78.0, -12.0, 1, -24.0, 0.60, 180, 20, 0.15),
    RegionSpec("cis", "SGRDIWA", 71.0, -128.0, 10, -9.0, 0.40, 90, 250, 0.12),
    RegionSpec("dmi", "NorthWest", 75.0, -60.0, 4, -15.0, 0.25, 20, 200, 0.18),
    RegionSpec("cis", "SGRDIMID", 69.0, -105.0, 5, -6.0, 0.05, 250, 70, 0.15),
)


# --- random fields ------------------------------------------------------------------------------
def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px`` pixels."""
    white = rng.standard_normal(shape).astype(np.float32)
    if scale_px <= 0.5:
        return white
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    spectrum = np.fft.rfft2(white) * np.exp(-2 * (np.pi * scale_px) ** 2 * (kx**2 + ky**2))
    field = np.fft.irfft2(spectrum, s=shape).astype(np.float32)
    return (field - field.mean()) / (field.std() + 1e-12)


def _unit(bearing_deg: float) -> np.ndarray:
    return np.array([np.cos(np.deg2rad(bearing_deg)), np.sin(np.deg2rad(bearing_deg))])


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


# --- the region's ice ---------------------------------------------------------------------------
@dataclass
class IceState:
    """Ice on the region grid at one time: each field (ny, nx)."""

    conc: np.ndarray  # ice concentration 0..1 (grid-cell mean)
    stage: np.ndarray  # SOD class of the ice (WATER where none)
    floe: np.ndarray  # FLOE class of the ice
    fast: np.ndarray  # bool, landfast ice


class Region:
    """Latent fields of one region on a polar-stereographic grid, and their evolution in time."""

    def __init__(self, spec: RegionSpec, scene_km: float, res_m: float, days: float,
                 rng: np.random.Generator):
        """Fields on a grid of ``res_m`` metres around the region centre, large enough for scenes
        of diagonal ``scene_km`` placed near the centre and for ``days`` of drift; feature sizes
        scale with ``scene_km`` so that small test scenes hold every kind of ice."""
        self.spec, self.res = spec, res_m
        cx, cy = lonlat_to_xy(spec.lon, spec.lat)
        self.centre = (float(cx), float(cy))
        self.drift = _unit(spec.pack_bearing + 90) * rng.uniform(0.02, 0.06) * scene_km * 1000 / 3
        extent_m = 1.6 * scene_km * 1000 + 2 * np.linalg.norm(self.drift) * days
        n = int(np.ceil(extent_m / res_m)) | 1
        self.n = n
        self.x0 = self.centre[0] - res_m * (n - 1) / 2
        self.y0 = self.centre[1] - res_m * (n - 1) / 2
        ax = (np.arange(n) - (n - 1) / 2) * res_m / 1000
        gx, gy = np.meshgrid(ax, ax)  # km from the centre, rows = y
        km = res_m / 1000
        L = scene_km
        near = np.hypot(gx, gy) < L / 2  # where scenes fall

        def field(scale_km: float) -> np.ndarray:
            return gaussian_field(rng, (n, n), scale_km / km)

        def along(bearing: float) -> np.ndarray:
            u = _unit(bearing)
            return gx * u[0] + gy * u[1]

        # land: a coast on one side, rugged, with islands; its share is set where scenes fall
        land_score = along(spec.land_bearing) / L * 2.5 + 0.6 * field(L / 6) + 0.25 * field(L / 30)
        self.land = land_score > np.quantile(land_score[near], 1 - spec.land_share)
        self.dist_land_km = (ndimage.distance_transform_edt(~self.land) * km).astype(np.float32)
        # analysts chart their region, not everything in the swath: a half-plane stays uncharted
        self.charted = along(spec.land_bearing + rng.choice([90, -90])) < rng.uniform(-0.1, 0.35) * L
        # ice-edge coordinate (km, grows towards open water) in the drifting frame
        self.edge_d = (along(spec.pack_bearing + 180) + 0.08 * L * field(L / 4)).astype(np.float32)
        sea_near = ~self.land & near
        self.edge0 = float(np.quantile(self.edge_d[sea_near], rng.uniform(0.25, 0.38)))
        self.miz_km = rng.uniform(0.04, 0.08) * L * (2.0 if spec.melting else 1.0)
        self.freeze_km = 0.0 if spec.melting else rng.uniform(0.06, 0.1) * L
        self.fast_km = 0.02 * L
        # freezing zone: the day each spot freezes, later away from the pack, patchy
        frac = (self.edge_d - self.edge0) / max(self.freeze_km, 1e-6)
        self.freeze_day = (-6 + (days + 6) * frac + 0.4 * (days + 6) * field(L / 25)
                           ).astype(np.float32)
        self.old = field(L / 5) > special.ndtri(1 - max(spec.old_ice, 1e-6))
        self.thick = field(L / 6) > special.ndtri(0.12)  # most first-year ice is thick
        self.pack_conc = np.clip(0.96 + 0.06 * field(L / 5), 0.0, 1.0).astype(np.float32)
        self.new_conc = np.clip(0.8 + 0.15 * field(L / 12), 0.3, 1.0).astype(np.float32)
        # grounded icebergs near the coast (DMI, Greenland): earth-fixed bright targets
        self.bergs = np.zeros((0, 2))
        if spec.service == "dmi":
            coast = np.argwhere((self.dist_land_km > 1) & (self.dist_land_km < 0.05 * L) & near)
            pick = coast[rng.choice(len(coast), size=min(len(coast), 40), replace=False)]
            self.bergs = np.column_stack([self.x0 + pick[:, 1] * res_m, self.y0 + pick[:, 0] * res_m])

    def grid_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) on the region grid of map positions."""
        return (np.asarray(y) - self.y0) / self.res, (np.asarray(x) - self.x0) / self.res

    def state(self, day: float) -> IceState:
        """The ice at ``day`` (days since the first acquisition), on the region grid."""
        shift = self.drift * day / self.res  # cells the ice has moved
        rows, cols = np.mgrid[0:self.n, 0:self.n].astype(np.float32)
        src = (rows - shift[1], cols - shift[0])

        def lagrangian(a: np.ndarray, order: int = 1) -> np.ndarray:
            return ndimage.map_coordinates(a, src, order=order, mode="nearest")

        d = lagrangian(self.edge_d)
        into_pack = self.edge0 - d  # km inside the pack edge
        pack = into_pack > 0
        miz = np.clip(into_pack / self.miz_km, 0, 1)
        conc = np.where(pack, lagrangian(self.pack_conc) * miz, 0.0)
        stage = np.where(lagrangian(self.old.astype(np.float32), 0) > 0.5, OLD,
                         np.where(lagrangian(self.thick.astype(np.float32), 0) > 0.5, THICK_FYI,
                                  THIN_FYI))
        stage = np.where(pack, stage, WATER)
        floe = np.select([into_pack < 0.3 * self.miz_km, into_pack < self.miz_km,
                          into_pack < 1.5 * self.miz_km], [2, 3, 4], 5)
        floe = np.where(stage == OLD, np.maximum(floe, 4), floe)
        if self.freeze_km > 0:
            age = day - lagrangian(self.freeze_day)
            frozen = ~pack & (d < self.edge0 + self.freeze_km) & (age > 0)
            young = age >= NEW_ICE_DAYS
            new_stage = np.where(age < NEW_ICE_DAYS, NEW, np.where(age < YOUNG_ICE_DAYS, YOUNG,
                                                                    THIN_FYI))
            new_conc = np.clip(lagrangian(self.new_conc) + 0.03 * np.maximum(age, 0), 0, 1)
            conc = np.where(frozen, new_conc, conc)
            stage = np.where(frozen, new_stage, stage)
            floe = np.where(frozen, np.where(young, 2, 1), floe)
        land = self.land
        fast = pack & (self.dist_land_km < self.fast_km) & ~land
        conc = np.where(land, 0.0, conc).astype(np.float32)
        stage = np.where(conc > 0, stage, WATER).astype(np.uint8)
        floe = np.where(conc > 0, floe, 0).astype(np.uint8)
        return IceState(conc, stage, floe, fast)


# --- charts -------------------------------------------------------------------------------------
def draw_chart(region: Region, ice: IceState, rng: np.random.Generator, spacing_km: float
               ) -> tuple[np.ndarray, list[str]]:
    """An analyst's chart of ``ice``: polygon ids on the region grid (-1 = none) and egg codes."""
    n = region.n
    n_seeds = max(4, int((n * region.res / 1000 / spacing_km) ** 2))
    seeds = rng.uniform(0, n, size=(n_seeds, 2))
    rows, cols = np.mgrid[0:n, 0:n]
    _, cell = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]), workers=1)
    # analysts follow the ice edge and the edge of the consolidated pack
    level = np.digitize(ndimage.uniform_filter(ice.conc, size=5), [0.08, 0.9])
    raw_ids = cell.reshape(n, n) * 3 + level
    raw_ids = np.where(region.land | ~region.charted, -1, raw_ids)
    _, ids = np.unique(raw_ids, return_inverse=True)
    ids = ids.reshape(n, n) - (1 if (raw_ids < 0).any() else 0)  # -1 stays -1, others 0..k-1
    n_poly = int(ids.max()) + 1
    inside = ids >= 0
    flat = ids[inside]
    area = np.bincount(flat, minlength=n_poly).astype(float)
    conc = np.bincount(flat, ice.conc[inside], n_poly) / np.maximum(area, 1)
    # partial concentration of each (stage, floe) pair in each polygon
    pair = ice.stage[inside].astype(int) * 7 + ice.floe[inside]
    partial = np.bincount(flat * 42 + pair, ice.conc[inside], n_poly * 42).reshape(n_poly, 6, 7)
    partial /= np.maximum(area, 1)[:, None, None]
    fast = np.bincount(flat, ice.fast[inside], n_poly) / np.maximum(area, 1)
    berg_cells = np.zeros(n_poly)
    if len(region.bergs):
        r, c = region.grid_index(region.bergs[:, 0], region.bergs[:, 1])
        bid = ids[np.clip(np.round(r).astype(int), 0, n - 1), np.clip(np.round(c).astype(int), 0, n - 1)]
        berg_cells = np.bincount(bid[bid >= 0], minlength=n_poly)

    rows_out = []
    for p in range(n_poly):
        ct_class = int(np.clip(np.round(conc[p] * 10), 0, 10))
        if ct_class == 0 and berg_cells[p] >= 3 and rng.random() < 0.05:  # bergy water
            rows_out.append(icechart.egg_code_row(p + 1, 10, [(10, 98, 9)], "I"))
            continue
        if ct_class == 0:
            rows_out.append(icechart.egg_code_row(p + 1, int(rng.choice([0, 1])), (),
                                                  str(rng.choice(["W", "w"]))))
            continue
        ct = 91 if ct_class == 10 and conc[p] < 0.985 else icechart.SIC_CODE_FOR_CLASS[ct_class]
        stage_conc = partial[p].sum(axis=1)
        order = [s for s in np.argsort(-stage_conc) if s != WATER and stage_conc[s] >= 0.05][:3]
        partials = []
        for s in order:
            floe_cls = int(np.argmax(partial[p, s]))
            form = 8 if fast[p] > 0.5 else icechart.FLOE_CODE_FOR_CLASS[floe_cls]
            c10 = int(np.clip(np.round(stage_conc[s] * 10), 1, 10))
            partials.append((icechart.SIC_CODE_FOR_CLASS[c10], icechart.SOD_CODE_FOR_CLASS[s], form))
        if berg_cells[p] >= 2 and len(partials) < 3:
            partials.append((10, 98, 9))  # glacier ice in bergs
        if len(partials) == 1 and rng.random() < 0.5:
            partials[0] = (icechart.NOT_FILLED,) + partials[0][1:]  # CA left empty: CA := CT
        rows_out.append(icechart.egg_code_row(p + 1, ct, partials, "I"))
    polygon_ids = np.where(inside, ids + 1, -1)
    return polygon_ids, icechart.format_polygon_codes(rows_out)


# --- rendering ----------------------------------------------------------------------------------
def _db(linear: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(linear, 1e-12))


def _lin(db: np.ndarray) -> np.ndarray:
    return 10 ** (np.asarray(db) / 10)


def _weather(acq: Acquisition, rng: np.random.Generator, conc_cells: np.ndarray
             ) -> dict[str, np.ndarray]:
    """ERA5 fields (physical units) on the scene's 2 km cells, smooth over tens of km."""
    shape = conc_cells.shape
    scale = max(shape) / 3 + 1
    speed = float(rng.lognormal(np.log(7.0), 0.45))  # synoptic wind of the day (m/s)
    direction = rng.uniform(0, 2 * np.pi)
    u = speed * np.cos(direction) * (1 + 0.25 * gaussian_field(rng, shape, scale))
    v = speed * np.sin(direction) * (1 + 0.25 * gaussian_field(rng, shape, scale))
    u_rot, v_rot = acq.rotate_to_track(u, v)
    t2m = 273.15 + acq.region.t2m_c + rng.normal(0, 2) + 1.5 * gaussian_field(rng, shape, scale) \
        - 3.0 * conc_cells * (acq.region.t2m_c < 0)
    skt = np.where(conc_cells > 0.5, t2m - 1.5, np.maximum(t2m, WATER_FREEZING_K))
    tcwv = np.clip(8.0 * np.exp(0.07 * (t2m - 273.15)) * (1 + 0.2 * gaussian_field(rng, shape, scale)),
                   0.3, None)
    tclw = np.clip(0.06 * (gaussian_field(rng, shape, scale / 2) + rng.normal(0, 0.6)), 0, None)
    return {"u10m_rotated": u_rot, "v10m_rotated": v_rot, "t2m": t2m, "skt": skt, "tcwv": tcwv,
            "tclw": tclw}


def _amsr2(rng: np.random.Generator, conc: np.ndarray, old_share: np.ndarray, new_share: np.ndarray,
           wx: dict[str, np.ndarray], cell_km: float) -> dict[str, np.ndarray]:
    """AMSR2 brightness temperatures (K) per channel on the 2 km cells."""
    wind = np.hypot(wx["u10m_rotated"], wx["v10m_rotated"])
    t_ice = 0.4 * wx["skt"] + 0.6 * WATER_FREEZING_K  # emitting layer under the snow
    t_atm = wx["t2m"] - 8.0
    out = {}
    for freq in AMSR2_FREQS:
        (wh, wv), (fh, fv), (oh, ov) = EMISSIVITY[freq]
        oxygen, k_vapour, k_liquid = OPACITY[freq]
        tau = np.exp(-(oxygen + k_vapour * wx["tcwv"] + k_liquid * wx["tclw"]) / np.cos(AMSR2_INCIDENCE))
        sigma_cells = FOOTPRINT_KM[freq] / 2.355 / cell_km
        for pol, e_w, e_fyi, e_old, foam in (("h", wh, fh, oh, 0.004), ("v", wv, fv, ov, 0.002)):
            e_water = np.minimum(e_w + foam * np.maximum(wind - 5, 0), 0.95)
            e_new = e_water + 0.7 * (e_fyi - e_water)
            e_ice = e_fyi * (1 - old_share - new_share) + e_old * old_share + e_new * new_share
            surface = conc * e_ice * t_ice + (1 - conc) * e_water * WATER_FREEZING_K
            emissivity = conc * e_ice + (1 - conc) * e_water
            tb = tau * surface + (1 - tau) * t_atm * (1 + (1 - emissivity) * tau)
            tb = ndimage.gaussian_filter(tb, sigma_cells, mode="nearest")
            out[f"btemp_{freq}{pol}"] = tb + rng.normal(0, NEDT_K, tb.shape)
    return out


def render_raw(region: Region, acq: Acquisition, spacing: float, rng: np.random.Generator,
               chart_spacing_km: float) -> xr.Dataset:
    """One acquisition as a raw-format dataset at ``spacing`` metres (physical units)."""
    spec = region.spec
    scale = schema.RTT_PIXEL_SPACING_M / spacing
    h, w = int(acq.shape[0] * scale), int(acq.shape[1] * scale)
    cell = int(round(schema.GRID2KM_SPACING_M / spacing))
    lines, samples = np.arange(h), np.arange(w)
    x, y = acq.pixel_xy(lines, samples, spacing)
    gr, gc = region.grid_index(x, y)

    ice = region.state(acq.day)
    polygon_ids, codes = draw_chart(region, ice, rng, chart_spacing_km)

    def sample(field: np.ndarray, order: int = 1) -> np.ndarray:
        return ndimage.map_coordinates(field, (gr, gc), order=order, mode="nearest").astype(np.float32)

    conc = np.clip(sample(ice.conc), 0, 1)
    stage = sample(ice.stage, 0).astype(np.int64)
    floe = sample(ice.floe, 0).astype(np.int64)
    land = sample(region.land.astype(np.float32), 0) > 0.5
    dist_km = sample(region.dist_land_km)
    polygon = sample(polygon_ids.astype(np.float32), 0)

    # ice fraction per pixel: resolved floes where floes are larger than a pixel, else a mix
    ice_frac = conc.copy()
    for cls in (2, 3, 4, 5):
        scale_px = FLOE_SCALE_M[cls] / spacing
        if scale_px < 1:
            continue
        where = floe == cls
        if where.any():
            pattern = special.ndtr(gaussian_field(rng, (h, w), scale_px))
            ice_frac = np.where(where, (pattern < conc).astype(np.float32), ice_frac)

    # 2 km grid: ERA5 and AMSR2 from cell means of the pixel-scale ice
    conc_cells = blocks(ice_frac, cell).mean(axis=(-3, -1))
    wx = _weather(acq, rng, conc_cells)
    stage_share = {s: blocks(ice_frac * (stage == s), cell).mean(axis=(-3, -1)) / np.maximum(conc_cells, 1e-6)
                   for s in (NEW, YOUNG, OLD)}
    tb = _amsr2(rng, conc_cells, stage_share[OLD], stage_share[NEW] + stage_share[YOUNG], wx,
                schema.GRID2KM_SPACING_M / 1000)

    # SAR: incidence across the swath, wind over water from ERA5 (bilinear) with gusts
    frac_across = (samples + 0.5) / w
    if not acq.ascending:
        frac_across = 1 - frac_across
    incidence = np.broadcast_to(EW_INCIDENCE[0] + (EW_INCIDENCE[1] - EW_INCIDENCE[0]) * frac_across,
                                (h, w)).astype(np.float32)
    pos_r = (lines + 0.5) / cell - 0.5
    pos_c = (samples + 0.5) / cell - 0.5
    coords = np.meshgrid(pos_r, pos_c, indexing="ij")
    wind = np.hypot(*(ndimage.map_coordinates(wx[k], coords, order=1, mode="nearest")
                      for k in ("u10m_rotated", "v10m_rotated")))
    wind = wind * (1 + 0.15 * gaussian_field(rng, (h, w), 1000 / spacing))
    d_inc = incidence - 35.0
    water_hh = np.minimum(-24.0 + 1.3 * np.maximum(wind - 2.5, 0), -9.0) - 0.55 * d_inc
    water_hv = -31.0 + 0.35 * np.maximum(wind - 4.0, 0) - 0.1 * d_inc
    st = np.where(stage == WATER, THICK_FYI, stage)  # a stage for mixed pixels at the ice edge
    texture = 1.2 * gaussian_field(rng, (h, w), 1500 / spacing)
    ice_hh = ICE_HH_DB[st] + ICE_SLOPE_DB[st] * d_inc + texture
    ice_hv = ICE_HV_DB[st] + 0.8 * texture
    ridged = (st == THICK_FYI) | (st == OLD)
    ridges = np.abs(gaussian_field(rng, (h, w), 250 / spacing)) < 0.08
    ice_hh = ice_hh + 4.0 * (ridged & ridges)
    ice_hv = ice_hv + 3.0 * (ridged & ridges)
    if spec.melting:
        ice_hh, ice_hv = ice_hh + WET_SNOW_DB[0], ice_hv + WET_SNOW_DB[1]
    hh = ice_frac * _lin(ice_hh) + (1 - ice_frac) * _lin(water_hh)
    hv = ice_frac * _lin(ice_hv) + (1 - ice_frac) * _lin(water_hv)
    terrain = 3.0 * gaussian_field(rng, (h, w), 800 / spacing)
    hh = np.where(land, _lin(-7.0 + terrain), hh)
    hv = np.where(land, _lin(-15.0 + terrain), hv)
    if len(region.bergs):  # grounded icebergs: bright point targets, fixed on the map
        r, c = _map_to_pixel(acq, region.bergs[:, 0], region.bergs[:, 1], spacing)
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        hh[r[ok], c[ok]] = _lin(2.0)
        hv[r[ok], c[ok]] = _lin(-6.0)
    looks = ENL_40M * (spacing / schema.RAW_PIXEL_SPACING_M) ** 2
    hh = hh * rng.gamma(looks, 1 / looks, (h, w))
    hv = hv * rng.gamma(looks, 1 / looks, (h, w))
    # HV: residual thermal noise, scalloped per sub-swath, with steps between sub-swaths
    sub = np.minimum((frac_across * N_SUBSWATHS).astype(int), N_SUBSWATHS - 1)
    within = frac_across * N_SUBSWATHS - sub
    steps = rng.normal(0, 0.8, N_SUBSWATHS)
    nesz = _lin(-33.0 + 3.0 * (2 * within - 1) ** 2 + steps[sub])
    hh_db, hv_db = _db(hh), _db(hv + nesz[None, :])

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
    return _raw_dataset(acq, spacing, (h, w), hh_db, hv_db, incidence, zone, polygon, codes,
                        {**tb, **wx})


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


# --- generation ---------------------------------------------------------------------------------
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


def generate(out: str | Path, regions: int = 2, scenes_per_region: int = 3,
             size: tuple[int, int] = (800, 800), seed: int = 0, raw: bool = False,
             progress: bool = True) -> list[Path]:
    """Write ``regions x scenes_per_region`` RTT scenes (and raw scenes with ``raw``) into ``out``.

    Returns the RTT paths. Raw files are rendered at 40 m and prepared to 80 m; without ``raw`` the
    scenes are rendered at 80 m directly. Files already present are kept (reruns are idempotent).
    """
    if not 1 <= regions <= len(REGION_CATALOGUE):
        raise ValueError(f"regions must be 1..{len(REGION_CATALOGUE)}, not {regions}")
    if min(size) < 2 * schema.CELL_80M:
        raise ValueError(f"scenes must be at least {2 * schema.CELL_80M} pixels a side, not {size}")
    out = Path(out)
    raw_dir = out / "raw"
    spacing = schema.RAW_PIXEL_SPACING_M if raw else schema.RTT_PIXEL_SPACING_M
    root = np.random.SeedSequence(seed)
    paths = []
    bar = tqdm(total=regions * scenes_per_region, desc="synthetic scenes", unit="scene",
               disable=not progress)
    for spec, region_seed in zip(REGION_CATALOGUE[:regions], root.spawn(regions)):
        rng = np.random.default_rng(region_seed)
        year = 2018 + int(rng.integers(0, 4))
        acqs = plan_acquisitions(spec, scenes_per_region, size, year, rng)
        scene_extent = np.hypot(*size) * schema.RTT_PIXEL_SPACING_M
        res = max(4 * schema.RTT_PIXEL_SPACING_M, scene_extent / 1500)
        region = Region(spec, scene_extent / 1000, res, acqs[-1].day + 1, rng)
        chart_km = max(4.0, scene_extent / 1000 / 7)
        for acq, acq_seed in zip(acqs, np.random.SeedSequence(rng.integers(2**32)).spawn(len(acqs))):
            acq_rng = np.random.default_rng(acq_seed)
            name = acq.raw_name(acq_rng)
            rtt_path = out / schema.rtt_name_from_raw(name)
            raw_path = raw_dir / name
            if rtt_path.exists() and (raw_path.exists() or not raw):
                paths.append(rtt_path)
                bar.update()
                continue
            ds = render_raw(region, acq, spacing, acq_rng, chart_km)
            if raw:
                write_scene(ds, raw_path)
            rtt = rtt_from_raw(Scene.from_dataset(ds, name, kind="raw"), factor=2 if raw else 1)
            paths.append(write_scene(rtt, rtt_path))
            bar.update()
    bar.close()
    return paths


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Write synthetic AI4Arctic scenes (ready-to-train, optionally raw).")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--regions", type=int, default=2, help=f"1..{len(REGION_CATALOGUE)}")
    parser.add_argument("--scenes-per-region", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 800), metavar=("H", "W"),
                        help="RTT scene size in 80 m pixels (lines samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true",
                        help="also write raw 40 m files (with polygon egg codes) under OUT/raw")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = generate(args.out, args.regions, args.scenes_per_region, tuple(args.size), args.seed,
                         args.raw, progress=not args.quiet)
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {len(paths)} scenes to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
