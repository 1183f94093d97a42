"""Chart products of whole scenes: CF chart files (:mod:`seaice_lib.charts.cf`) from a model.

Whole scenes are predicted by :func:`seaice_lib.engine.whole_scenes.predict_scene` (tiles cut by the
store's own code, Hann-blended, back to 80 m; details: docs/data.md "Whole scenes"), which also
scores them (:func:`~seaice_lib.engine.whole_scenes.evaluate_scenes`). :func:`predict_scenes` writes one
CF chart file per scene; the upload package is :func:`seaice_lib.charts.cf.write_upload_package`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import netCDF4
import torch
from torch import nn

from .. import schema
from ..data.patches import PatchConfig
from ..data.scene import Scene
from ..data.tiles import sequence_files
from ..engine.whole_scenes import ScenePaths, as_config, predict_scene
from ..walk import Walk
from . import cf, maps
from .follow import Charted


def made_by(weights_sha256: str, cfg: PatchConfig, overlap: float, probabilities: bool,
            inputs: Sequence[str | Path], producer: Mapping[str, str] | None = None) -> str:
    """The ``made_by`` of a chart file from PyTorch weights, the scene files ``inputs`` and the
    producer's metadata (:func:`seaice_lib.charts.cf.made_by`)."""
    return cf.made_by(weights_sha256, "pytorch", {"patch_config": asdict(cfg), "tile_overlap": overlap,
                                                  "probabilities": probabilities}, inputs, producer)


def chart_scene(model: nn.Module, target: str | Path, scenes_dir: str | Path, cfg: PatchConfig,
                out_dir: str | Path, batch_size: int = 8, device: torch.device | str = "cpu",
                overlap: float = 0.25, amp_dtype: torch.dtype | None = None,
                progress: bool = False, probabilities: bool = False,
                model_name: str | None = None, config: str | Path | None = None,
                weights_sha256: str = "unknown", made: str | None = None,
                producer: Mapping[str, str] | None = None) -> Charted:
    """Predict one target scene and write its CF chart file into ``out_dir`` (arguments as
    :func:`predict_scenes`; ``made``: its :func:`made_by` when already known; ``producer``: ACDD
    attributes, :func:`seaice_lib.charts.cf.producer`); returns the file,
    the tiles and the seconds the model took."""
    start = time.monotonic()
    charts = predict_scene(model, target, scenes_dir, cfg, batch_size=batch_size, device=device,
                           overlap=overlap, amp_dtype=amp_dtype, progress=progress,
                           keep_blended=probabilities)
    predict_s = time.monotonic() - start
    attrs = {**cf.provenance(model_name or type(model).__name__, config, charts.inputs),
             "patch_config": json.dumps(asdict(cfg)), "tile_overlap": str(overlap),
             "model_weights_sha256": weights_sha256,
             "made_by": made or made_by(weights_sha256, cfg, overlap, probabilities, charts.inputs, producer),
             **(producer or {})}
    path = cf.write_predicted(out_dir, target, charts, cfg.downsample, attrs)
    return Charted(path, charts.n_tiles, predict_s)


def predict_scenes(model: nn.Module, targets: ScenePaths, scenes_dir: str | Path,
                   settings: PatchConfig | str | Path, out_dir: str | Path, batch_size: int = 8,
                   device: torch.device | str = "cpu", overlap: float = 0.25,
                   amp_dtype: torch.dtype | None = None, progress: bool = False,
                   probabilities: bool = False, model_name: str | None = None,
                   config: str | Path | None = None, weights_sha256: str = "unknown",
                   overwrite: bool = False, walk: Walk | None = None,
                   producer: Mapping[str, str] | None = None) -> list[Path]:
    """Chart every target scene into a CF chart file ``out_dir/{scene_id}_charts.nc``
    (:func:`seaice_lib.charts.cf.write_charts`); returns the files.

    ``scenes_dir`` holds the targets' earlier acquisitions. ``probabilities`` adds the model's
    class probabilities on its grid; ``model_name`` (default: the model's class) and ``config``
    (the run's config.yaml, hashed) are recorded with the input files and ``weights_sha256``. A
    chart file already there is kept when the same weights and options made it (so a rerun
    finishes what a killed run left), charted again with ``overwrite``, else refused
    (:func:`seaice_lib.charts.cf.reusable`). A scene that fails is named in ``walk`` and skipped
    (:mod:`seaice_lib.walk`); without a ``walk`` the first failure raises.
    """
    cfg = as_config(settings)

    def record(target: Path) -> str:
        return made_by(weights_sha256, cfg, overlap, probabilities, sequence_files(target, scenes_dir, cfg), producer)

    def write(target: Path, made: str) -> None:
        chart_scene(model, target, scenes_dir, cfg, out_dir, batch_size, device, overlap, amp_dtype, progress,
                    probabilities, model_name, config, weights_sha256, made, producer)

    return cf.chart_each(targets, out_dir, record, write, overwrite, walk, progress, maps.withdraw_outdated)


