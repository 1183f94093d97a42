"""The AutoICE submission file, ``upload_package.nc``.

One uint8 variable ``{scene}_{chart}`` per test scene and chart, ``scene`` being the first 19
characters of the scene name (``20180124T194759_dmi``), with dims ``{scene}_{chart}_dim0`` and
``{scene}_{chart}_dim1`` at the scene's 80 m shape, zlib compression level 1 (as the challenge
toolbox writes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema
from ..atomic import atomic_path

ENCODING = {"zlib": True, "complevel": 1}


def scene_id(name: str) -> str:
    """``YYYYMMDDTHHMMSS_{dmi|cis}``: the first 19 characters of a scene (file) name."""
    key = schema.scene_key(name)
    if not schema.SCENE_ID.fullmatch(key):
        raise ValueError(f"{name!r} is not a scene name like '20180124T194759_dmi[_prep.nc]'")
    return key


def variable_name(scene: str, chart: str) -> str:
    """Name of a scene's chart in the package, e.g. ``20180124T194759_dmi_SIC``."""
    return f"{scene_id(scene)}_{chart}"


def _checked(values: np.ndarray, chart: str, where: str, allow_fill: bool) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise ValueError(f"{where}: classes must be of an integer dtype (uint8), not {values.dtype}")
    if values.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D (lines, samples) array, not {values.shape}")
    n = schema.N_CLASSES[chart]
    bad = (values < 0) | (values >= n)
    if allow_fill:
        bad &= values != schema.CHART_FILL
    if bad.any():
        allowed = f"0..{n - 1}" + (f" or {schema.CHART_FILL}" if allow_fill else "")
        raise ValueError(f"{where}: {int(bad.sum())} values outside {allowed}, "
                         f"e.g. {values[bad].flat[0]}")
    return values.astype(np.uint8)


def upload_dataset(predictions: Mapping[str, Mapping[str, np.ndarray]],
                   shapes: Mapping[str, tuple[int, int]] | None = None,
                   allow_fill: bool = False) -> xr.Dataset:
    """The package as a dataset, after checking every array.

    ``predictions``: scene name -> {"SIC", "SOD", "FLOE"} -> (lines, samples) integer classes,
    all three charts of a scene of one shape and, where ``shapes`` gives it (keyed like
    ``predictions`` or by scene id), of that shape. Classes must be in the chart's range;
    ``allow_fill`` also accepts 255 (the official scorer counts it wrong on labelled pixels).
    """
    if not predictions:
        raise ValueError("no scenes to write")
    shapes = shapes or {}
    seen: dict[str, str] = {}
    variables = {}
    for scene, charts in predictions.items():
        key = scene_id(scene)
        if key in seen:
            raise ValueError(f"{scene!r} and {seen[key]!r} are the same scene {key}")
        seen[key] = scene
        if set(charts) != set(schema.CHARTS):
            raise ValueError(f"{scene}: charts must be {schema.CHARTS}, got {tuple(charts)}")
        expected = shapes.get(scene, shapes.get(key))
        for chart in schema.CHARTS:
            values = _checked(charts[chart], chart, f"{scene} {chart}", allow_fill)
            if expected is None:
                expected = values.shape
            elif values.shape != tuple(expected):
                raise ValueError(f"{scene} {chart}: shape {values.shape}, "
                                 f"expected {tuple(expected)}")
            name = f"{key}_{chart}"
            variables[name] = xr.DataArray(values, dims=(f"{name}_dim0", f"{name}_dim1"))
    return xr.Dataset(variables)


def write_upload_package(predictions: Mapping[str, Mapping[str, np.ndarray]],
                         path: str | Path = "upload_package.nc",
                         shapes: Mapping[str, tuple[int, int]] | None = None,
                         allow_fill: bool = False, attrs: Mapping[str, str] | None = None) -> Path:
    """Check ``predictions`` (see :func:`upload_dataset`) and write the package to ``path``, with
    ``attrs`` as global attributes (what made it; the scorer reads only the variables).

    Written under a temporary name in the same folder, flushed to disk, then renamed over ``path``:
    a failure leaves no partial file and an earlier file at ``path`` untouched.
    """
    ds = upload_dataset(predictions, shapes, allow_fill)
    ds.attrs.update(attrs or {})
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, mode="w", format="NETCDF4", engine="netcdf4",
                     encoding={name: dict(ENCODING) for name in ds.data_vars})
    return Path(path)


def read_upload_package(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Scene id -> chart -> (lines, samples) uint8 array, from a package file."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as ds:
        for name in map(str, ds.data_vars):
            key, _, chart = name.rpartition("_")
            if not (schema.SCENE_ID.fullmatch(key) and chart in schema.CHARTS):
                raise ValueError(f"{path}: {name!r} is not a '{{scene}}_{{chart}}' variable")
            out.setdefault(key, {})[chart] = ds[name].values
    return out
