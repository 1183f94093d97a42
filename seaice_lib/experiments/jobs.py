"""One experiment job: a training run's result read off its run folder, or the floors fitted and scored.

A job's result is one small JSON file, ``RESULTS/jobs/<run>_fold<F>_seed<S>.json``, written
atomically when the job ends and keyed by the hash of everything that decides it
(:meth:`Experiment.key`): the next invocation reuses it only when the key matches, on any machine.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from ..atomic import write_text
from ..data.patches import config_from_store
from ..data.scene import find_scenes
from ..engine import floors
from ..engine.curves import curve_scores
from ..engine.run import Run
from ..engine.whole_scenes import scene_files
from ..jsondoc import content_sha256
from ..provenance import file_sha256, provenance
from .spec import FINISHED, Experiment, Job


def _read_curve(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: (int(v) if k == "step" else float(v) if v != "" else math.nan) for k, v in row.items()}
                for row in csv.DictReader(f)]


def record_training(exp: Experiment, job: Job, out_dir: str | Path, summary: dict) -> Path:
    """Write the result of a finished training job from its run folder; the result's path. It
    records the SHA-256 of the weights kept at each curve step (``weights_sha256``, step -> hash),
    which binds a history probe (:mod:`.probes`) to the weights this result's scores are of, and the
    run folder (``run_dir``, absolute: where the probe finds them)."""
    out_dir = Path(out_dir)
    if summary.get("status") not in FINISHED:
        raise ValueError(f"{out_dir}: the run ended {summary.get('status')!r}: no result for {job.name}")
    curve = _read_curve(out_dir / "curve.csv")
    kept = {point["step"]: Run(out_dir).curve_weights(point["step"]) for point in curve}
    weights = {str(step): file_sha256(path) for step, path in kept.items() if path.is_file()}
    run = exp.runs[job.run]
    result = {"key": exp.key(job), "experiment": exp.name, "job": {"name": job.name, **job.__dict__},
              "model": run.model, "inputs": run.inputs, "floor": run.floor, "n_params": summary["n_params"],
              "curve": curve, "weights_sha256": weights, "status": summary["status"],
              "steps_run": summary["steps"], "device": _device(), "store_content": exp.store_groups(),
              "run_dir": str(out_dir.resolve()), "provenance": provenance()}  # the budget: report.budget_of(curve)
    return write_result(exp, job, result)


def write_result(exp: Experiment, job: Job, result: dict) -> Path:
    """Write ``result`` as ``job``'s result with the SHA-256 of its content (:func:`~seaice_lib.jsondoc.content_sha256`)."""
    return write_text(exp.result_path(job), json.dumps(result | {"content_sha256": content_sha256(result)}, indent=1))


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def run_floors(exp: Experiment, job: Job, out_dir: str | Path) -> Path:
    """Fit every floor of the experiment on the fold's training scenes, score it on the held-out
    and inner scenes (whole scenes at 80 m), write evaluations under ``out_dir`` and the result."""
    out_dir = Path(out_dir)
    fold = exp.fold(job.fold)
    cfg = config_from_store(exp.store)
    every = find_scenes(exp.scenes)
    features = {}
    for part, ids in (("train", fold.train), ("val", fold.val), ("inner", fold.inner_scenes)):
        sequences = floors.target_sequences(scene_files(ids, exp.scenes), every, cfg)
        features[part] = [floors.scene_features(seq, cfg.downsample, cfg.method) for seq in sequences]
    settings = {"max_pixels": 50_000, "max_iter": 100, **exp.floor_settings}
    results = {}
    for name in exp.floor_sets:
        start = time.process_time()
        floor = floors.PixelFloor(name, seed=job.seed, threads=1, **settings).fit(features["train"])
        fit_cpu = time.process_time() - start
        scores = {}
        for part in ("val", "inner"):
            ev = floors.evaluate_floor(floor, features[part], {"fold": fold.index, "seed": job.seed, "set": part})
            ev.to_json(out_dir / f"floor_{name}_{part}.json")
            scores[part] = curve_scores(ev)
        results[f"floor_{name}"] = {**scores, "fit_cpu_s": round(fit_cpu, 2)}
    result = {"key": exp.key(job), "experiment": exp.name, "job": {"name": job.name, **job.__dict__},
              "floors": results, "settings": settings, "store_content": exp.store_groups(), "provenance": provenance()}
    return write_result(exp, job, result)
