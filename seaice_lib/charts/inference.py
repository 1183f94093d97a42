"""Chart products of whole scenes: chart files and the upload package.

Whole scenes are predicted by :func:`seaice_lib.engine.scenes.predict_scene` (tiles cut by the
store's own code, Hann-blended, back to 80 m; details: docs/data.md "Whole scenes"), which also
scores them (:func:`~seaice_lib.engine.scenes.evaluate_scenes`). Here they become one netCDF of
``SIC``/``SOD``/``FLOE`` per scene (:func:`predict_scenes`, :func:`write_charts`,
:func:`read_charts`) and the challenge's ``upload_package.nc`` (:func:`write_upload_package`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from .. import schema
from ..atomic import atomic_path
from ..data.patches import PatchConfig
from ..data.scene import Scene, open_dataset
from ..engine.scenes import SceneCharts, ScenePaths, as_config, predict_scene, scene_paths
from . import submission

CHARTS_FORMAT = "seaice-charts/1"  # global attribute ``format`` of a chart file


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
    for target in tqdm(scene_paths(targets), desc="scenes", unit="scene", disable=not progress):
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
    """The official ``upload_package.nc`` (:mod:`seaice_lib.charts.submission`) from chart files or from
    scene -> chart -> (H, W) classes. 255 is kept where a scene has no SAR data: the reference
    charts are unlabelled there, so the scorer never counts it."""
    if isinstance(charts, Mapping):
        predictions = charts
    else:
        predictions = dict(read_charts(p) for p in charts)
    return submission.write_upload_package(predictions, path, allow_fill=True)
