"""Full-scene inference: whole target scenes charted at 80 m, chart files, the upload package.

A target scene is prepared exactly as the patch store prepares it (:mod:`seaice_lib.data.patches`):
its co-registered sequence at the store's spacing, cut into overlapping tiles by the store's own
:func:`~seaice_lib.data.patches.cut_patch`, batched like :func:`~seaice_lib.data.dataset.collate`.
Tile outputs are blended with a Hann window (probabilities, or the SIC value), turned into classes
by :func:`~seaice_lib.models.to_classes` and brought back to 80 m block by block
(:func:`~seaice_lib.grid.block_upsample`); pixels without SAR data get 255. Details: docs/models.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from .. import schema
from ..atomic import atomic_path
from ..data.dataset import StoredSequence, collate, patch_sample
from ..data.patches import (PatchConfig, config_from_store, cut_patch, patch_origins, sequence_attrs,
                      store_grid)
from ..data.scene import Scene, SceneError, find_scenes, open_dataset
from ..data.sequences import SceneInfo, SceneSequence, build_sequences
from ..engine.evaluation import Evaluation, predict_batches
from ..engine.metrics import AutoIceAccumulator
from ..grid import block_upsample
from ..models.outputs import to_classes
from . import submission

ScenePaths = str | Path | Sequence[str | Path]
CHARTS_FORMAT = "seaice-charts/1"  # global attribute ``format`` of a chart file
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


def _scene_paths(scenes: ScenePaths) -> list[Path]:
    if isinstance(scenes, (str, os.PathLike)):
        folder = Path(scenes)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder of scenes")
        return find_scenes(folder)
    return [Path(p) for p in scenes]


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
    for path in _scene_paths(scenes):
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
        """The tile at store pixel (``r``, ``c``) as a :class:`~seaice_lib.dataset.PatchDataset`
        sample (without ``scene``): the same keys, dtypes and values as a stored patch there."""
        return patch_sample(cut_patch(self.grid, r, c, self.cfg), self.dates)

    def chunks(self, batch_size: int) -> list[list[tuple[int, int]]]:
        """The tile origins, ``batch_size`` at a time."""
        return [self.origins[i:i + batch_size] for i in range(0, len(self.origins), batch_size)]

    def batch(self, origins: list[tuple[int, int]]) -> dict:
        """The tiles at ``origins``, collated like :func:`~seaice_lib.dataset.collate` batches."""
        return collate([self.sample(r, c) for r, c in origins])

    def __len__(self) -> int:
        return len(self.origins)


def _check_downsample(model: nn.Module, cfg: PatchConfig) -> None:
    downsample = getattr(model, "downsample", None)
    if isinstance(downsample, int) and downsample != cfg.downsample:
        raise ValueError(f"the model places 2 km cells for downsample {downsample}, the settings have "
                         f"{cfg.downsample}")


def predict_tiles(model: nn.Module, tiles: SceneTiles, batch_size: int = 8,
                  device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Blended outputs on the store grid, chart -> (K, h, w) float32 (see the module docstring)."""
    _check_downsample(model, tiles.cfg)
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


def charts_path(out_dir: str | Path, scene_id: str) -> Path:
    """Where :func:`predict_scenes` writes a scene's charts: ``{scene_id}_charts.nc``."""
    return Path(out_dir) / f"{scene_id}_charts.nc"


def write_charts(charts: SceneCharts, path: str | Path, attrs: Mapping | None = None) -> Path:
    """One netCDF of uint8 ``SIC``/``SOD``/``FLOE`` (sar_lines, sar_samples), 255 = no label
    (attribute ``chart_fill_value``, no ``_FillValue``); temp name, then rename."""
    path = Path(path)
    missing = set(schema.CHARTS) - set(charts.charts)
    if missing:
        raise ValueError(f"{charts.scene_id}: charts {sorted(missing)} missing")
    ds = xr.Dataset({c: xr.DataArray(np.asarray(charts.charts[c], np.uint8), dims=schema.SAR_DIMS,
                                     attrs={"chart_fill_value": schema.CHART_FILL})
                     for c in schema.CHARTS},
                    attrs={"format": CHARTS_FORMAT, "scene_id": charts.scene_id,
                           "pixel_spacing": schema.RTT_PIXEL_SPACING_M,
                           **(attrs or {})})
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                     encoding={c: {**submission.ENCODING, "_FillValue": None} for c in schema.CHARTS})
    return path


