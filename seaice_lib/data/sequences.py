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

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .. import schema
from ..grid import block_reduce, masked_block_mean
from .geo import TiePointGrid
from .scene import Scene


@dataclass(frozen=True)
class SceneInfo:
    """What sequence building needs to know of a scene, read once."""

    path: Path
    scene_id: str
    region: str
    time: dt.datetime
    shape: tuple[int, int]
    tiepoints: TiePointGrid = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> "SceneInfo":
        with Scene(path) as s:
            return cls(Path(path), s.scene_id, s.region, s.time, s.shape, s.tiepoints)


@dataclass(frozen=True)
class SceneSequence:
    """A target scene and its earlier co-located acquisitions, oldest first, the target last."""

    steps: tuple[SceneInfo, ...]
    overlap: tuple[float, ...]  # share of the target covered by each step (target: 1.0)

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


def build_sequences(scenes: list[SceneInfo], window_days: float = 7.0, min_overlap: float = 0.3,
                    max_steps: int = 4) -> list[SceneSequence]:
    """One sequence per scene: earlier acquisitions of its region within ``window_days`` that cover
    at least ``min_overlap`` of it, the most recent ``max_steps - 1`` of them, oldest first.

    A scene with no such neighbour is a sequence of length 1.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, not {max_steps}")
    by_region: dict[str, list[SceneInfo]] = defaultdict(list)
    for s in scenes:
        by_region[s.region].append(s)
    out = []
    for target in sorted(scenes, key=lambda s: (s.time, s.scene_id)):
        earlier = [s for s in by_region[target.region]
                   if dt.timedelta(0) < target.time - s.time <= dt.timedelta(days=window_days)]
        chosen = []
        for s in sorted(earlier, key=lambda s: s.time, reverse=True):  # most recent first
            if len(chosen) == max_steps - 1:
                break
            share = overlap(target, s)
            if share >= min_overlap:
                chosen.append((s, share))
        chosen.reverse()
        out.append(SceneSequence(tuple(s for s, _ in chosen) + (target,),
                            tuple(share for _, share in chosen) + (1.0,)))
    return out


def sample_grid(values: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                method: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Sample (C, h, w) ``values`` at fractional ``rows``/``cols`` (any shape S).

    Returns (C, *S) float32, 0 where masked, and the bool mask (S) of positions inside the grid
    with data (bilinear: all four neighbours must have data).
    """
    if method not in ("nearest", "bilinear"):
        raise ValueError(f"method must be 'nearest' or 'bilinear', not {method!r}")
    h, w = valid.shape
    inside = (rows > -0.5) & (rows < h - 0.5) & (cols > -0.5) & (cols < w - 0.5)
    coords = np.stack([np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)])
    order = 0 if method == "nearest" else 1
    if order == 0:
        coords = np.floor(coords + 0.5)
    mask = inside & (ndimage.map_coordinates(valid.astype(np.float32), coords, order=order,
                                             mode="nearest") > 0.999)
    out = np.empty((len(values),) + rows.shape, np.float32)
    for i, channel in enumerate(values):
        sampled = ndimage.map_coordinates(channel, coords, order=order, mode="nearest")
        out[i] = np.where(mask, sampled, schema.SAR_FILL)
    return out, mask


class CoRegistered(NamedTuple):
    """A sequence on its target's grid at ``downsample`` x 80 m (h = H // downsample, w likewise)."""

    sar: np.ndarray  # (T, C, h, w) float32 standard-scaled, 0 where masked; the target last
    sar_mask: np.ndarray  # (T, h, w) bool: pixels the step covers with data
    labels: np.ndarray  # (3, h, w) uint8 SIC, SOD, FLOE of the target; 255 = no label


def co_register(seq: SceneSequence, downsample: int = 1,
                variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3],
                method: str = "bilinear") -> CoRegistered:
    """Every step of ``seq`` on the target's grid at ``downsample`` x 80 m: the patch store's path.

    The target's SAR is brought down by masked block means (a block is valid when at least half
    its pixels are). Each earlier step is block-averaged on its own grid, then sampled
    (``method``) at the target blocks' centres through the tie points: target block centre ->
    polar-stereographic x/y -> the step's fractional pixel -> its block grid. Labels are each
    block's centre pixel (as the toolbox down-samples), 255 where the target has no SAR data or
    no charts (a test scene).
    """
    target = seq.target
    hb, wb = target.shape[0] // downsample, target.shape[1] // downsample
    centres_l = np.arange(hb) * downsample + (downsample - 1) / 2
    centres_s = np.arange(wb) * downsample + (downsample - 1) / 2
    x, y = target.tiepoints.pixel_xy(centres_l, centres_s)
    sar, masks = [], []
    for info in seq.steps:
        with Scene(info.path) as scene:
            values = np.stack([scene.read(v) for v in variables])
            coarse, ok = masked_block_mean(values, scene.sar_valid(), downsample)
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
        # the earlier scene's block grid: block k is centred on its pixel k * downsample + (downsample - 1) / 2
        src_l, src_s = info.tiepoints.xy_to_pixel(x, y)
        step, mask = sample_grid(coarse, ok, (src_l - (downsample - 1) / 2) / downsample,
                                 (src_s - (downsample - 1) / 2) / downsample, method)
        sar.append(step)
        masks.append(mask)
    labels = np.where(masks[-1][None], labels, schema.CHART_FILL).astype(np.uint8)
    return CoRegistered(np.stack(sar), np.stack(masks), labels)
