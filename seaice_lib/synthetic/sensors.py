"""What the sensors see of the hidden world: ERA5 (a coarse, day-old view of the ice), AMSR2 (a
blurred, weather- and snow-affected view at its own time) and Sentinel-1 EW SAR (sharp, but
ambiguous between thin-ice types and wind-roughened water). Physical units throughout; the facts
behind each number are in docs/synthetic.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage, special

from .world import NEW, OLD, THICK_FYI, THIN_FYI, WATER, YOUNG, gaussian_field

WATER_FREEZING_K = 271.35

# --- ERA5 ---------------------------------------------------------------------------------------
ERA5_GRID_KM = 31.0  # ERA5's grid spacing
ERA5_SMOOTHING_KM = 30.0  # Gaussian sigma: the model resolves features of several grid lengths
ERA5_ICE_LAG_DAYS = 1.0  # ERA5's sea ice is the previous day's analysis
T2M_ICE_COOLING_K = 3.0  # air over ice is colder than over open water in the cold season

# --- AMSR2 --------------------------------------------------------------------------------------
AMSR2_FREQS = ("6_9", "7_3", "10_7", "18_7", "23_8", "36_5", "89_0")
EMISSIVITY = {  # freq -> ((water H, water V), (first-year ice H, V), (old ice H, V)), calm water
    "6_9": ((0.29, 0.57), (0.88, 0.96), (0.85, 0.94)),
    "7_3": ((0.29, 0.57), (0.88, 0.96), (0.85, 0.94)),
    "10_7": ((0.30, 0.59), (0.88, 0.96), (0.84, 0.92)),
    "18_7": ((0.33, 0.62), (0.88, 0.95), (0.80, 0.88)),
    "23_8": ((0.35, 0.64), (0.87, 0.95), (0.77, 0.85)),
    "36_5": ((0.39, 0.68), (0.86, 0.93), (0.72, 0.80)),
    "89_0": ((0.50, 0.78), (0.80, 0.86), (0.65, 0.72)),
}
# standard deviation of first-year-ice H emissivity from snow and surface properties (V: 0.6x,
# old ice: 1.5x); it grows with frequency, as volume scattering in snow does
EMISSIVITY_STD = {"6_9": 0.012, "7_3": 0.012, "10_7": 0.014, "18_7": 0.02, "23_8": 0.022,
                  "36_5": 0.03, "89_0": 0.045}
FOOTPRINT_KM = {"6_9": 45, "7_3": 45, "10_7": 30, "18_7": 16, "23_8": 14, "36_5": 8, "89_0": 4}
OPACITY = {  # (oxygen at nadir, per kg/m^2 of water vapour, per kg/m^2 of cloud liquid)
    "6_9": (0.011, 0.0001, 0.012), "7_3": (0.011, 0.0001, 0.014), "10_7": (0.012, 0.0003, 0.028),
    "18_7": (0.016, 0.0022, 0.085), "23_8": (0.020, 0.0078, 0.12), "36_5": (0.035, 0.0032, 0.27),
    "89_0": (0.070, 0.013, 1.2),
}
NEDT_K = {"6_9": 0.34, "7_3": 0.43, "10_7": 0.7, "18_7": 0.7, "23_8": 0.6, "36_5": 0.7, "89_0": 1.2}
AMSR2_INCIDENCE = np.deg2rad(55.0)
AMSR2_TIME_OFFSET_H = 6.0  # the nearest AMSR2 swath is up to this far from the SAR acquisition
CLOUD_SCALE_KM = 8.0  # cloud liquid water varies at scales ERA5 does not resolve

# --- Sentinel-1 EW ------------------------------------------------------------------------------
# HH and HV (dB) at 35 degrees and their incidence slopes (dB/degree) per SOD class. New and young
# ice share one signature: nilas is dark, frost flowers and rafting make patches bright, and both
# overlap thin first-year ice
ICE_HH_DB = np.array([np.nan, -18.5, -18.5, -16.5, -14.0, -10.0])
ICE_HV_DB = np.array([np.nan, -27.5, -27.5, -26.0, -24.0, -19.0])
ICE_HH_SLOPE = np.array([np.nan, -0.25, -0.25, -0.23, -0.21, -0.15])
ICE_HV_SLOPE = np.array([np.nan, -0.12, -0.12, -0.11, -0.10, -0.06])
ICE_TEXTURE_DB = np.array([0.0, 2.5, 2.5, 2.0, 1.3, 1.3])  # patch-to-patch spread
FROST_FLOWER_SHARE, FROST_FLOWER_DB = 0.3, (7.0, 4.0)  # of new and young ice; HH, HV brightening
WET_SNOW_DB = (-3.0, -4.0)  # HH, HV darkening of ice under melt
FLOE_SCALE_M = np.array([0.0, 0.0, 60.0, 300.0, 1200.0, 4000.0, 0.0])  # SAR pattern of floe classes
ENL_40M = 2.7  # equivalent number of looks of Sentinel-1 EW GRDM speckle at 40 m pixels
EW_INCIDENCE = (19.0, 47.0)  # swath, near to far range (degrees)
N_SUBSWATHS = 5
NESZ_DB = -26.0  # EW noise floor at sub-swath centres, rising 3 dB towards their edges
NOISE_REMOVAL_ERROR = 0.15  # relative error of the noise power subtracted per sub-swath
WIND_DIRECTION = (0.1, 0.35)  # water: 1 + b1 cos(phi) + b2 cos(2 phi), phi from upwind


def _plane_waves(rng: np.random.Generator, n: int = 3) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A smooth synoptic pattern: unit-variance sum of ``n`` plane waves of 400-1200 km in the map."""
    k = 2 * np.pi / rng.uniform(400e3, 1200e3, n)
    angle, phase = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)

    def values(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        total = sum(np.sin(k[i] * (x * np.cos(angle[i]) + y * np.sin(angle[i])) + phase[i])
                    for i in range(n))
        return total * np.sqrt(2 / n)
    return values


def era5(ice_conc_lagged, cell_x: np.ndarray, cell_y: np.ndarray, t2m_c: float,
         rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ERA5 on the scene's 2 km cells (physical units, winds east/north, not yet rotated).

    Fields live on ERA5's 31 km grid, smoothed to its effective resolution, and reach the 2 km
    cells by bilinear interpolation, as the dataset's were. ``ice_conc_lagged(x, y)`` gives the
    (day-old) ice concentration ERA5 assimilated, already smoothed to its resolution.
    """
    step = ERA5_GRID_KM * 1000
    gx = np.arange(np.floor(cell_x.min() / step) - 1, np.ceil(cell_x.max() / step) + 2) * step
    gy = np.arange(np.floor(cell_y.min() / step) - 1, np.ceil(cell_y.max() / step) + 2) * step
    nx, ny = np.meshgrid(gx, gy)
    ice = np.clip(ice_conc_lagged(nx, ny), 0, 1)
    speed = float(rng.lognormal(np.log(7.0), 0.45))  # synoptic wind of the day (m/s)
    direction = rng.uniform(0, 2 * np.pi)
    u = speed * np.cos(direction) * (1 + 0.2 * _plane_waves(rng)(nx, ny))
    v = speed * np.sin(direction) * (1 + 0.2 * _plane_waves(rng)(nx, ny))
    air = 273.15 + t2m_c + rng.normal(0, 2) + 1.5 * _plane_waves(rng)(nx, ny)
    t2m = air - T2M_ICE_COOLING_K * ice * (t2m_c < 0)
    sst = np.maximum(air, WATER_FREEZING_K)
    skt = ice * np.minimum(t2m - 1.5, 273.15) + (1 - ice) * sst  # tiles mixed by ice fraction
    tcwv = np.clip(8.0 * np.exp(0.07 * (t2m - 273.15)) * (1 + 0.2 * _plane_waves(rng)(nx, ny)), 0.3, None)
    tclw = np.clip(0.05 * (_plane_waves(rng)(nx, ny) + rng.normal(0, 0.6)), 0, None)
    rows = (cell_y - gy[0]) / step
    cols = (cell_x - gx[0]) / step
    out = {}
    for name, grid in (("u", u), ("v", v), ("t2m", t2m), ("skt", skt), ("tcwv", tcwv), ("tclw", tclw)):
        out[name] = ndimage.map_coordinates(grid, (rows, cols), order=1, mode="nearest").astype(np.float32)
    return out


def atmosphere(wx: dict[str, np.ndarray], rng: np.random.Generator, cell_km: float
               ) -> dict[str, np.ndarray]:
    """The real atmosphere AMSR2 looks through: ERA5's, plus water vapour and cloud liquid water at
    scales ERA5 does not resolve (clouds of ``CLOUD_SCALE_KM``, a cloud cover of the day)."""
    shape = wx["t2m"].shape
    cover = rng.uniform(0.1, 0.7)
    clouds = gaussian_field(rng, shape, CLOUD_SCALE_KM / cell_km) - special.ndtri(1 - cover)
    liquid = wx["tclw"] + 0.12 * np.maximum(clouds, 0)
    vapour = wx["tcwv"] * (1 + 0.1 * gaussian_field(rng, shape, 20 / cell_km))
    return {"tcwv": vapour, "tclw": liquid, "t2m": wx["t2m"]}


def amsr2(rng: np.random.Generator, conc: np.ndarray, old_share: np.ndarray, new_share: np.ndarray,
          snow: np.ndarray, ponds: np.ndarray, air: dict[str, np.ndarray], skt: np.ndarray,
          wind: np.ndarray, cell_km: float) -> dict[str, np.ndarray]:
    """AMSR2 brightness temperatures (K) per channel on the 2 km cells.

    All inputs are cell fields at the AMSR2 swath's time: ice concentration, shares of old and of
    new/young ice in the ice, the snow anomaly, the melt-pond share of the ice surface, the true
    atmosphere, the skin temperature and the surface wind.
    """
    t_ice = 0.4 * skt + 0.6 * WATER_FREEZING_K  # emitting layer under the snow
    t_atm = air["t2m"] - 8.0
    out = {}
    for freq in AMSR2_FREQS:
        (wh, wv), (fh, fv), (oh, ov) = EMISSIVITY[freq]
        oxygen, k_vapour, k_liquid = OPACITY[freq]
        tau = np.exp(-(oxygen + k_vapour * air["tcwv"] + k_liquid * air["tclw"]) / np.cos(AMSR2_INCIDENCE))
        sigma_cells = FOOTPRINT_KM[freq] / 2.355 / cell_km
        std = EMISSIVITY_STD[freq]
        for pol, e_w, e_fyi, e_old, foam, spread in (("h", wh, fh, oh, 0.004, std),
                                                    ("v", wv, fv, ov, 0.002, 0.6 * std)):
            e_water = np.minimum(e_w + foam * np.maximum(wind - 5, 0), 0.95)
            e_new = e_water + 0.7 * (e_fyi - e_water)
            e_ice = (e_fyi * (1 - old_share - new_share) + e_old * old_share + e_new * new_share
                     + spread * snow * (1 + 0.5 * old_share))
            e_ice = (1 - ponds) * np.minimum(e_ice, 0.99) + ponds * e_water  # ponds are water
            surface = conc * e_ice * t_ice + (1 - conc) * e_water * WATER_FREEZING_K
            emissivity = conc * e_ice + (1 - conc) * e_water
            tb = tau * surface + (1 - tau) * t_atm * (1 + (1 - emissivity) * tau)
            tb = ndimage.gaussian_filter(tb, sigma_cells, mode="nearest")
            out[f"btemp_{freq}{pol}"] = tb + rng.normal(0, NEDT_K[freq], tb.shape)
    return out


def _db(linear: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(linear, 1e-12))


def _lin(db: np.ndarray | float) -> np.ndarray:
    return 10 ** (np.asarray(db) / 10)


def sar(rng: np.random.Generator, ice_frac: np.ndarray, stage: np.ndarray, land: np.ndarray,
        bright: np.ndarray, incidence: np.ndarray, frac_across: np.ndarray, wind_u: np.ndarray,
        wind_v: np.ndarray, look_sign: int, melting: bool, spacing: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Sentinel-1 EW HH and HV (dB, noise removed as in the dataset) of one acquisition.

    ``bright``: pixels of point targets (icebergs); ``wind_u``/``wind_v``: 10 m wind along
    samples/lines (m/s); ``look_sign``: +1 when the radar looks towards increasing samples.
    Mixed pixels combine ice and water in linear power.
    """
    h, w = ice_frac.shape
    speed = np.hypot(wind_u, wind_v) * (1 + 0.15 * gaussian_field(rng, (h, w), 1000 / spacing))
    d_inc = incidence - 35.0
    # water: rougher with wind, darker with incidence, brightest looking into the wind
    cos_phi = -look_sign * wind_u / np.maximum(np.hypot(wind_u, wind_v), 0.1)  # phi = 0: upwind
    b1, b2 = WIND_DIRECTION
    direction = 10 * np.log10(1 + b1 * cos_phi + b2 * (2 * cos_phi**2 - 1))
    water_hh = np.minimum(-24.0 + 1.3 * np.maximum(speed - 2.5, 0), -9.0) - 0.55 * d_inc + direction
    water_hv = -31.0 + 0.35 * np.maximum(speed - 4.0, 0) - 0.1 * d_inc
    st = np.where(stage == WATER, THICK_FYI, stage)  # a stage for mixed pixels at the ice edge
    patches = gaussian_field(rng, (h, w), 1500 / spacing)
    ice_hh = ICE_HH_DB[st] + ICE_HH_SLOPE[st] * d_inc + ICE_TEXTURE_DB[st] * patches
    ice_hv = ICE_HV_DB[st] + ICE_HV_SLOPE[st] * d_inc + 0.8 * ICE_TEXTURE_DB[st] * patches
    thin = (st == NEW) | (st == YOUNG)
    flowers = thin & (gaussian_field(rng, (h, w), 400 / spacing) > special.ndtri(1 - FROST_FLOWER_SHARE))
    ice_hh = ice_hh + FROST_FLOWER_DB[0] * flowers
    ice_hv = ice_hv + FROST_FLOWER_DB[1] * flowers
    ridged = (st == THICK_FYI) | (st == OLD) | ((st == THIN_FYI) & (patches > 1.5))
    ridges = np.abs(gaussian_field(rng, (h, w), 250 / spacing)) < 0.08
    ice_hh = ice_hh + 4.0 * (ridged & ridges)
    ice_hv = ice_hv + 3.0 * (ridged & ridges)
    if melting:
        ice_hh, ice_hv = ice_hh + WET_SNOW_DB[0], ice_hv + WET_SNOW_DB[1]
    hh = ice_frac * _lin(ice_hh) + (1 - ice_frac) * _lin(water_hh)
    hv = ice_frac * _lin(ice_hv) + (1 - ice_frac) * _lin(water_hv)
    terrain = 3.0 * gaussian_field(rng, (h, w), 800 / spacing)
    hh = np.where(land, _lin(-7.0 + terrain), hh)
    hv = np.where(land, _lin(-15.0 + terrain), hv)
    hh, hv = np.where(bright, _lin(2.0), hh), np.where(bright, _lin(-6.0), hv)
    looks = ENL_40M * (spacing / 40.0) ** 2
    # thermal noise: scalloped per sub-swath with steps between them, added with its own speckle,
    # then the estimated noise power is subtracted (estimate off by a few per cent per sub-swath)
    sub = np.minimum((frac_across * N_SUBSWATHS).astype(int), N_SUBSWATHS - 1)
    within = frac_across * N_SUBSWATHS - sub
    nesz = _lin(NESZ_DB + 3.0 * (2 * within - 1) ** 2 + rng.normal(0, 0.8, N_SUBSWATHS)[sub])[None, :]
    error = 1 + rng.normal(0, NOISE_REMOVAL_ERROR, N_SUBSWATHS)[sub][None, :]
    out = []
    for signal, noise_share in ((hh, 0.5), (hv, 1.0)):  # HH's noise floor is lower
        measured = (signal * rng.gamma(looks, 1 / looks, (h, w))
                    + noise_share * nesz * rng.gamma(looks, 1 / looks, (h, w)))
        out.append(_db(np.maximum(measured - noise_share * nesz * error, _lin(-35.0))))
    return out[0], out[1]
