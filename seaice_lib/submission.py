"""The AutoICE submission file, ``upload_package.nc``.

One uint8 variable ``{scene}_{chart}`` per test scene and chart, ``scene`` being the first 19
characters of the scene name (``20180124T194759_dmi``), with dims ``{scene}_{chart}_dim0`` and
``{scene}_{chart}_dim1`` at the scene's 80 m shape, compressed with zlib level 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from . import schema
from .prepare import write_atomic


def _scene_key(name: str) -> str:
    key = Path(name).name[:19]
    if len(key) != 19 or key[8] != "T" or key[15] != "_" or key[16:] not in schema.ICE_SERVICES:
        raise ValueError(f"{name!r} is not a scene name like '20180124T194759_dmi[_prep.nc]'")
    return key


def upload_dataset(predictions: Mapping[str, Mapping[str, np.ndarray]],
                   shapes: Mapping[str, tuple[int, int]] | None = None) -> xr.Dataset:
    """The submission as a dataset; ``predictions`` maps scene name -> chart -> (h, w) classes.

    Every scene needs all three charts, integer classes within the chart's range (255 allowed for
    masked pixels), and, where ``shapes`` gives it, the scene's 80 m shape.
    """
    variables = {}
    for scene, charts in predictions.items():
        key = _scene_key(scene)
        missing = [c for c in schema.CHARTS if c not in charts]
        if missing:
            raise ValueError(f"{scene}: missing charts {missing}")
        for chart in schema.CHARTS:
            values = np.asarray(charts[chart])
            where = f"{scene} {chart}"
            if values.ndim != 2:
                raise ValueError(f"{where}: expected a 2-D array, got shape {values.shape}")
            if shapes and scene in shapes and values.shape != tuple(shapes[scene]):
                raise ValueError(f"{where}: shape {values.shape}, the scene is {tuple(shapes[scene])}")
            if values.dtype.kind not in "iu":
                raise ValueError(f"{where}: classes must be integers, got {values.dtype}")
            bad = (values != schema.CHART_FILL) & ((values < 0) | (values >= schema.N_CLASSES[chart]))
            if bad.any():
                raise ValueError(f"{where}: classes must be 0..{schema.N_CLASSES[chart] - 1} or 255")
            name = f"{key}_{chart}"
            variables[name] = xr.DataArray(values.astype(np.uint8), dims=(f"{name}_dim0", f"{name}_dim1"))
    return xr.Dataset(variables)


def write_upload_package(predictions: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                         shapes: Mapping[str, tuple[int, int]] | None = None) -> Path:
    """Write ``upload_package.nc`` (temporary name, then renamed: a failure leaves no partial file)."""
    ds = upload_dataset(predictions, shapes)
    return write_atomic(ds, path)


def read_upload_package(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Scene key -> chart -> uint8 array, from a submission file."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with xr.open_dataset(path, mask_and_scale=False) as ds:
        for name, var in ds.data_vars.items():
            scene, chart = name[:19], name[20:]
            out.setdefault(scene, {})[chart] = var.values
    return out
