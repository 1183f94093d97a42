"""Chart products of whole scenes: CF chart files (:mod:`seaice_lib.charts.cf`) from a model.

Whole scenes are predicted by :func:`seaice_lib.engine.whole_scenes.predict_scene` (tiles cut by the
store's own code, Hann-blended, back to 80 m; details: docs/data.md "Whole scenes"), which also
scores them (:func:`~seaice_lib.engine.whole_scenes.evaluate_scenes`). :func:`predict_scenes` writes one
CF chart file per scene; the upload package is :func:`seaice_lib.charts.cf.write_upload_package`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import netCDF4
import torch
from torch import nn

from ..data.patches import PatchConfig
from ..data.tiles import chart_inputs, recorded_inputs
from ..engine.run import Run
from ..engine.whole_scenes import ScenePaths, as_config, predict_scene
from ..models import reads_history
from ..provenance import file_sha256
from ..walk import Walk
from . import cf, maps
from .follow import Charted

log = logging.getLogger(__name__)


def charted_by(run: Run) -> dict:
    """What a chart file records of the run whose weights charted it (:func:`predict_scenes`'
    ``model_name``, ``config`` and ``weights_sha256``): ``"unet (tiny), run NAME"`` from the spec the
    weights hold (a config.yaml beside them that names another model or size is reported, and the
    weights win), the run's config.yaml and the SHA-256 of its weights, so that a chart is reused
    only for the same weights (:func:`seaice_lib.charts.cf.reusable`)."""
    spec = run.spec
    if (train := run.config) is not None and (train.model, train.model_size) != (spec["name"], spec["size"]):
        log.warning("%s names %s (%s), but the weights in %s are %s (%s): the charts name the weights' model",
                    run.config_file, train.model, train.model_size, run.weights, spec["name"], spec["size"])
    return {"model_name": f"{spec['name']} ({spec['size']}), run {run.folder.name}", "config": run.config_file,
            "weights_sha256": file_sha256(run.weights)}


def charts_of_other_weights(folder: str | Path, weights_sha256: str) -> dict[Path, str]:
    """The chart files (``*_charts.nc``) in ``folder`` made with other weights than ``weights_sha256``
    (their ``model_weights_sha256``), each with ``"weights 0123456789ab"``, or ``"unreadable"``: those
    :func:`predict_scenes` would refuse without ``overwrite``, known before anything is charted.
    {} where ``folder`` does not exist."""
    other = {}
    for path in sorted(Path(folder).glob("*_charts.nc")):
        try:
            with netCDF4.Dataset(path) as nc:
                found = str(nc.getncattr("model_weights_sha256")) if "model_weights_sha256" in nc.ncattrs() else "unknown"
        except OSError:
            other[path] = "unreadable"
            continue
        if found != weights_sha256:
            other[path] = f"weights {found[:12]}"
    return other


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
             "made_by": made or made_by(weights_sha256, cfg, overlap, probabilities,
                                     recorded_inputs(charts.inputs, charts.left_out_history), producer),
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
                   producer: Mapping[str, str] | None = None,
                   before_change: Callable[[], object] | None = None) -> list[Path]:
    """Chart every target scene into a CF chart file ``out_dir/{scene_id}_charts.nc``
    (:func:`seaice_lib.charts.cf.write_charts`); returns the files.

    ``scenes_dir`` holds the targets' earlier acquisitions. ``probabilities`` adds the model's
    class probabilities on its grid; ``model_name`` (default: the model's class) and ``config``
    (the run's config.yaml, hashed) are recorded with the input files and ``weights_sha256``. A
    chart file already there is kept when the same weights and options made it (so a rerun
    finishes what a killed run left), charted again with ``overwrite``, else refused
    (:func:`seaice_lib.charts.cf.reusable`). A scene that fails is named in ``walk`` and skipped
    (:mod:`seaice_lib.walk`); without a ``walk`` the first failure raises. ``before_change()`` is
    called before a chart file is written or may be withdrawn (:func:`seaice_lib.charts.cf.chart_each`).
    """
    cfg = as_config(settings)

    def record(target: Path) -> str:
        return made_by(weights_sha256, cfg, overlap, probabilities,
                       chart_inputs(target, scenes_dir, cfg, reads_history(model)), producer)

    def write(target: Path, made: str) -> None:
        chart_scene(model, target, scenes_dir, cfg, out_dir, batch_size, device, overlap, amp_dtype, progress,
                    probabilities, model_name, config, weights_sha256, made, producer)

    return cf.chart_each(targets, out_dir, record, write, overwrite, walk, progress, maps.withdraw_outdated,
                         before_change)


def check_package(targets: Sequence[Path], chart_files: Sequence[Path], inputs: tuple[str, ...],
                  path: str | Path) -> None:
    """Whether the upload package of ``chart_files`` may be written (``seaice predict`` and notebook
    05 ask here): a ValueError ``no upload package: ...`` naming each scene whose charts came from
    unusable inputs (:func:`seaice_lib.charts.cf.unusable_inputs`: masked SAR-grid model ``inputs``,
    earlier acquisitions masked or left out unread, non-finite model outputs); an earlier package at
    ``path`` is removed then (its charts may be replaced)."""
    if problems := cf.unusable_inputs(targets, chart_files, inputs):
        Path(path).unlink(missing_ok=True)
        raise ValueError(f"no upload package: {problems}; repair or leave out those scenes")