def read_charts(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(scene id, chart -> (H, W) uint8) from a file of :func:`write_charts`."""
    with open_dataset(path) as ds:
        if ds.attrs.get("format") != CHARTS_FORMAT:
            raise ValueError(f"{path}: not a chart file (format {ds.attrs.get('format')!r}, "
                             f"expected {CHARTS_FORMAT!r})")
        return str(ds.attrs["scene_id"]), {c: ds[c].values.astype(np.uint8) for c in schema.CHARTS}


def predict_scenes(model: nn.Module, targets: ScenePaths, scenes_dir: str | Path,
                   settings: PatchConfig | str | Path, out_dir: str | Path, batch_size: int = 8,
                   device: torch.device | str = "cpu", overlap: float = 0.25,
                   amp_dtype: torch.dtype | None = None, progress: bool = False) -> list[Path]:
    """Chart every target scene into ``out_dir/{scene_id}_charts.nc``; returns the files.

    Scenes already written are skipped, so a rerun finishes what a killed run left.
    """
    cfg = as_config(settings)
    attrs = {"patch_config": json.dumps(asdict(cfg)), "overlap": overlap}
    paths = []
    for target in tqdm(_scene_paths(targets), desc="scenes", unit="scene", disable=not progress):
        with Scene(target, validate=False) as scene:
            sid = scene.scene_id
        out = charts_path(out_dir, sid)
        if not out.exists():
            charts = predict_scene(model, target, scenes_dir, cfg, batch_size=batch_size,
                                   device=device, overlap=overlap, amp_dtype=amp_dtype,
                                   progress=progress)
            write_charts(charts, out, {**attrs, "source": Path(target).name})
        paths.append(out)
    return paths


def write_upload_package(charts: Sequence[str | Path] | Mapping[str, Mapping[str, np.ndarray]],
                         path: str | Path = "upload_package.nc") -> Path:
    """The official ``upload_package.nc`` (:mod:`seaice_lib.submission`) from chart files or from
    scene -> chart -> (H, W) classes. 255 is kept where a scene has no SAR data: the reference
    charts are unlabelled there, so the scorer never counts it."""
    if isinstance(charts, Mapping):
        predictions = charts
    else:
        predictions = dict(read_charts(p) for p in charts)
    return submission.write_upload_package(predictions, path, allow_fill=True)


def evaluate_scenes(model: nn.Module, scenes: ScenePaths, scenes_dir: str | Path,
                    settings: PatchConfig | str | Path, batch_size: int = 8,
                    device: torch.device | str = "cpu", overlap: float = 0.25,
                    amp_dtype: torch.dtype | None = None, progress: bool = False,
                    info: dict | None = None) -> Evaluation:
    """Score ``model`` on whole labelled scenes at 80 m against their charts, streaming.

    Every labelled pixel counts, as in the official scorer: the model's class is used where the
    scene lacks SAR data too. ``Evaluation.n_patches`` counts the tiles run.
    """
    cfg = as_config(settings)
    acc = AutoIceAccumulator()
    n_tiles, ids = 0, []
    for path in tqdm(_scene_paths(scenes), desc="evaluate", unit="scene", disable=not progress):
        predicted = predict_scene(model, path, scenes_dir, cfg, batch_size=batch_size,
                                  device=device, overlap=overlap, amp_dtype=amp_dtype,
                                  progress=progress, mask_no_data=False)
        with Scene(path) as scene:
            acc.update(scene.charts(), predicted.charts)
        n_tiles += predicted.n_tiles
        ids.append(predicted.scene_id)
    if not ids:
        raise ValueError("no scenes to evaluate")
    return Evaluation({c: acc.confusion_matrix(c) for c in schema.CHARTS}, n_tiles,
                      {**(info or {}), "scenes": ids, "scope": "full scenes at 80 m",
                       "overlap": overlap})
