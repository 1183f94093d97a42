"""Experiment files for the tests (on the ``four_regions`` fixture's scenes and store)."""

import hashlib
import json

import yaml

from seaice_lib.experiments import jobs, report
from seaice_lib.jsondoc import content_sha256


def write_experiment(path, scenes, store, **changes):
    """A small experiment file on ``four_regions``: two folds, two seeds, a U-Net and TSViT v1 of a
    few steps, the SAR floor; ``changes`` replace top-level entries."""
    doc = {"name": "tiny", "scenes": str(scenes), "store": str(store), "results": str(path.parent / "results"),
           "folds": {"held_out": [["SouthEast"], ["SGRDINFLD"]], "inner": "median"},
           "seeds": [1, 2],
           "training": {"model_size": "tiny", "batch_size": 4, "warmup_steps": 2, "lr": 1e-2, "schedule": "constant",
                        "steps_per_epoch": 4, "checkpoint_every": 0, "augment": False, "balance_power": 0.0,
                        "eval_batch_size": 64, "device": "cpu", "progress": False},
           "curve": {"first": 2, "min_gain": 0.5, "patience": 2},
           "runs": {"unet_sar": {"model": "unet", "model_kwargs": {"grid2km": False}, "inputs": "SAR",
                                 "floor": "sar", "steps": 6},
                    "tsvit_v1": {"model": "tsvit_v1", "inputs": "SAR", "floor": "sar", "steps": 4}},
           "floors": {"sets": {"sar": "SAR"}, "settings": {"max_pixels": 2000, "max_iter": 5}},
           "compare": [["v1 vs U-Net", "tsvit_v1", "unet_sar"], ["U-Net over its floor", "unet_sar", "floor_sar"]]}
    for key, value in changes.items():
        doc[key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def job_result(exp, job, curve=None, floors=None, status="completed"):
    """A job's result in the format ``seaice_lib.experiments.jobs`` writes, with made-up numbers."""
    doc = {"key": exp.key(job), "job": {"name": job.name, **job.__dict__}}
    if floors is not None:
        return doc | {"floors": floors}
    run = exp.runs[job.run]
    return doc | {"floor": run.floor, "curve": curve, "steps_run": curve[-1]["step"], "status": status}


def curve_point(step, cpu, val, inner):
    """A learning-curve point: every score ``val`` on the held-out scenes and ``inner`` on the inner ones."""
    return {"step": step, "train_s": cpu, "train_cpu_s": cpu,
            **{f"val_{m}": val for m in report.METRICS}, **{f"inner_{m}": inner for m in report.METRICS}}


def write_job_result(exp, job, doc):
    """Write ``doc`` as ``job``'s result the way a job does: with the store's ``store_content`` (where it
    does not give one) and its ``content_sha256``."""
    exp.result_path(job).parent.mkdir(parents=True, exist_ok=True)
    jobs.write_result(exp, job, {"store_content": exp.store_groups(), **doc})


def write_probe(exp, job, doc):
    """Write ``doc`` as ``job``'s history probe the way ``experiment probe`` does: with its ``content_sha256``."""
    exp.probe_path(job).parent.mkdir(parents=True, exist_ok=True)
    exp.probe_path(job).write_text(json.dumps(doc | {"content_sha256": content_sha256(doc)}))


def list_unhashed(exp, jobs):
    """Strip the ``content_sha256`` and ``store_content`` of the written results (and history probes) of
    ``jobs``, as results written before they were recorded, and list them in the results folder's
    unhashed_results.json with the SHA-256 of their content (sorted JSON, every number a float)."""
    def floats(value):
        if isinstance(value, dict):
            return {k: floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [floats(v) for v in value]
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    listed = {}
    for job in jobs:
        for path in (exp.result_path(job), exp.probe_path(job)):
            if path.is_file():
                doc = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("content_sha256", "store_content")}
                path.write_text(json.dumps(doc, indent=1))
                digest = hashlib.sha256(json.dumps(floats(doc), sort_keys=True).encode()).hexdigest()
                listed[path.relative_to(exp.results).as_posix()] = digest
    (exp.results / "unhashed_results.json").write_text(json.dumps({"results": listed}))


def write_results(exp, level=60.0):
    """Made-up results for every job of ``exp``: scores rising with the step, the floor at ``level``."""
    for job in exp.jobs():
        if job.kind == "floors":
            scores = {m: level for m in report.METRICS}
            doc = job_result(exp, job, floors={f"floor_{s}": {"val": scores, "inner": scores, "fit_cpu_s": 1.0}
                                               for s in exp.floor_sets})
        else:
            steps = exp.curve_steps(job.run)
            curve = [curve_point(s, 2.0 * s, level - 10 + 5 * k + job.seed, level - 5 + 4 * k)
                     for k, s in enumerate(steps)]
            doc = job_result(exp, job, curve)
        write_job_result(exp, job, doc)


def edit_results(exp, edits):
    """Edit the written results and take their content hash again, as if a job had written them so:
    ``edits`` maps job names to functions changing the result's document in place."""
    for job in exp.jobs():
        if job.name in edits:
            doc = json.loads(exp.result_path(job).read_text())
            edits[job.name](doc)
            doc["content_sha256"] = content_sha256(doc)
            exp.result_path(job).write_text(json.dumps(doc))
