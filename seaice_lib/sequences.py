"""Temporal sequences: earlier acquisitions of the same region, co-registered onto a target scene.

AI4Arctic has one date per chart. A sequence for a *target* scene (the one whose chart is the label)
stacks the earlier acquisitions of its region that fall within a time window and cover enough of it,
oldest first, the target last. Each earlier scene is resampled onto the target's pixel grid through
exact geolocation: target pixel -> polar-stereographic x/y (the target's tie points) -> source pixel
(the source's tie points, inverted by Newton steps) -> value, by nearest neighbour (labels, or when
speckle statistics must be kept) or bilinear interpolation. Pixels the source swath does not cover,
or covers with no data, are masked.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import schema
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
class Sequence:
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
                    max_steps: int = 4) -> list[Sequence]:
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
        out.append(Sequence(tuple(s for s, _ in chosen) + (target,),
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


def resample_onto(source: Scene, src_lines: np.ndarray, src_samples: np.ndarray,
                  variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3],
                  method: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Values of ``source`` at fractional pixel positions ``src_lines``/``src_samples`` (h, w).

    Returns standard-scaled (C, h, w) float32, 0 where masked, and the (h, w) bool mask of pixels
    the source covers with data. Only the source window under the positions is read.
    """
    h_src, w_src = source.shape
    inside = (src_lines > -0.5) & (src_lines < h_src - 0.5) & (src_samples > -0.5) & \
        (src_samples < w_src - 0.5)
    if not inside.any():  # nothing to read: an empty grid masks every position
        return sample_grid(np.zeros((len(variables), 1, 1), np.float32), np.zeros((1, 1), bool),
                           src_lines, src_samples, method)
    r0 = int(max(np.floor(src_lines[inside].min()), 0))
    r1 = int(min(np.ceil(src_lines[inside].max()) + 2, h_src))
    c0 = int(max(np.floor(src_samples[inside].min()), 0))
    c1 = int(min(np.ceil(src_samples[inside].max()) + 2, w_src))
    rows, cols = slice(r0, r1), slice(c0, c1)
    values = np.stack([source.read(name, rows, cols) for name in variables])
    valid = source.sar_valid(rows, cols)
    # positions outside the read window are outside the scene, or not inside: keep them out
    out_r = np.where(inside, src_lines - r0, -1.0)
    return sample_grid(values, valid, out_r, src_samples - c0, method)


def co_register(sequence: Sequence, rows: slice | None = None, cols: slice | None = None,
                variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3], method: str = "nearest",
                step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The sequence's SAR on a window of the target grid, every ``step`` pixels.

    Returns (T, C, h, w) standard-scaled float32 (0 where masked) and the (T, h, w) bool mask.
    """
    target = sequence.target
    r = slice(*(rows or slice(None)).indices(target.shape[0])[:2])
    c = slice(*(cols or slice(None)).indices(target.shape[1])[:2])
    lines = np.arange(r.start, r.stop, step, dtype=float)
    samples = np.arange(c.start, c.stop, step, dtype=float)
    x, y = target.tiepoints.pixel_xy(lines, samples)
    data, masks = [], []
    for info in sequence.steps:
        sl, ss = info.tiepoints.xy_to_pixel(x, y)  # the target maps onto its own pixels
        with Scene(info.path) as source:
            values, mask = resample_onto(source, sl, ss, variables,
                                         "nearest" if info is target else method)
        data.append(values)
        masks.append(mask)
    return np.stack(data), np.stack(masks)