def check_package(targets: Sequence[Path], chart_files: Sequence[Path], inputs: tuple[str, ...],
                  path: str | Path) -> None:
    """Whether the upload package of ``chart_files`` may be written (``seaice predict`` and notebook
    05 ask here): a ValueError ``no upload package: ...`` naming each target scene whose SAR-grid model
    ``inputs`` were masked (:func:`_masked_sar`), whose earlier acquisitions' masked values reach its
    pixels or whose model gave non-finite outputs (:func:`_chart_problems`), where its charts have no
    class (255) on pixels the reference charts may label, and each charted without an earlier
    acquisition that could not be read (:func:`_left_out_history`); an earlier package at ``path``
    is removed then (its charts may be replaced)."""
    no_class = _masked_sar(targets, inputs) + _chart_problems(chart_files)
    left_out = _left_out_history(chart_files)
    if no_class or left_out:
        Path(path).unlink(missing_ok=True)
        said = [f"{'; '.join(no_class)}: those pixels have no class (255) where the reference charts may have "
                "labels, and the official scorer would count each as wrong"] if no_class else []
        said += [f"{'; '.join(left_out)}: charted from fewer acquisitions than the data hold"] if left_out else []
        raise ValueError(f"no upload package: {'; '.join(said)}; repair or leave out those scenes")


def _left_out_history(chart_files: Sequence[Path]) -> list[str]:
    """``"SCENE: earlier acquisition FILE: problem (left out)"`` for each chart file made without
    earlier acquisitions that could not be read (``left_out_history_inputs``, :func:`cf.write_predicted`)."""
    out = []
    for path in chart_files:
        with netCDF4.Dataset(path) as nc:
            if "left_out_history_inputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: earlier acquisition "
                           f"{nc.getncattr('left_out_history_inputs')} (left out)")
    return out


def _chart_problems(chart_files: Sequence[Path]) -> list[str]:
    """``"SCENE: the model gave non-finite outputs, store pixels without a class: SIC 12, ..."`` for
    each chart file in which the model gave non-finite outputs (``non_finite_model_outputs``) and
    ``"SCENE: earlier acquisition FILE: HH 3 values masked ..."`` for each whose earlier acquisitions'
    masked values reach its pixels (``masked_history_inputs``; both :func:`cf.write_predicted`)."""
    out = []
    for path in chart_files:
        with netCDF4.Dataset(path) as nc:
            if "masked_history_inputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: earlier acquisition {nc.getncattr('masked_history_inputs')}")
            if "non_finite_model_outputs" in nc.ncattrs():
                out.append(f"{nc.getncattr('scene_id')}: the model gave non-finite outputs, "
                           f"{nc.getncattr('non_finite_model_outputs')}")
    return out


def _masked_sar(targets: Sequence[Path], inputs: tuple[str, ...]) -> list[str]:
    """``"SCENE: HH 3600 values"`` for each target whose SAR or other SAR-grid model ``inputs`` (the
    incidence angle) the reader masked beyond the dataset's own no-data convention (not finite or
    out of range): its charts carry 255 there, inside the swath."""
    out = []
    others = [n for n in inputs if n not in schema.SAR_VARIABLES]
    for path in targets:
        with Scene(path) as scene:
            report = {n: k for n, k in scene.value_report().items() if n in schema.SAR_VARIABLES}
            if report:
                out.append(f"{scene.scene_id}: {', '.join(f'{n} {k} values' for n, k in report.items())} "
                           "masked as not finite or out of range")
            if lost := int((scene.sar_valid(inputs=()) & ~scene.sar_valid(inputs=tuple(others))).sum()):
                out.append(f"{scene.scene_id}: {lost} pixels with HH and HV but no data in {', '.join(others)} "
                           "(no-data value, not finite or out of range)")
    return out
