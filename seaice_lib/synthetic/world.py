"""The hidden world of a synthetic region: drifting ice on a polar-stereographic grid, its evolution
in time (freeze-up, melt) and the analyst's chart of it. Sensors (:mod:`.sensors`) observe this
state; models never see it. The facts behind each choice: docs/synthetic.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special
from scipy.spatial import cKDTree

from ..data import icechart
from ..data.geo import lonlat_to_xy

# stage classes of the SOD chart
WATER, NEW, YOUNG, THIN_FYI, THICK_FYI, OLD = range(6)
# ice formed in the region's history is classed by its age (days): new < 4 <= young < 15 <= thin FYI
# (Lebedev growth at about -15 C reaches the WMO limits of 10 and 30 cm at about these ages)
NEW_ICE_DAYS, YOUNG_ICE_DAYS = 4.0, 15.0
CAKE, SMALL_FLOE = 1, 2  # FLOE classes of newly formed ice (pancakes / small floes)


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

    @property
    def freeze_up(self) -> bool:
        """Autumn: open water beyond the pack freezes over. In winter and spring new ice forms in
        leads and polynyas only (a narrow band); in melt not at all."""
        return not self.melting and self.month in (9, 10, 11, 12)


REGION_CATALOGUE = (
    RegionSpec("dmi", "CentralEast", 72.0, -19.0, 11, -16.0, 0.60, 200, 330, 0.18),
    RegionSpec("cis", "SGRDIFOXE", 66.5, -79.0, 11, -14.0, 0.0, 20, 110, 0.15),
    RegionSpec("dmi", "SouthEast", 65.5, -37.0, 3, -7.0, 0.45, 170, 300, 0.20),
    RegionSpec("cis", "SGRDINFLD", 51.5, -54.0, 2, -8.0, 0.0, 250, 80, 0.12),
    RegionSpec("dmi", "Qaanaaq", 77.0, -70.0, 12, -22.0, 0.30, 60, 210, 0.22),
    RegionSpec("cis", "SGRDIEA", 74.0, -78.0, 10, -11.0, 0.50, 300, 150, 0.15),
    RegionSpec("dmi", "CapeFarewell", 59.8, -44.0, 6, 1.5, 0.40, 120, 260, 0.15),
    RegionSpec("cis", "SGRDIHA", 60.0, -84.0, 7, 3.0, 0.0, 0, 180, 0.10),
    RegionSpec("dmi", "NorthEast", 78.0, -12.0, 1, -24.0, 0.75, 180, 20, 0.15),
    RegionSpec("cis", "SGRDIWA", 71.0, -128.0, 10, -9.0, 0.55, 90, 250, 0.12),
    RegionSpec("dmi", "NorthWest", 75.0, -60.0, 4, -15.0, 0.35, 20, 200, 0.18),
    RegionSpec("cis", "SGRDIMID", 69.0, -105.0, 5, -6.0, 0.10, 250, 70, 0.15),
)


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


def unit_vector(bearing_deg: float) -> np.ndarray:
    return np.array([np.cos(np.deg2rad(bearing_deg)), np.sin(np.deg2rad(bearing_deg))])


@dataclass
class IceState:
    """Ice on the region grid at one time: each field (ny, nx)."""

    conc: np.ndarray  # ice concentration 0..1 (grid-cell mean)
    stage: np.ndarray  # SOD class of the ice (WATER where none)
    floe: np.ndarray  # FLOE class of the ice
    fast: np.ndarray  # bool, landfast ice
    age: np.ndarray  # days since the spot froze (ice formed in the region's history), else NaN
    snow: np.ndarray  # unit Gaussian anomaly of snow/surface properties (drifts with the ice)
    ponds: np.ndarray  # melt-pond share of the ice surface (0 outside melt)


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
        self.drift = unit_vector(spec.pack_bearing + 90) * rng.uniform(0.02, 0.06) * scene_km * 1000 / 3
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
            u = unit_vector(bearing)
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
        self.miz_km = rng.uniform(0.03, 0.06) * L * (2.0 if spec.melting else 1.0)
        self.freeze_km = (0.0 if spec.melting else rng.uniform(0.08, 0.12) * L if spec.freeze_up
                          else rng.uniform(0.02, 0.04) * L)
        self.fast_km = 0.02 * L
        # freezing zone: the day each floe field froze. Freeze-up spreads from the pack, but in
        # patches (wind, currents, leads): each patch of about L/10 freezes on a day of its own,
        # so new ice borders open water, young ice and first-year ice alike
        seeds = rng.uniform(0, n, size=(max(8, int((n * km * 10 / L) ** 2)), 2))
        _, patch = cKDTree(seeds).query(np.column_stack([np.repeat(np.arange(n), n),
                                                         np.tile(np.arange(n), n)]), workers=1)
        frac = (self.edge_d - self.edge0) / max(self.freeze_km, 1e-6)
        centre = frac[np.clip(seeds[:, 0].astype(int), 0, n - 1), np.clip(seeds[:, 1].astype(int), 0, n - 1)]
        patch_day = -6 + (days + 8) * (0.3 * np.clip(centre, 0, 1) + 0.7 * rng.uniform(size=len(seeds)))
        self.freeze_day = patch_day[patch].reshape(n, n).astype(np.float32)
        self.old = field(L / 5) > special.ndtri(1 - max(spec.old_ice, 1e-6))
        self.thick = field(L / 6) > special.ndtri(0.12)  # most first-year ice is thick
        self.pack_conc = np.clip(0.98 + 0.05 * field(L / 5), 0.0, 1.0).astype(np.float32)
        # newly formed ice: its concentration and its floes (pancakes under waves, small floes in
        # calm water) vary in patches of their own, independent of its age
        self.new_conc = np.clip(0.97 + 0.08 * field(L / 12), 0.5, 1.0).astype(np.float32)
        self.new_floe = np.where(field(L / 15) > 1.0, CAKE, SMALL_FLOE).astype(np.uint8)
        # snow and surface properties (grain size, layering, wetness history): drift with the ice
        self.snow = (0.8 * field(L / 6) + 0.6 * field(L / 25)).astype(np.float32)
        self.ponds = (np.clip(0.25 + 0.1 * field(L / 8), 0.05, 0.5) if spec.melting
                      else np.zeros((n, n))).astype(np.float32)
        # grounded icebergs near the coast (DMI, Greenland): earth-fixed bright targets
        self.bergs = np.zeros((0, 2))
        if spec.service == "dmi":
            coast = np.argwhere((self.dist_land_km > 1) & (self.dist_land_km < 0.05 * L) & near)
            pick = coast[rng.choice(len(coast), size=min(len(coast), 40), replace=False)]
            self.bergs = np.column_stack([self.x0 + pick[:, 1] * res_m, self.y0 + pick[:, 0] * res_m])

    def grid_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) on the region grid of map positions."""
        return (np.asarray(y) - self.y0) / self.res, (np.asarray(x) - self.x0) / self.res

    def drift_cells(self, days: float) -> tuple[float, float]:
        """(rows, cols) the ice moves in ``days``."""
        shift = self.drift * days / self.res
        return float(shift[1]), float(shift[0])

    def state(self, day: float) -> IceState:
        """The ice at ``day`` (days since the first acquisition), on the region grid."""
        dr, dc = self.drift_cells(day)
        rows, cols = np.mgrid[0:self.n, 0:self.n].astype(np.float32)
        src = (rows - dr, cols - dc)

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
        age = np.full(conc.shape, np.nan, np.float32)
        if self.freeze_km > 0:
            since = day - lagrangian(self.freeze_day)
            frozen = ~pack & (d < self.edge0 + self.freeze_km) & (since > 0)
            new_stage = np.where(since < NEW_ICE_DAYS, NEW,
                                 np.where(since < YOUNG_ICE_DAYS, YOUNG, THIN_FYI))
            conc = np.where(frozen, lagrangian(self.new_conc), conc)
            stage = np.where(frozen, new_stage, stage)
            floe = np.where(frozen, lagrangian(self.new_floe.astype(np.float32), 0), floe)
            age = np.where(frozen, since, age)
        land = self.land
        fast = pack & (self.dist_land_km < self.fast_km) & ~land
        conc = np.where(land, 0.0, conc).astype(np.float32)
        has_ice = conc > 0
        stage = np.where(has_ice, stage, WATER).astype(np.uint8)
        floe = np.where(has_ice, floe, 0).astype(np.uint8)
        age = np.where(has_ice, age, np.nan).astype(np.float32)
        return IceState(conc, stage, floe, fast, age, lagrangian(self.snow),
                        np.where(has_ice, lagrangian(self.ponds), 0.0).astype(np.float32))


def draw_chart(region: Region, ice: IceState, rng: np.random.Generator, spacing_km: float
               ) -> tuple[np.ndarray, list[str]]:
    """An analyst's chart of ``ice``: polygon ids on the region grid (-1 = none) and egg codes."""
    n = region.n
    n_seeds = max(4, int((n * region.res / 1000 / spacing_km) ** 2))
    seeds = rng.uniform(0, n, size=(n_seeds, 2))
    rows, cols = np.mgrid[0:n, 0:n]
    _, cell = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]), workers=1)
    # analysts follow the ice edge and the edge of the consolidated pack, generalised (a majority
    # filter: a sharp edge between water and ice stays sharp, without slivers of mixed ice)
    level = ndimage.median_filter(np.digitize(ice.conc, [0.08, 0.9]), size=5)
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
    partial: np.ndarray = np.bincount(flat * 42 + pair, ice.conc[inside], n_poly * 42).reshape(n_poly, 6, 7)
    partial /= np.maximum(area, 1)[:, None, None]
    fast = np.bincount(flat, ice.fast[inside], n_poly) / np.maximum(area, 1)
    berg_cells: np.ndarray = np.zeros(n_poly)
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
