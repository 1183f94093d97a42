"""Whole scenes: target scenes predicted tile by tile at the store's spacing, back to 80 m, scored.

A target scene is prepared exactly as the patch store prepares it (:mod:`seaice_lib.data.patches`):
its co-registered sequence at the store's spacing, cut into overlapping tiles by the store's own
:func:`~seaice_lib.data.patches.cut_patch`, batched like :func:`~seaice_lib.data.dataset.collate`.
Tile outputs are blended with a Hann window (probabilities, or the SIC value), turned into classes
by :func:`~seaice_lib.models.to_classes` and brought back to 80 m block by block
(:func:`~seaice_lib.grid.block_upsample`); pixels without SAR data get 255. :func:`evaluate_scenes`
is the official metric on every labelled pixel of whole scenes at 80 m (sharded by scene under
DDP); training writes it to ``evaluation.json``. Details: docs/data.md ("Whole scenes"). Chart
files and the upload package: :mod:`seaice_lib.charts.inference`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import schema
from ..data.dataset import StoredSequence, collate, patch_sample
from ..data.patches import (PatchConfig, config_from_store, cut_patch, patch_origins, sequence_attrs,
                            store_grid)
from ..data.scene import Scene, SceneError, find_scenes, open_dataset
from ..data.sequences import SceneInfo, SceneSequence, build_sequences
from ..grid import block_upsample
from ..models.outputs import to_classes
from .evaluation import Evaluation, _rank_and_world, check_downsample, predict_batches
from .metrics import AutoIceAccumulator

ScenePaths = str | Path | Sequence[str | Path]
_NAME_TIME = re.compile(r"(\d{8}T\d{6})_")


@dataclass
class SceneCharts:
    """Predicted charts of one scene."""

    scene_id: str
    charts: dict[str, np.ndarray]  # chart -> (H, W) uint8 at 80 m; 255 = no SAR data (when masked)
    # chart -> (K, h, w) float32 at the store's spacing: mean probabilities, or (1, h, w) SIC value
    blended: dict[str, np.ndarray] | None = None
    n_tiles: int = 0


def as_config(settings: PatchConfig | str | Path) -> PatchConfig:
    """A :class:`PatchConfig`, or the one a patch store (its path) was built with."""
    return settings if isinstance(settings, PatchConfig) else config_from_store(settings)


def scene_paths(scenes: ScenePaths) -> list[Path]:
    """The ``*_prep.nc`` files of a folder, or the given files."""
    if isinstance(scenes, (str, os.PathLike)):
        folder = Path(scenes)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder of scenes")
        return find_scenes(folder)
    return [Path(p) for p in scenes]


def scene_files(scene_ids: Sequence[str], folder: str | Path, pattern: str = "*_prep.nc") -> list[Path]:
    """The file of each scene id in ``folder`` (matched by the first 19 characters of the name,
    ``YYYYMMDDTHHMMSS_{dmi|cis}``), in order; ValueError naming the folder and the ids it lacks."""
    by_id = {p.name[:19]: p for p in find_scenes(folder, pattern)}
    missing = [s for s in scene_ids if s[:19] not in by_id]
    if missing:
        raise ValueError(f"{folder}: no {pattern} file for the scenes {missing}")
    return [by_id[s[:19]] for s in scene_ids]


def _name_time(path: Path) -> dt.datetime | None:
    """Acquisition time from a ``YYYYMMDDTHHMMSS_...`` file name, None for other names."""
    m = _NAME_TIME.match(path.name)
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S") if m else None


def scene_sequence(target: str | Path, scenes: ScenePaths, cfg: PatchConfig) -> SceneSequence:
    """The target's sequence as the store builds it, its earlier steps drawn from ``scenes``.

    ``scenes`` is a folder of ``*_prep.nc`` files or a list of files. Only files whose name puts
    them inside the time window are opened; unreadable ones are left out, as extraction does.
    """
    target = Path(target)
    info = SceneInfo.read(target)
    window = dt.timedelta(days=cfg.window_days)
    candidates = []
    for path in scene_paths(scenes):
        if path.resolve() == target.resolve():
            continue
        t = _name_time(path)
        if t is not None and not dt.timedelta(0) < info.time - t <= window:
            continue
        try:
            candidates.append(SceneInfo.read(path))
        except SceneError:
            continue
    sequences = build_sequences([info] + candidates, cfg.window_days, cfg.min_overlap, cfg.max_steps)
    return next(s for s in sequences if s.target is info)


def hann_window(size: int) -> np.ndarray:
    """(size, size) float32 blending weights: the outer product of ``sin²(π (i + ½) / size)``."""
    w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.outer(w, w).astype(np.float32)


class SceneTiles:
    """A target's sequence on the store grid and the overlapping tiles that cover it.

    Args:
        sequence: the target's sequence (:func:`scene_sequence`).
        cfg: the store's settings.
        overlap: share of the tile side shared by neighbouring tiles, in [0, 1).
    """

    def __init__(self, sequence: SceneSequence, cfg: PatchConfig, overlap: float = 0.25):
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), not {overlap}")
        h, w = sequence.target.shape
        if min(h, w) < cfg.downsample:
            raise SceneError(sequence.target.path, f"shape {(h, w)} is smaller than one store pixel "
                                                   f"({cfg.downsample} x {cfg.downsample})")
        self.sequence, self.cfg = sequence, cfg
        self.grid = store_grid(sequence, cfg)
        p = cfg.patch
        stride = max(1, round(p * (1 - overlap)))
        self.origins = [(r, c) for r in patch_origins(self.grid.shape[0], p, stride)
                        for c in patch_origins(self.grid.shape[1], p, stride)]
        attrs = sequence_attrs(sequence)
        self.dates = StoredSequence(torch.tensor(attrs["days_before"], dtype=torch.float32),
                                    torch.tensor(attrs["day_of_year"], dtype=torch.int64),
                                    sequence.target.region)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the store grid, unpadded: the 80 m shape // downsample."""
        return self.grid.shape

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.grid.labels.shape[1:]

    def sample(self, r: int, c: int) -> dict:
        """The tile at store pixel (``r``, ``c``) as a :class:`~seaice_lib.data.dataset.PatchDataset`
        sample (without ``scene``): the same keys, dtypes and values as a stored patch there."""
        return patch_sample(cut_patch(self.grid, r, c, self.cfg), self.dates)

    def chunks(self, batch_size: int) -> list[list[tuple[int, int]]]:
        """The tile origins, ``batch_size`` at a time."""
        return [self.origins[i:i + batch_size] for i in range(0, len(self.origins), batch_size)]

    def batch(self, origins: list[tuple[int, int]]) -> dict:
        """The tiles at ``origins``, collated like :func:`~seaice_lib.data.dataset.collate` batches."""
        return collate([self.sample(r, c) for r, c in origins])

    def __len__(self) -> int:
        return len(self.origins)


