"""Experiments: region folds x seeds x models (and the per-pixel floors) from one YAML file, run as
papermill executions through ``seaice batch``, with learning curves and one aggregation.

``spec`` reads and checks the file and expands it into jobs; ``jobs`` turns a finished job into its
result JSON; ``report`` aggregates the results; ``cli`` is ``seaice experiment``. The story, the
fold rule and the stopping rule: docs/experiments.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text
from ..stages import RUN, other_stage
from .jobs import record_training, run_floors
from .spec import Experiment, Job, load

__all__ = ["Experiment", "Job", "folder_key", "load", "open_job", "record_training", "run_floors", "start_job"]

JOB_FILE = "job.json"  # in a job's run folder: which definition it holds (seaice experiment run reads it)


def open_job(path: str | Path, run: str, fold: int, seed: int) -> tuple[Experiment, Job]:
    """The experiment of ``path`` and one of its jobs; ValueError naming what does not exist."""
    exp = load(path)
    kind = "floors" if run == "floors" else "train"
    if kind == "train" and run not in exp.runs:
        raise ValueError(f"{exp.path}: no run {run!r} (it has {list(exp.runs)})")
    if seed not in exp.seeds:
        raise ValueError(f"{exp.path}: seed {seed} is not one of its seeds {exp.seeds}")
    exp.fold(fold)
    return exp, Job(kind, run, fold, seed)


def start_job(exp: Experiment, job: Job, out_dir: str | Path) -> None:
    """Mark ``out_dir`` as holding ``job`` under its current definition (``job.json``); ValueError,
    nothing written, where it is another stage's folder than a run's
    (:func:`~seaice_lib.stages.other_stage`) or holds another job."""
    out_dir = Path(out_dir)
    if other := other_stage(out_dir, own=(RUN,)):
        raise ValueError(f"out_dir {out_dir}: {other}, not a folder of job {job.name}: give another folder")
    marker = out_dir / JOB_FILE
    try:
        held = json.loads(marker.read_text()).get("job") if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        held = None  # damaged: the job's key is written again below, and `experiment run` reads it so
    if isinstance(held, str) and held != job.name:
        raise ValueError(f"out_dir {out_dir}: the folder of job {held} ({marker}), not of {job.name}: give another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / JOB_FILE, json.dumps({"job": job.name, "key": exp.key(job), "experiment": str(exp.path)}))


def folder_key(folder: str | Path) -> str | None:
    """The key of the job definition ``folder`` holds (its ``job.json``, :func:`start_job`); None
    without one; ValueError naming the file where it is damaged."""
    marker = Path(folder) / JOB_FILE
    if not marker.is_file():
        return None
    try:
        key = json.loads(marker.read_text()).get("key")
    except (ValueError, AttributeError):
        key = None
    if not isinstance(key, str):
        raise ValueError(f"{marker}: damaged (not JSON holding a key)")
    return key
