"""Whole scenes as overlapping tiles and back, in numpy: the one tiling of every charting path.

A target scene is prepared exactly as the patch store prepares it (:mod:`.patches`): its
co-registered sequence at the store's spacing (:func:`scene_sequence`), cut into overlapping tiles
by the store's own :func:`~.patches.cut_patch` and stacked into batches (:meth:`SceneTiles.arrays`:
the keys, dtypes and values of :func:`~.dataset.collate` batches, as numpy arrays). Tile outputs
are blended with a Hann window (:func:`blend`: probabilities, or the SIC value), turned into
classes (arg-max, or the SIC value rounded and clamped) and brought back to 80 m block by block
(:func:`~seaice_lib.grid.block_upsample`); pixels without SAR data get 255
(:meth:`SceneTiles.scene_charts`). PyTorch (:mod:`seaice_lib.engine.whole_scenes`) and ONNX Runtime
(:mod:`seaice_lib.edge.runtime`) run the models; nothing here imports torch. Details: docs/data.md
("Whole scenes").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import sample_format, schema
from ..grid import block_any, block_upsample
from ..provenance import file_sha256
from .patches import PatchConfig, config_from_store, cut_patch, patch_origins, sequence_attrs, store_grid
from .scene import Scene, SceneError, find_scenes, name_time
from .sequences import SceneInfo, SceneSequence, build_sequences

ScenePaths = str | Path | Sequence[str | Path]
Origins = Sequence[tuple[int, int]]
# batch arrays cut from the store grid, and their dtypes in a batch (as PatchDataset samples hold them)
_DTYPES = sample_format.dtypes()
_TILE_DTYPES = {k.name: k.dtype for k in sample_format.KEYS if k.source == "patch" and k.name != "labels"}


@dataclass
class SceneCharts:
    """Predicted charts of one scene."""

    scene_id: str
    charts: dict[str, np.ndarray]  # chart -> (H, W) uint8 at 80 m; 255 = no SAR data (when masked)
    # chart -> (K, h, w) float32 at the store's spacing: mean probabilities, or (1, h, w) SIC value;
    # NaN where any 80 m pixel of the store pixel has no class for lack of SAR data or masked inputs
    blended: dict[str, np.ndarray] | None = None
    n_tiles: int = 0
    inputs: tuple[Path, ...] = ()  # the scene files of the sequence, oldest first, the target last
    non_finite: dict[str, int] = field(default_factory=dict)  # chart -> store pixels the model gave NaN/inf (no class)
    # scene file name -> variable -> values the reader masked as not finite or out of range, of the
    # target and of each earlier acquisition whose masked values reach the target's pixels
    masked_inputs: dict[str, dict[str, int]] = field(default_factory=dict)
    masked_pixels: np.ndarray | None = None  # (H, W) bool: the pixels those values reach (no class)
    # earlier acquisitions of the target's time window that could not be read (:attr:`SceneSequence.left_out`):
    # the charts were made without them
    left_out_history: tuple[SceneError, ...] = ()

    def masked_values(self) -> dict[str, str]:
        """scene file name -> "HH 3 values, HV 2 values": :attr:`masked_inputs` in words."""
        return {file: ", ".join(f"{name} {n} values" for name, n in counts.items())
                for file, counts in self.masked_inputs.items()}

    @property
    def n_masked_pixels(self) -> int:
        """How many 80 m pixels masked input values reach (charted as no data)."""
        return int(self.masked_pixels.sum()) if self.masked_pixels is not None else 0


def as_config(settings: PatchConfig | str | Path) -> PatchConfig:
    """A :class:`PatchConfig`, or the one a patch store (its path) was built with."""
    return settings if isinstance(settings, PatchConfig) else config_from_store(settings)


def scene_paths(scenes: ScenePaths) -> list[Path]:
    """The ``*_prep.nc`` files of a folder (:func:`~seaice_lib.data.scene.find_scenes`), or the given
    files; two files of one scene id are a ValueError naming both."""
    if isinstance(scenes, (str, os.PathLike)):
        folder = Path(scenes)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder of scenes")
        return find_scenes(folder)
    return unique_scenes([Path(p) for p in scenes])


def target_scenes(paths: Sequence[Path], history: Path | None = None) -> list[Path]:
    """The scenes a command was given: each file as it is, each folder as its ``*_prep.nc`` files,
    one per scene id (:func:`unique_scenes`); ValueError naming a path that is neither, or a folder
    without scenes, or a target whose scene id ``history`` (the earlier acquisitions' folder) holds
    in another file with other bytes (one scene would be read from two files in one run)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            if not (inside := find_scenes(path)):
                raise ValueError(f"{path}: a folder without *_prep.nc scenes")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such scene file or folder")
    targets = unique_scenes(found)
    if history is not None:
        twins = {schema.scene_key(p): p for p in find_scenes(history)}
        for target in targets:
            twin = twins.get(schema.scene_key(target))
            if twin is not None and not twin.samefile(target) and file_sha256(twin) != file_sha256(target):
                raise ValueError(f"two files of scene {schema.scene_key(target)}: {target} and {twin} (in --history), "
                                 "with other contents; the charts of later scenes would read the other one")
    return targets


def unique_scenes(paths: Sequence[Path]) -> list[Path]:
    """``paths``, checked to hold one file per scene id (the first 19 characters of the name), each
    once: a chart of each would land on one file, a score would count it twice. ValueError naming
    the two files of one scene, or the file named twice."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = schema.scene_key(path)
        if key in seen and seen[key].resolve() != path.resolve():
            raise ValueError(f"two files of scene {key}: {seen[key]} and {path}; name one of them")
        if key in seen:
            raise ValueError(f"{path} is named twice; name each scene once")
        seen[key] = path
    return list(paths)


def scene_sequence(target: str | Path, scenes: ScenePaths, cfg: PatchConfig, history: bool = True) -> SceneSequence:
    """The target's sequence as the store builds it, its earlier steps drawn from ``scenes``; the
    target alone, nothing else opened, without ``history`` (for a model that reads none:
    ``model.reads_history`` false).

    ``scenes`` is a folder of ``*_prep.nc`` files or a list of files. Only files whose name puts
    them inside the time window are opened; one that cannot be read as a scene is left out, as
    extraction does, and listed in the sequence's ``left_out`` (its :class:`SceneError`): what is made
    of the sequence records it and is refused where a complete one is needed (chart files'
    ``left_out_history_inputs``, the upload package, an evaluation's ``unusable_inputs``).
    """
    target = Path(target)
    info = SceneInfo.read(target)
    window = dt.timedelta(days=cfg.window_days)
    candidates, left_out = [], []
    for path in scene_paths(scenes) if history else []:
        if path.resolve() == target.resolve():
            continue
        t = name_time(path)
        if t is not None and not dt.timedelta(0) < info.time - t <= window:
            continue
        try:
            candidates.append(SceneInfo.read(path))
        except SceneError as err:  # left out, as extraction does, and recorded
            left_out.append(err)
    sequences = build_sequences([info] + candidates, cfg.window_days, cfg.min_overlap, cfg.max_steps)
    return dataclasses.replace(next(s for s in sequences if s.target is info), left_out=tuple(left_out))


def left_out_lines(left_out: Sequence[SceneError]) -> list[str]:
    """``"FILE: problem"`` for each earlier acquisition left out unread (:attr:`SceneSequence.left_out`),
    as chart files, evaluations, explanations and the history figures record them."""
    return [f"{Path(err.path).name}: {err.problem}" for err in left_out]


def recorded_inputs(read: Sequence[Path], left_out: Sequence[SceneError]) -> list[Path]:
    """The files what is made of a sequence records as its inputs (a chart's ``made_by``, an
    evaluation's ``input_files``): each earlier acquisition left out unread that is still a file,
    so that its repair or removal makes what was made stale, then the files ``read`` in order."""
    return [*(Path(err.path) for err in left_out if Path(err.path).is_file()), *read]


def chart_inputs(target: str | Path, scenes: ScenePaths, cfg: PatchConfig, history: bool = True) -> list[Path]:
    """The scene files a chart of ``target`` records in its ``made_by`` (:func:`recorded_inputs` of
    its :func:`scene_sequence`, with ``history`` or without): those left out unread, then those it
    reads, oldest first, the target last."""
    sequence = scene_sequence(target, scenes, cfg, history)
    return recorded_inputs([s.path for s in sequence.steps], sequence.left_out)


def hann_window(size: int) -> np.ndarray:
    """(size, size) float32 blending weights: the outer product of ``sin²(π (i + ½) / size)``."""
    w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.outer(w, w).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax of float32 ``logits`` along ``axis``."""
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def non_finite(blended: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Chart -> (h, w) bool: store pixels where any of :func:`blend`'s outputs is not finite."""
    return {chart: ~np.isfinite(values).all(axis=0) for chart, values in blended.items()}


def blended_classes(blended: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Chart -> (h, w) uint8 classes from :func:`blend`'s (K, h, w): the arg-max of K > 1
    probabilities; one channel (SIC regression) rounded (half to even) and clamped to the classes,
    as :func:`seaice_lib.models.to_classes` does. A pixel with a non-finite output gets no class
    (255): a NaN never becomes "ice-free"."""
    classes = {}
    for chart, values in blended.items():
        if values.shape[0] == 1:
            with np.errstate(invalid="ignore"):
                chosen = np.clip(np.round(np.nan_to_num(values[0])), 0, schema.N_CLASSES[chart] - 1)
        else:
            chosen = np.nan_to_num(values, nan=-np.inf).argmax(axis=0)
        classes[chart] = np.where(~np.isfinite(values).all(axis=0), schema.CHART_FILL, chosen).astype(np.uint8)
    return classes


def percent(probabilities: np.ndarray) -> np.ndarray:
    """(K, h, w) class probabilities -> uint8 percent that sum to exactly 100 at every pixel
    (largest remainders get the rounding's missing points); 255 for every class where any is not
    finite or the probabilities do not sum to 1 within 1e-3."""
    p = np.asarray(probabilities, np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(p).all(axis=0) | (np.abs(np.nan_to_num(p).sum(axis=0) - 1) > 1e-3) | (p < 0).any(axis=0)
    scaled = np.clip(np.nan_to_num(p), 0, 1) * 100
    floor = np.floor(scaled)
    missing = (100 - floor.sum(axis=0)).astype(np.int64)  # 0 .. K-1 points to hand out
    order = np.argsort(-(scaled - floor), axis=0, kind="stable")  # largest remainder first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(p.shape[0])[:, None, None] + np.zeros_like(order), axis=0)
    out = floor + (rank < missing[None])
    return np.where(bad[None], 255, out).astype(np.uint8)


class SceneTiles:
    """A target's sequence on the store grid and the overlapping tiles that cover it.

    Args:
        sequence: the target's sequence (:func:`scene_sequence`).
        cfg: the store's settings.
        overlap: share of the tile side shared by neighbouring tiles, in [0, 1).
        absent: 2 km modalities ("amsr2", "era5") the model charts without: not read from the scene.
    """

    def __init__(self, sequence: SceneSequence, cfg: PatchConfig, overlap: float = 0.25,
                 absent: Collection[str] = ()):
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), not {overlap}")
        h, w = sequence.target.shape
        if min(h, w) < cfg.downsample:
            raise SceneError(sequence.target.path, f"shape {(h, w)} is smaller than one store pixel "
                                                   f"({cfg.downsample} x {cfg.downsample})")
        self.sequence, self.cfg = sequence, cfg
        self.grid = store_grid(sequence, cfg, absent)
        if not self.grid.sar_mask[-1].any():  # a chart of it would be no data everywhere, not a chart
            raise SceneError(sequence.target.path, "no store pixel has SAR data (HH/HV no data or NaN "
                                                   "everywhere): nothing to chart")
        p = cfg.patch
        stride = max(1, round(p * (1 - overlap)))
        self.origins = [(r, c) for r in patch_origins(self.grid.shape[0], p, stride)
                        for c in patch_origins(self.grid.shape[1], p, stride)]
        attrs = sequence_attrs(sequence)
        self.days_before = np.asarray(attrs["days_before"], np.float32)  # (T,) as the store holds them
        self.day_of_year = np.asarray(attrs["day_of_year"], np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the store grid, unpadded: the 80 m shape // downsample."""
        return self.grid.shape

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.grid.labels.shape[1:]

    def chunks(self, batch_size: int) -> list[list[tuple[int, int]]]:
        """The tile origins, ``batch_size`` at a time."""
        return [self.origins[i:i + batch_size] for i in range(0, len(self.origins), batch_size)]

    def arrays(self, origins: Origins) -> dict:
        """The tiles at ``origins`` as one batch of numpy arrays: the keys, dtypes and values of a
        :func:`~seaice_lib.data.dataset.collate` batch of their samples (every tile has the
        sequence's T steps, so ``step_mask`` is all True). Labels stay a dict ``{chart: (B, P, P)}``."""
        patches = [cut_patch(self.grid, r, c, self.cfg) for r, c in origins]
        b, t = len(patches), len(self.days_before)
        batch: dict[str, Any] = {"days_before": np.broadcast_to(self.days_before, (b, t)).astype(_DTYPES["days_before"]),
                                 "day_of_year": np.broadcast_to(self.day_of_year, (b, t)).astype(_DTYPES["day_of_year"]),
                                 "step_mask": np.ones((b, t), _DTYPES["step_mask"])}
        batch |= {key: np.stack([p[key] for p in patches]).astype(dtype)
                  for key, dtype in _TILE_DTYPES.items()}
        labels = np.stack([p["labels"] for p in patches]).astype(_DTYPES["labels"])
        batch["labels"] = {chart: labels[:, i] for i, chart in enumerate(schema.CHARTS)}
        return batch

    def scene_charts(self, blended: Mapping[str, np.ndarray], keep_blended: bool = False,
                     mask_no_data: bool = True) -> SceneCharts:
        """The scene's :class:`SceneCharts` at 80 m from :func:`blend`'s store-grid outputs; pixels
        without SAR data are 255 unless ``mask_no_data`` is False. Pixels that input values masked
        as not finite or out of range reach (the target's own, or an earlier step's through the
        store-grid sample that drew on them) are ``masked_pixels`` and 255 too: a model given no
        data there in place of a value the file holds would chart a made-up input. ``keep_blended``
        keeps the blends, NaN (no probabilities) on each store pixel where any of its 80 m pixels
        is so given no class (:func:`~seaice_lib.grid.block_any`)."""
        target = self.sequence.target
        charts = {c: block_upsample(v, self.cfg.downsample, target.shape)
                  for c, v in blended_classes(blended).items()}
        bad = {c: int(m.sum()) for c, m in non_finite(blended).items()}
        with Scene(target.path) as scene:
            masked, counts = scene.masked_inputs(tuple(dict.fromkeys(schema.SAR_VARIABLES + self.cfg.sar_variables)))
            valid = scene.sar_valid(inputs=self.cfg.sar_variables) if mask_no_data else None
        masked_inputs = {target.path.name: counts} if counts else {}
        for step in self.grid.masked_history:
            masked |= block_upsample(step.pixels, self.cfg.downsample, target.shape)
            masked_inputs[step.path.name] = step.values
        kept = dict(blended) if keep_blended else None
        if valid is not None:
            withheld = ~valid | masked
            charts = {c: np.where(withheld, schema.CHART_FILL, v).astype(np.uint8) for c, v in charts.items()}
            if kept is not None:  # no probabilities where any pixel of the store cell has no class
                cells = block_any(withheld, self.cfg.downsample, self.shape)
                kept = {c: np.where(cells, np.float32(np.nan), v) for c, v in kept.items()}
        return SceneCharts(target.scene_id, charts, kept, len(self),
                           tuple(step.path for step in self.sequence.steps), {c: n for c, n in bad.items() if n},
                           masked_inputs, masked if masked_inputs else None, self.sequence.left_out)

    def __len__(self) -> int:
        return len(self.origins)


def blend(tiles: SceneTiles, outputs: Iterable[tuple[Origins, Mapping[str, np.ndarray]]]
          ) -> dict[str, np.ndarray]:
    """Tile outputs blended on the store grid: chart -> (K, h, w) float32.

    ``outputs`` yields (origins, ``{chart: (B, K, P, P)}`` model outputs) per batch: logits
    (softmax taken here) or one channel (the SIC value). Each tile is weighted by
    :func:`hann_window`; every store pixel is covered by at least one tile.
    """
    p = tiles.cfg.patch
    window = hann_window(p)
    h_pad, w_pad = tiles.padded_shape
    weight = np.zeros((h_pad, w_pad), np.float32)
    sums: dict[str, np.ndarray] = {}
    for origins, batch_outputs in outputs:
        for chart, out in batch_outputs.items():
            values = out if out.shape[1] == 1 else softmax(np.asarray(out, np.float32))
            total = sums.setdefault(chart, np.zeros((values.shape[1], h_pad, w_pad), np.float32))
            for (r, c), v in zip(origins, values):
                total[:, r:r + p, c:c + p] += v * window
        for r, c in origins:
            weight[r:r + p, c:c + p] += window
    h, w = tiles.shape
    return {chart: total[:, :h, :w] / weight[:h, :w] for chart, total in sums.items()}
