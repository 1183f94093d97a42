"""Geolocation: tie-point grids, per-pixel lat/lon and the polar-stereographic plane.

AI4Arctic scenes carry 21 x 21 geolocation tie points (lat/lon at regularly spaced SAR lines and
samples). Interpolating lat/lon directly is poor near the pole and across the dateline, so tie points
are projected to NSIDC polar stereographic north (EPSG:3413, metres), interpolated there with a cubic
spline through the tie points, and projected back when lat/lon are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import Transformer
from scipy.interpolate import RectBivariateSpline

POLAR_STEREO_NORTH = "EPSG:3413"


@lru_cache(maxsize=None)
def _transformer(inverse: bool) -> Transformer:
    src, dst = ("EPSG:4326", POLAR_STEREO_NORTH)
    if inverse:
        src, dst = dst, src
    return Transformer.from_crs(src, dst, always_xy=True)


def lonlat_to_xy(lon: np.ndarray | float, lat: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Degrees to polar-stereographic metres (EPSG:3413)."""
    return _transformer(False).transform(np.asarray(lon, float), np.asarray(lat, float))


def xy_to_lonlat(x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Polar-stereographic metres (EPSG:3413) to degrees (lon, lat)."""
    return _transformer(True).transform(np.asarray(x, float), np.asarray(y, float))


@dataclass(frozen=True)
class TiePointGrid:
    """Tie points of one scene: ``lat``/``lon`` (n_lines x n_samples) at SAR ``lines`` x ``samples``.

    Positions are pixel indices on the scene's own grid (lines down, samples across).
    """

    lines: np.ndarray  # (n_lines,) increasing pixel rows of the tie points
    samples: np.ndarray  # (n_samples,) increasing pixel columns
    lat: np.ndarray  # (n_lines, n_samples) degrees north
    lon: np.ndarray  # (n_lines, n_samples) degrees east

    @classmethod
    def regular(cls, lat: np.ndarray, lon: np.ndarray, shape: tuple[int, int]) -> "TiePointGrid":
        """Tie points spread evenly from the first to the last pixel of a ``shape`` scene."""
        n_l, n_s = lat.shape
        return cls(np.linspace(0, shape[0] - 1, n_l), np.linspace(0, shape[1] - 1, n_s),
                   np.asarray(lat, float), np.asarray(lon, float))

    @classmethod
    def from_points(cls, line: np.ndarray, sample: np.ndarray, lat: np.ndarray,
                    lon: np.ndarray) -> "TiePointGrid":
        """From flattened points (raw files' ``sar_grid_*``), which must form a full grid."""
        lines, samples = np.unique(line), np.unique(sample)
        if lines.size * samples.size != np.size(line):
            raise ValueError(f"{np.size(line)} tie points do not form a grid of "
                             f"{lines.size} lines x {samples.size} samples")
        order = np.lexsort((sample, line))
        shape = (lines.size, samples.size)
        return cls(lines.astype(float), samples.astype(float),
                   np.asarray(lat, float)[order].reshape(shape),
                   np.asarray(lon, float)[order].reshape(shape))

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Tie points in polar-stereographic metres, each (n_lines, n_samples)."""
        return lonlat_to_xy(self.lon, self.lat)

    def _splines(self) -> tuple[RectBivariateSpline, RectBivariateSpline]:
        x, y = self.xy
        k = min(3, len(self.lines) - 1, len(self.samples) - 1)
        return (RectBivariateSpline(self.lines, self.samples, x, kx=k, ky=k),
                RectBivariateSpline(self.lines, self.samples, y, kx=k, ky=k))

    def pixel_xy(self, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Polar-stereographic x, y (m) at the grid ``lines`` x ``samples``: each (len, len)."""
        sx, sy = self._splines()
        lines, samples = np.asarray(lines, float), np.asarray(samples, float)
        return sx(lines, samples, grid=True), sy(lines, samples, grid=True)

    def points_xy(self, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Polar-stereographic x, y (m) at scattered pixel positions (same shapes as inputs)."""
        sx, sy = self._splines()
        lines, samples = np.broadcast_arrays(np.asarray(lines, float), np.asarray(samples, float))
        return (sx(lines.ravel(), samples.ravel(), grid=False).reshape(lines.shape),
                sy(lines.ravel(), samples.ravel(), grid=False).reshape(lines.shape))

    def pixel_lonlat(self, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude, latitude (degrees) at the grid ``lines`` x ``samples``: each (len, len)."""
        return xy_to_lonlat(*self.pixel_xy(lines, samples))

    def xy_to_pixel(self, x: np.ndarray, y: np.ndarray, iterations: int = 3
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (line, sample) of map positions (m): the inverse of :meth:`points_xy`.

        An affine fit to the tie points gives the start; Newton steps on the spline refine it
        (sub-millimetre after three steps for SAR geometries). Positions outside the scene come
        back outside ``[0, n)``.
        """
        x, y = np.asarray(x, float), np.asarray(y, float)
        tx, ty = self.xy
        gl, gs = np.meshgrid(self.lines, self.samples, indexing="ij")
        design = np.column_stack([np.ones(tx.size), tx.ravel(), ty.ravel()])
        coef, *_ = np.linalg.lstsq(design, np.column_stack([gl.ravel(), gs.ravel()]), rcond=None)
        flat = np.column_stack([np.ones(x.size), x.ravel(), y.ravel()]) @ coef
        line, sample = flat[:, 0], flat[:, 1]
        sx, sy = self._splines()
        for _ in range(iterations):
            ex = sx(line, sample, grid=False) - x.ravel()
            ey = sy(line, sample, grid=False) - y.ravel()
            a, b = sx(line, sample, dx=1, grid=False), sx(line, sample, dy=1, grid=False)
            c, d = sy(line, sample, dx=1, grid=False), sy(line, sample, dy=1, grid=False)
            det = a * d - b * c
            line = line - (d * ex - b * ey) / det
            sample = sample - (a * ey - c * ex) / det
        return line.reshape(x.shape), sample.reshape(x.shape)

    def footprint_xy(self) -> np.ndarray:
        """Scene outline through the border tie points, (n, 2) polar-stereographic metres, closed."""
        x, y = self.xy
        ring = [(x[0, :], y[0, :]), (x[1:, -1], y[1:, -1]), (x[-1, -2::-1], y[-1, -2::-1]),
                (x[-2::-1, 0], y[-2::-1, 0])]
        return np.column_stack([np.concatenate([r[0] for r in ring]),
                                np.concatenate([r[1] for r in ring])])


# neighbouring tie points of a SAR swath are evenly spaced on the ground; a step further than this
# factor from the median step of its axis is a damaged value
TIEPOINT_STEP_TOLERANCE = 2.0
FOOTPRINT_TOLERANCE = 1.3  # tie-point spacing per pixel against pixel_spacing (footprint_problem)


def tiepoint_problems(lat: np.ndarray, lon: np.ndarray) -> list[tuple[str | None, str]]:
    """What is wrong with a (n_lines, n_samples) grid of tie points (degrees), as (``"lat"``,
    ``"lon"`` or None for both, problem) pairs: values that are not finite, latitudes outside
    [-90, 90], or neighbours not evenly spaced on the ground (a step along an axis more than
    ``TIEPOINT_STEP_TOLERANCE`` times from that axis' median step)."""
    if np.ndim(lat) != 2 or min(np.shape(lat)) < 2 or np.shape(lat) != np.shape(lon):
        return [(None, f"tie points of shape {np.shape(lat)} and {np.shape(lon)}: a grid needs at least "
                       "2 x 2 points, the same for latitude and longitude")]
    problems: list[tuple[str | None, str]] = []
    for which, values in (("lat", lat), ("lon", lon)):
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append((which, f"{int(bad.sum())} of {bad.size} tie points are not finite"))
    if problems:
        return problems
    outside = np.abs(lat) > 90
    if outside.any():
        return [("lat", f"{int(outside.sum())} tie points lie outside [-90, 90] degrees")]
    x, y = lonlat_to_xy(lon, lat)
    for axis in (0, 1):
        if np.shape(lat)[axis] < 2:
            continue
        steps = np.hypot(np.diff(x, axis=axis), np.diff(y, axis=axis))
        median = float(np.median(steps))
        if not median > 0 or not (median / TIEPOINT_STEP_TOLERANCE <= steps.min()
                                   and steps.max() <= median * TIEPOINT_STEP_TOLERANCE):
            problems.append((None, f"tie points are not an even grid: along axis {axis} neighbours "
                                   f"lie {steps.min() / 1e3:.3g} to {steps.max() / 1e3:.3g} km apart, "
                                   f"the median step is {median / 1e3:.3g} km"))
    return problems


def footprint_problem(grid: TiePointGrid, pixel_spacing: float) -> str | None:
    """What is implausible about a tie-point grid for a scene of ``pixel_spacing`` metres, or None.

    The tie points' spacing on the EPSG:3413 plane, per pixel between them (the geometric mean of
    both axes, so either orientation), must lie within ``FOOTPRINT_TOLERANCE`` times the pixel
    spacing. The projection's scale factor keeps an honest scene within 0.97 to 1.10 of it from the
    pole to 50 N; tie points of another scene size, swapped or in other units, or a
    ``pixel_spacing`` that lies (a 40 m file labelled 80 m) fall outside.
    """
    x, y = lonlat_to_xy(grid.lon, grid.lat)
    per_pixel = [np.hypot(np.diff(x, axis=a), np.diff(y, axis=a)).mean() / np.diff(pixels).mean()
                 for a, pixels in ((0, grid.lines), (1, grid.samples))]
    measured = float(np.sqrt(per_pixel[0] * per_pixel[1]))
    if measured / pixel_spacing > FOOTPRINT_TOLERANCE or pixel_spacing / measured > FOOTPRINT_TOLERANCE:
        return (f"the tie points lie {measured:.4g} m apart per pixel between them, the file's pixel_spacing says "
                f"{pixel_spacing:g} m: they belong to another scene size or spacing, or one of them is wrong")
    return None


def tiepoints_are_line_major(lat: np.ndarray, lon: np.ndarray, shape: tuple[int, int],
                             tolerance: float = 0.02) -> bool | None:
    """Decide from geometry whether axis 0 of a regular tie-point array runs along lines.

    Compares the mean ground spacing between neighbouring tie points along each array axis with
    the scene's aspect ratio. Returns None when the scene is too close to square to tell
    (aspect ratio within ``tolerance``).
    """
    h, w = shape
    if abs(np.log((h - 1) / (w - 1))) < tolerance:
        return None
    x, y = lonlat_to_xy(lon, lat)
    step0 = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0)).mean()
    step1 = np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)).mean()
    ratio = np.log(step0 / step1)
    line_major = np.log((h - 1) / (w - 1))
    return bool(abs(ratio - line_major) < abs(ratio + line_major))