def predict_tiles(model: nn.Module, tiles: SceneTiles, batch_size: int = 8,
                  device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Blended outputs on the store grid, chart -> (K, h, w) float32 (see the module docstring)."""
    check_downsample(model, tiles.cfg.downsample)
    p = tiles.cfg.patch
    window = hann_window(p)
    h_pad, w_pad = tiles.padded_shape
    weight = np.zeros((h_pad, w_pad), np.float32)
    sums: dict[str, np.ndarray] = {}
    chunks = tiles.chunks(batch_size)
    predicted = predict_batches(model, map(tiles.batch, chunks), device, amp_dtype, progress,
                                total=len(chunks))
    for origins, (_, outputs) in zip(chunks, predicted):
        for chart, out in outputs.items():
            values = (out if out.shape[1] == 1 else out.softmax(dim=1)).cpu().numpy()
            total = sums.setdefault(chart, np.zeros((values.shape[1], h_pad, w_pad), np.float32))
            for (r, c), v in zip(origins, values):
                total[:, r:r + p, c:c + p] += v * window
        for r, c in origins:
            weight[r:r + p, c:c + p] += window
    h, w = tiles.shape
    return {chart: total[:, :h, :w] / weight[:h, :w] for chart, total in sums.items()}


def predict_scene(model: nn.Module, target: str | Path, scenes: ScenePaths,
                  settings: PatchConfig | str | Path, batch_size: int = 8,
                  device: torch.device | str = "cpu", overlap: float = 0.25,
                  amp_dtype: torch.dtype | None = None, progress: bool = False,
                  keep_blended: bool = False, mask_no_data: bool = True) -> SceneCharts:
    """Charts of a whole target scene at 80 m, (H, W) uint8 per chart.

    ``scenes`` (a folder or files) supplies the earlier acquisitions of the target's sequence;
    ``settings`` is the store's :class:`PatchConfig` or the store's path. Pixels without SAR data
    are 255 unless ``mask_no_data`` is False; ``keep_blended`` keeps the store-grid blends.
    """
    cfg = as_config(settings)
    tiles = SceneTiles(scene_sequence(target, scenes, cfg), cfg, overlap)
    blended = predict_tiles(model, tiles, batch_size, device, amp_dtype, progress)
    classes = to_classes({c: torch.from_numpy(v[None]) for c, v in blended.items()})
    target_info = tiles.sequence.target
    charts = {c: block_upsample(v[0].numpy().astype(np.uint8), cfg.downsample, target_info.shape)
              for c, v in classes.items()}
    if mask_no_data:
        with Scene(target) as scene:
            valid = scene.sar_valid()
        charts = {c: np.where(valid, v, schema.CHART_FILL).astype(np.uint8) for c, v in charts.items()}
    return SceneCharts(target_info.scene_id, charts, blended if keep_blended else None, len(tiles))


def read_reference(path: str | Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Chart -> (H, W) uint8 from a reference file (``<scene>_prep_reference.nc``: ``SIC``,
    ``SOD``, ``FLOE``, 255 = no label) of a scene of ``shape``. A missing chart, another shape or
    a class out of range raises :class:`SceneError` naming the file and the variable; float
    variables are taken when they hold whole classes (NaN = no label)."""
    charts = {}
    with open_dataset(path) as ds:
        for chart in schema.CHARTS:
            if chart not in ds:
                raise SceneError(path, "missing from the reference file", chart)
            values = np.asarray(ds[chart].values)
            if values.shape != tuple(shape):
                raise SceneError(path, f"shape {values.shape}, the scene's is {tuple(shape)}", chart)
            if values.dtype.kind == "f":
                values = np.where(np.isnan(values), schema.CHART_FILL, values)
                if (values != np.round(values)).any():
                    raise SceneError(path, "holds values that are not whole classes", chart)
            elif values.dtype.kind not in "iu":
                raise SceneError(path, f"dtype {values.dtype} holds no classes", chart)
            bad = (values != schema.CHART_FILL) & ((values < 0) | (values >= schema.N_CLASSES[chart]))
            if bad.any():
                raise SceneError(path, f"classes {sorted(np.unique(values[bad]).tolist())[:5]} outside "
                                       f"0..{schema.N_CLASSES[chart] - 1} and 255", chart)
            charts[chart] = values.astype(np.uint8)
    return charts


def _sum_over_ranks(n: int) -> int:
    """``n`` summed over the ranks when ``torch.distributed`` is initialised."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return n
    device = (torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl"
              else torch.device("cpu"))
    total = torch.tensor([n], dtype=torch.int64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def evaluate_scenes(model: nn.Module, scenes: ScenePaths, scenes_dir: str | Path,
                    settings: PatchConfig | str | Path, batch_size: int = 8,
                    device: torch.device | str = "cpu", overlap: float = 0.25,
                    amp_dtype: torch.dtype | None = None, progress: bool = False,
                    info: dict | None = None,
                    references: Mapping[str, str | Path] | None = None) -> Evaluation:
    """Score ``model`` on whole labelled scenes at 80 m against their charts, streaming.

    Every labelled pixel counts, as in the official scorer: the model's class is used where the
    scene lacks SAR data too. ``Evaluation.n_patches`` counts the tiles run. ``references`` maps
    scene ids to reference files (:func:`read_reference`) whose charts are scored instead of the
    scene's own (the test set's ``<scene>_prep_reference.nc``).

    When ``torch.distributed`` is initialised, rank r scores the scenes ``r::world`` and the counts
    are all-reduced: every rank must call it with the same scenes, and every rank returns the same
    :class:`Evaluation`, each pixel counted once.
    """
    cfg = as_config(settings)
    paths = scene_paths(scenes)
    if not paths:
        raise ValueError("no scenes to evaluate")
    ids, shapes = [], []
    for path in paths:
        with Scene(path, validate=False) as scene:
            ids.append(scene.scene_id)
            shapes.append(scene.shape)
    if references is not None:
        missing = [s for s in ids if s not in references]
        if missing:
            raise ValueError(f"no reference files for the scenes {missing}")
    rank, world = _rank_and_world()
    acc = AutoIceAccumulator()
    n_tiles = 0
    mine = list(zip(paths, ids, shapes))[rank::world]
    for path, sid, shape in tqdm(mine, desc="evaluate", unit="scene",
                                 disable=not (progress and rank == 0)):
        if references is None:
            with Scene(path) as scene:
                true = scene.charts()
        else:
            true = read_reference(references[sid], shape)
        predicted = predict_scene(model, path, scenes_dir, cfg, batch_size=batch_size,
                                  device=device, overlap=overlap, amp_dtype=amp_dtype,
                                  progress=progress and rank == 0, mask_no_data=False)
        acc.update(true, predicted.charts)
        n_tiles += predicted.n_tiles
    acc.all_reduce()
    return Evaluation({c: acc.confusion_matrix(c) for c in schema.CHARTS}, _sum_over_ranks(n_tiles),
                      {**(info or {}), "scenes": ids, "scope": "full scenes at 80 m",
                       "overlap": overlap})
