"""Temporal sequences: earlier acquisitions of the same region, co-registered onto a target scene.

AI4Arctic has one date per chart. A sequence for a *target* scene (the one whose chart is the label)
stacks the earlier acquisitions of its region that fall within a time window and cover enough of it,
oldest first, the target last. :func:`co_register` brings every step onto the target's grid at the
store's spacing through exact geolocation: target pixel -> polar-stereographic x/y (the target's tie
points) -> source pixel (the source's tie points, inverted by Newton steps) -> value, by nearest
neighbour or bilinear interpolation. Pixels the source swath does not cover, or covers with no
data, are masked. It is the one co-registration path: the patch store and full-scene inference
both use it (docs/data.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .. import schema
from ..grid import block_reduce, masked_block_mean
from .geo import TiePointGrid
from .scene import Scene, SceneError

ZONE_SAMPLES = 64  # distance-map samples per side kept for the orientation check
AGREEMENT = 0.5  # Cohen's kappa of land zones above which two steps agree
MARGIN = 0.2  # how much better the other tie-point orientation must agree to be taken


class OrientationWarning(UserWarning):
    """A step's tie points were read the other way round, or the step was dropped."""


@dataclass(frozen=True)
class SceneInfo:
    """What sequence building needs to know of a scene, read once."""

    path: Path
    scene_id: str
    region: str
    time: dt.datetime
    shape: tuple[int, int]
    tiepoints: TiePointGrid = field(repr=False)
    zones: np.ndarray | None = field(default=None, repr=False, compare=False)  # distance_map[::s, ::s]
    zone_stride: int = 1

    @classmethod
    def read(cls, path: str | Path) -> "SceneInfo":
        """What sequences need of a scene file; :class:`SceneError` for a scene not at the
        pipeline's 80 m (patches, tiles and charts are all cut on the 80 m grid)."""
        with Scene(path) as s:
            if s.cell != schema.CELL_80M:
                raise SceneError(path, f"pixel_spacing {s.pixel_spacing:g} m: patches and charts are made from "
                                       f"{schema.RTT_PIXEL_SPACING_M} m scenes (`seaice prepare --factor 2`)")
            stride = max(1, min(s.shape) // ZONE_SAMPLES)
            zones = (s.values("distance_map", slice(None, None, stride), slice(None, None, stride))
                     .astype(np.float32)
                     if "distance_map" in s.ds else None)
            return cls(Path(path), s.scene_id, s.region, s.time, s.shape, s.tiepoints, zones, stride)

    def transposed(self) -> "SceneInfo":
        """The same scene with its tie-point arrays read the other way round."""
        tp = self.tiepoints
        return dataclasses.replace(self, tiepoints=TiePointGrid.regular(tp.lat.T, tp.lon.T, self.shape))


@dataclass(frozen=True)
class SceneSequence:
    """A target scene and its earlier co-located acquisitions, oldest first, the target last."""

    steps: tuple[SceneInfo, ...]
    overlap: tuple[float, ...]  # share of the target covered by each step (target: 1.0)
    # files of the target's time window that could not be read as scenes: not in ``steps``, though
    # they might have been (:func:`seaice_lib.data.tiles.scene_sequence`)
    left_out: tuple[SceneError, ...] = ()

    @property
    def target(self) -> SceneInfo:
        return self.steps[-1]

    @property
    def days_before(self) -> np.ndarray:
        """(T,) float days from each acquisition to the target's (target: 0)."""
        t = self.target.time
        return np.array([(t - s.time).total_seconds() / 86400 for s in self.steps])

    @property
    def day_of_year(self) -> np.ndarray:
        """(T,) int day of year (1..366) of each acquisition."""
        return np.array([s.time.timetuple().tm_yday for s in self.steps])

    def __len__(self) -> int:
        return len(self.steps)


def source_pixels(target: TiePointGrid, source: TiePointGrid, lines: np.ndarray,
                  samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional source (line, sample) under the target grid ``lines`` x ``samples``: (h, w) each."""
    x, y = target.pixel_xy(lines, samples)
    return source.xy_to_pixel(x, y)


def overlap(target: SceneInfo, source: SceneInfo, n: int = 24) -> float:
    """Share of the target's area inside the source scene (from an ``n`` x ``n`` grid of pixels)."""
    lines = np.linspace(0, target.shape[0] - 1, n)
    samples = np.linspace(0, target.shape[1] - 1, n)
    sl, ss = source_pixels(target.tiepoints, source.tiepoints, lines, samples)
    inside = (sl >= -0.5) & (sl <= source.shape[0] - 0.5) & (ss >= -0.5) & (ss <= source.shape[1] - 0.5)
    return float(inside.mean())


def zone_agreement(target: SceneInfo, source: SceneInfo, min_points: int = 50) -> float | None:
    """Cohen's kappa of the distance-to-land zones of ``target`` and ``source`` where the source
    covers the target, through their tie points; None when it cannot tell (no distance maps, too
    little overlap, or a single zone in view). A zone that is not finite is unknown: not counted."""
    if target.zones is None or source.zones is None:
        return None
    lines = np.arange(target.zones.shape[0]) * target.zone_stride
    samples = np.arange(target.zones.shape[1]) * target.zone_stride
    sl, ss = source_pixels(target.tiepoints, source.tiepoints, lines, samples)
    rows, cols = np.rint(sl / source.zone_stride), np.rint(ss / source.zone_stride)
    h, w = source.zones.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    a = target.zones[inside]
    b = source.zones[rows[inside].astype(int), cols[inside].astype(int)]
    known = np.isfinite(a) & np.isfinite(b)
    if known.sum() < min_points:
        return None
    a, b = a[known], b[known]
    classes = np.union1d(a, b)
    expected = sum((a == k).mean() * (b == k).mean() for k in classes)
    if expected > 0.95:
        return None
    return float(((a == b).mean() - expected) / (1 - expected))


def checked_step(target: SceneInfo, step: SceneInfo) -> SceneInfo | None:
    """``step`` with the tie-point orientation whose land zones agree with ``target``'s, or None
    when neither does (each decision other than "as read" is an :class:`OrientationWarning`
    naming the file). Static land features must coincide on the earth; a step whose tie points
    were read sideways puts the coast elsewhere (docs/data.md, "Tie-point orientation")."""
    as_read = zone_agreement(target, step)
    if as_read is None:
        return step
    other = step.transposed()
    flipped = zone_agreement(target, other)
    if flipped is not None and flipped >= AGREEMENT and flipped > as_read + MARGIN:
        warnings.warn(f"{step.path}: its tie points read the other way round put its land zones on "
                      f"{target.scene_id}'s (kappa {flipped:.2f} against {as_read:.2f} as read): "
                      "using them", OrientationWarning, stacklevel=3)
        return other
    if as_read >= AGREEMENT:
        return step
    warnings.warn(f"{step.path}: dropped from {target.scene_id}'s sequence: its land zones agree with "
                  f"the target's in neither tie-point orientation (kappa {as_read:.2f} as read, "
                  f"{flipped if flipped is not None else float('nan'):.2f} transposed)",
                  OrientationWarning, stacklevel=3)
    return None


def build_sequences(scenes: list[SceneInfo], window_days: float = 7.0, min_overlap: float = 0.3,
                    max_steps: int = 4) -> list[SceneSequence]:
    """One sequence per scene (:func:`target_sequence`), in time order.

    A scene with no such neighbour is a sequence of length 1.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, not {max_steps}")
    by_region: dict[str, list[SceneInfo]] = defaultdict(list)
    for s in scenes:
        by_region[s.region].append(s)
    return [target_sequence(target, by_region[target.region], window_days, min_overlap, max_steps)
            for target in sorted(scenes, key=lambda s: (s.time, s.scene_id))]


def target_sequence(target: SceneInfo, scenes: list[SceneInfo], window_days: float = 7.0,
                    min_overlap: float = 0.3, max_steps: int = 4) -> SceneSequence:
    """``target``'s sequence: the earlier acquisitions of ``scenes`` in its region within
    ``window_days`` that cover at least ``min_overlap`` of it and whose land zones agree with it
    (:func:`checked_step`), the most recent ``max_steps - 1`` of them, oldest first."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, not {max_steps}")
    earlier = [s for s in scenes if s.region == target.region
               and dt.timedelta(0) < target.time - s.time <= dt.timedelta(days=window_days)]
    chosen: list[tuple[SceneInfo, float]] = []
    for s in sorted(earlier, key=lambda s: s.time, reverse=True):  # most recent first
        if len(chosen) == max_steps - 1:
            break
        share = overlap(target, s)
        if share < min_overlap:
            continue
        step = checked_step(target, s)
        if step is not None:
            chosen.append((step, overlap(target, step)))
    chosen.reverse()
    return SceneSequence(tuple(s for s, _ in chosen) + (target,), tuple(share for _, share in chosen) + (1.0,))


def sample_grid(values: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                method: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Sample (C, h, w) ``values`` at fractional ``rows``/``cols`` (any shape S).

    Returns (C, *S) float32, 0 where masked, and the bool mask (S) of positions inside the grid
    with data (bilinear: all four neighbours must have data).
    """
    if method not in ("nearest", "bilinear"):
        raise ValueError(f"method must be 'nearest' or 'bilinear', not {method!r}")
    coords, order = _sample_coords(valid.shape, rows, cols, method)
    mask = _all_sampled(valid, rows, cols, method)
    out = np.empty((len(values),) + rows.shape, np.float32)
    for i, channel in enumerate(values):
        sampled = ndimage.map_coordinates(channel, coords, order=order, mode="nearest")
        out[i] = np.where(mask, sampled, schema.SAR_FILL)
    return out, mask


def _sample_coords(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, method: str
                   ) -> tuple[np.ndarray, int]:
    """The (2, *S) coordinates ``map_coordinates`` samples a (h, w) grid at, and its spline order."""
    h, w = shape
    coords = np.stack([np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)])
    if method == "nearest":
        return np.floor(coords + 0.5), 0
    return coords, 1


def _inside(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(S) bool: fractional ``rows``/``cols`` that fall on a (h, w) grid's pixels."""
    h, w = shape
    return (rows > -0.5) & (rows < h - 0.5) & (cols > -0.5) & (cols < w - 0.5)


def _all_sampled(flags: np.ndarray, rows: np.ndarray, cols: np.ndarray, method: str) -> np.ndarray:
    """(S) bool: positions inside the (h, w) grid whose sample draws only on pixels where ``flags``
    holds (bilinear: all four neighbours)."""
    coords, order = _sample_coords(flags.shape, rows, cols, method)
    return _inside(flags.shape, rows, cols) & (
        ndimage.map_coordinates(flags.astype(np.float32), coords, order=order, mode="nearest") > 0.999)


class MaskedStep(NamedTuple):
    """An earlier step whose input values the reader masked beyond its no-data convention (not
    finite or out of range) inside the part of it that a target's sequence samples."""

    path: Path
    values: dict[str, int]  # variable -> values masked in the step's file, inside its footprint
    pixels: np.ndarray  # (h, w) bool: the target's store pixels whose sample draws on a block holding one


class CoRegistered(NamedTuple):
    """A sequence on its target's grid at ``downsample`` x 80 m (h = H // downsample, w likewise)."""

    sar: np.ndarray  # (T, C, h, w) float32 standard-scaled, 0 where masked; the target last
    sar_mask: np.ndarray  # (T, h, w) bool: pixels the step covers with data
    labels: np.ndarray  # (3, h, w) uint8 SIC, SOD, FLOE of the target; 255 = no label
    masked_history: tuple[MaskedStep, ...] = ()  # earlier steps whose masked values reach target pixels


def co_register(seq: SceneSequence, downsample: int = 1,
                variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3],
                method: str = "bilinear") -> CoRegistered:
    """Every step of ``seq`` on the target's grid at ``downsample`` x 80 m: the patch store's path.

    The target's SAR is brought down by masked block means (a block is valid when at least half
    its pixels are). Each earlier step is block-averaged on its own grid, then sampled
    (``method``) at the target blocks' centres through the tie points: target block centre ->
    polar-stereographic x/y -> the step's fractional pixel -> its block grid. Labels are each
    block's centre pixel (as the toolbox down-samples), 255 where the target has no SAR data or
    no charts (a test scene). An earlier step's value that the reader masks beyond its no-data
    convention (not finite or out of range) inside its footprint (where no input holds its no-data
    value) is no data there, like the no-data value, but not silently: the target pixels whose
    sample draws on a block holding one are
    ``masked_history`` (whole-scene charts give them no class, as they do the target's own).
    """
    target = seq.target
    hb, wb = target.shape[0] // downsample, target.shape[1] // downsample
    centres_l = np.arange(hb) * downsample + (downsample - 1) / 2
    centres_s = np.arange(wb) * downsample + (downsample - 1) / 2
    x, y = target.tiepoints.pixel_xy(centres_l, centres_s)
    sar, masks, masked_history = [], [], []
    for info in seq.steps:
        with Scene(info.path) as scene:
            values = np.stack([scene.read(v) for v in variables])
            coarse, ok = masked_block_mean(values, scene.sar_valid(inputs=variables), downsample)
            if info is target:
                if scene.has_charts:
                    charts = scene.charts()
                    labels = np.stack([block_reduce(charts[c], downsample, "centre")
                                       for c in schema.CHARTS])
                else:  # a test scene: nothing to learn from, everything to predict
                    labels = np.full((len(schema.CHARTS), hb, wb), schema.CHART_FILL, np.uint8)
                sar.append(coarse)
                masks.append(ok)
                continue
            masked, counts = scene.masked_inputs(variables, footprint=True)
        # the earlier scene's block grid: block k is centred on its pixel k * downsample + (downsample - 1) / 2
        src_l, src_s = info.tiepoints.xy_to_pixel(x, y)
        rows, cols = (src_l - (downsample - 1) / 2) / downsample, (src_s - (downsample - 1) / 2) / downsample
        step, mask = sample_grid(coarse, ok, rows, cols, method)
        sar.append(step)
        masks.append(mask)
        if counts:
            clean = ~block_reduce(masked, downsample, "max")
            reached = _inside(clean.shape, rows, cols) & ~_all_sampled(clean, rows, cols, method)
            if reached.any():
                masked_history.append(MaskedStep(info.path, counts, reached))
    labels = np.where(masks[-1][None], labels, schema.CHART_FILL).astype(np.uint8)
    return CoRegistered(np.stack(sar), np.stack(masks), labels, tuple(masked_history))
