"""A finished (or partly finished) experiment in numbers: the comparison table, the paired
differences and the learning curves, from the job results alone.

Each training job is read at its budget, which the stopping rule picks from the inner-validation
scores of its curve (:func:`budget_of`; never from the held-out scenes). :func:`summarise` gives mean, sd (n - 1),
range and n over folds x seeds; a difference ``a - b`` is taken per fold x seed where both ran.
Figures: :mod:`seaice_lib.figures.experiment`; the story: docs/experiments.md.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.curves import convergence
from ..jsondoc import read_json
from .spec import PROBE_RECORDS, RESULT_RECORDS, UNHASHED, Experiment, Job

METRICS = ("combined", "SIC", "SOD", "FLOE", "f1_new", "f1_young")


def spread(values: Iterable[float]) -> dict:
    """mean, sd (n - 1; 0 for one value), min, max and n of the finite ``values``, rounded to 0.01."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if not len(v):
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": round(float(v.mean()), 2), "std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else 0.0,
            "min": round(float(v.min()), 2), "max": round(float(v.max()), 2), "n": int(len(v))}


def _at(curve: list[Mapping], step: int | None) -> Mapping:
    return next(p for p in curve if p["step"] == step)


def first_passing(curve: list[Mapping], floor: float, prefix: str = "val") -> float | None:
    """Training CPU seconds at the first curve point whose ``prefix`` combined score is above
    ``floor``; None when none is."""
    return next((p["train_cpu_s"] for p in curve if p[f"{prefix}_combined"] > floor), None)


def budget_of(exp: Experiment, curve: list[Mapping]) -> tuple[int | None, bool]:
    """(budget step, converged) of a learning curve under the experiment's stopping rule
    (:func:`seaice_lib.engine.curves.convergence`: inner scores only; None for an empty curve);
    without a rule, the last step."""
    rule = exp.stopping_rule()
    if rule["min_gain"] is None:
        return curve[-1]["step"], False
    return convergence(curve, **rule)


def read_results(exp: Experiment) -> list[dict]:
    """The job results of ``exp`` that match its current definition (stale ones are left out)."""
    out = []
    for job in exp.jobs():
        if exp.finished(job):
            out.append(exp.read_result(job))
    return out


def rows(exp: Experiment, results: list[dict]) -> list[dict]:
    """One row per run (floors included) x fold x seed: held-out ``scores`` and ``inner`` scores
    at the budget, its steps and CPU seconds, and the CPU seconds to pass the run's floor."""
    floors = {(name, r["job"]["fold"], r["job"]["seed"]): v for r in results if "floors" in r
              for name, v in r["floors"].items()}
    out = [{"run": name, "fold": f, "seed": s, "kind": "floor", "scores": v["val"], "inner": v["inner"],
            "train_cpu_s": v["fit_cpu_s"], "steps": None} for (name, f, s), v in floors.items()]
    for r in results:
        if "curve" not in r:
            continue
        fold, seed = r["job"]["fold"], r["job"]["seed"]
        budget, converged = budget_of(exp, r["curve"])
        point = _at(r["curve"], budget)
        floor_set = exp.runs[r["job"]["run"]].floor  # as the file says now: no training depends on it
        floor = floors.get((f"floor_{floor_set}", fold, seed)) if floor_set else None
        out.append({"run": r["job"]["run"], "fold": fold, "seed": seed, "kind": "network", "floor": floor_set,
                    "scores": {m: point[f"val_{m}"] for m in METRICS},
                    "inner": {m: point[f"inner_{m}"] for m in METRICS},
                    "steps": budget, "converged": converged,
                    "train_cpu_s": point["train_cpu_s"], "steps_run": r["steps_run"],
                    "cpu_s_to_floor": None if floor is None else first_passing(r["curve"], floor["val"]["combined"]),
                    "cpu_s_to_floor_inner": None if floor is None else
                    first_passing(r["curve"], floor["inner"]["combined"], "inner"),
                    "curve": r["curve"]})
    return out


def summarise(exp: Experiment, table: list[dict]) -> dict:
    """Per run the spread of every metric over folds x seeds; per ``compare`` entry the paired one."""
    by_run: dict[str, dict[tuple, dict]] = {}
    for row in table:
        by_run.setdefault(row["run"], {})[(row["fold"], row["seed"])] = row
    order = [r for r in exp.runs if r in by_run] + [f"floor_{s}" for s in exp.floor_sets if f"floor_{s}" in by_run]
    runs: dict[str, dict[str, Any]] = {}
    left_out: list[dict] = []  # NaN cells, never silently out of a mean: the report names them
    for run in order:
        cells = by_run[run].values()
        runs[run] = {m: spread(c["scores"][m] for c in cells) for m in METRICS}
        left_out += _nan_cells(run, {key: c["scores"] for key, c in by_run[run].items()})
        runs[run]["train_cpu_s"] = spread(c["train_cpu_s"] for c in cells)
        if run in exp.runs:
            runs[run]["steps"] = sorted({c["steps"] for c in cells})
            runs[run]["converged"] = sum(c["converged"] for c in cells)
            passed = [c["cpu_s_to_floor"] for c in cells]
            runs[run]["passed_floor"] = sum(p is not None for p in passed)
            runs[run]["cpu_s_to_floor"] = spread(p for p in passed if p is not None)
    differences = []
    for question, a, b in exp.compare:
        shared = sorted(set(by_run.get(a, {})) & set(by_run.get(b, {})))
        if not shared:
            continue
        row = {"question": question, "a": a, "b": b, "cells": [list(c) for c in shared]}
        diffs = {c: {m: by_run[a][c]["scores"][m] - by_run[b][c]["scores"][m] for m in METRICS} for c in shared}
        for m in METRICS:
            finite = [d[m] for d in diffs.values() if math.isfinite(d[m])]
            row[m] = {**spread(finite), "values": [round(d[m], 2) for d in diffs.values()],
                      "positive": sum(d > 0 for d in finite)}
        left_out += _nan_cells(f"{a} − {b}", diffs)
        differences.append(row)
    return {"runs": runs, "differences": differences, "left_out": left_out}


def _nan_cells(name: str, scores: Mapping[tuple, Mapping[str, float]]) -> list[dict]:
    """Per metric, the (fold, seed) cells of ``scores`` whose value is NaN (left out of the mean)."""
    out = []
    for m in METRICS:
        nan = [list(cell) for cell, s in scores.items() if not math.isfinite(s[m])]
        if nan:
            out.append({"of": name, "metric": m, "cells": nan, "n_cells": len(scores)})
    return out


def left_out_lines(left_out: list[Mapping]) -> list[str]:
    """One line per run (or difference) and metric with NaN cells: which, and what the mean is over."""
    lines = []
    for e in left_out:
        cells = ", ".join(f"fold {f} seed {s}" for f, s in e["cells"])
        kept = e["n_cells"] - len(e["cells"])
        lines.append(f"{e['of']}, {e['metric']}: NaN in {cells}; " +
                     (f"the mean is over the other {kept} of {e['n_cells']}" if kept else "no mean"))
    return lines


# points a probe's held-out combined score "as given" may differ from its result's at the step (another
# device's float rounding; both are written to 0.001)
AS_GIVEN_TOLERANCE = 0.05

# what the report reads of a history probe (:mod:`.probes`): probe -> scene part -> scores
PROBE_SHAPE = {"job": str, "run": str, "fold": int, "seed": int, "step": int, "weights_key": str,
               "weights_sha256": (str, None), "scores": {"*": {"*": {"combined": float}}}}


def read_probe(path: Path) -> dict:
    """The history probe in ``path``, checked for what the report reads (every probe scoring the same
    scene parts); ValueError naming the file and the key for anything else."""
    doc = read_json(path, PROBE_SHAPE)
    parts = {probe: sorted(scores) for probe, scores in doc["scores"].items()}
    if not parts or not all(parts.values()) or len({tuple(p) for p in parts.values()}) > 1:
        raise ValueError(f"{path}: scores must give each probe the same scene parts, not {parts}")
    return doc


def read_probes(exp: Experiment) -> tuple[list[dict], list[dict]]:
    """(current, stale) history probes (:mod:`.probes`) of the finished training jobs, in the jobs'
    order: a probe is current when it was made from the job's weights at its current budget step
    (:func:`probe_problem`); each stale or damaged one as ``{"job", "why"}``."""
    current, stale = [], []
    for job in exp.jobs():
        path = exp.probe_path(job)
        if job.kind == "train" and path.is_file() and exp.finished(job):
            try:
                doc = read_probe(path)
            except ValueError as err:
                stale.append({"job": job.name, "why": f"damaged: {err}"})
                continue
            if (why := probe_problem(exp, job, doc, exp.read_result(job))) is None:
                current.append(doc)
            else:
                stale.append({"job": job.name, "why": why})
    return current, stale


def probe_problem(exp: Experiment, job: Job, probe: Mapping, result: Mapping) -> str | None:
    """Why the probe document ``probe`` is not one of the weights ``result`` (``job``'s current result)
    is scored with, or None when it is: not as written (:meth:`Experiment.content_problem`), made at
    another step than the result's budget, of another job definition (:meth:`Experiment.weights_key`),
    of weights whose SHA-256 is not the one the result records for its budget step, of scene groups
    that are not the store's now (its ``store_content``: scenes changed since, the same weights
    scoring them otherwise), or scoring the held-out scenes "as given" otherwise than the result
    does at that step (more than :data:`AS_GIVEN_TOLERANCE` apart). A result written before it
    recorded its weights' hashes is matched by the definition, step and score alone, and a probe
    written before probes recorded their store by the score."""
    if problem := exp.content_problem(exp.probe_path(job), probe, PROBE_RECORDS):
        return problem
    if "store_content" in probe and probe["store_content"] not in exp.store_identities():
        return "made on scene groups of the store other than its groups now (scenes changed since)"
    budget, _ = budget_of(exp, result["curve"])
    if probe.get("step") != budget:
        return f"made at step {probe.get('step')}, not at the budget step {budget}"
    if probe.get("weights_key") != exp.weights_key(job):
        return "made from weights of another job definition"
    recorded = result.get("weights_sha256")
    if recorded is not None and probe.get("weights_sha256") != recorded.get(str(budget)):
        return f"made from other weights than those the result records for step {budget} (the job ran again)"
    given = probe["scores"].get("as given", {}).get("val", {}).get("combined")
    scored = _at(result["curve"], budget)["val_combined"]
    if given is not None and not (abs(given - scored) <= AS_GIVEN_TOLERANCE or math.isnan(given) and math.isnan(scored)):
        return (f"its held-out combined score as given, {given}, is not the result's at step {budget}, {scored} "
                "(the same weights on the same scenes)")
    return None


def aggregate(exp: Experiment) -> dict:
    """The experiment as one document: folds, rows, summary, history probes (and the stale ones,
    left out), the jobs without a current result (``missing``) and why for those whose result is
    there but does not count (``not_current``: job -> "stale" or "damaged: WHY",
    :meth:`Experiment.result_problem`), and how many of the results and probes read were checked
    against the list of those written before results recorded their content hash (``unhashed``,
    :meth:`Experiment.unhashed`)."""
    results = read_results(exp)
    probes, stale_probes = read_probes(exp)
    table = rows(exp, results)
    done = {r["job"]["name"] for r in results}
    left = {j.name: exp.result_problem(j) or "missing" for j in exp.jobs() if j.name not in done}
    names = collections.Counter(r.get("experiment") for r in results)  # a renamed experiment: counted by definition
    others = {name: n for name, n in sorted(names.items()) if isinstance(name, str) and name != exp.name}
    return {"experiment": exp.name, "file": str(exp.path),
            "folds": [{"fold": f.index, "held_out": list(f.held_out), "inner": f.inner,
                       "n_train": len(f.train), "n_val": len(f.val), "n_inner": len(f.inner_scenes)}
                      for f in exp.folds()],
            "seeds": exp.seeds, "curve_rule": exp.curve,
            "inputs": {name: r.inputs for name, r in exp.runs.items()} | dict(
                (f"floor_{s}", inputs) for s, inputs in exp.floor_sets.items()),
            "results": table, "summary": summarise(exp, table), "probes": probes,
            "stale_probes": stale_probes,
            "unhashed": {"results": sum(any(k not in r for k in RESULT_RECORDS) for r in results),
                         "probes": sum(any(k not in p for k in PROBE_RECORDS) for p in probes)},
            "missing": list(left), "not_current": {name: why for name, why in left.items() if why != "missing"},
            **({"written_by_other_names": others} if others else {})}


def _cell(s: Mapping, digits: int = 1) -> str:
    return "–" if not s["n"] else f"{s['mean']:.{digits}f}"


def markdown(doc: Mapping) -> str:
    """The comparison table and the paired differences as GitHub markdown."""
    from tabulate import tabulate

    lines = []
    for run, s in doc["summary"]["runs"].items():
        c = s["combined"]
        network = "steps" in s
        lines.append([run, doc["inputs"].get(run, ""),
                      "/".join(str(x) for x in s["steps"]) if network else "–",
                      f"{s['converged']}/{c['n']}" if network else "–",
                      f"{c['mean']:.1f} ± {c['std']:.1f} ({c['min']:.1f}–{c['max']:.1f})" if c["n"] else "–",
                      *(_cell(s[m]) for m in METRICS[1:]), _cell(s["train_cpu_s"], 0),
                      f"{_cell(s['cpu_s_to_floor'], 0)} ({s['passed_floor']}/{c['n']})" if network else "–"])
    table = tabulate(lines, ["run", "inputs", "budget (steps)", "converged", "combined, mean ± sd (range)",
                             "SIC", "SOD", "FLOE", "F1 new", "F1 young", "CPU s", "CPU s to pass floor"],
                     tablefmt="github", disable_numparse=True)
    diffs = [[d["question"], f"{d['a']} − {d['b']}",
              f"{d['combined']['mean']:+.1f} ± {d['combined']['std']:.1f}",
              f"{d['combined']['min']:+.1f}…{d['combined']['max']:+.1f}",
              f"{d['combined']['positive']}/{d['combined']['n']}",
              f"{d['SOD']['mean']:+.1f}", f"{d['f1_new']['mean']:+.1f}", f"{d['f1_young']['mean']:+.1f}"]
             for d in doc["summary"]["differences"]]
    diff_table = tabulate(diffs, ["question", "difference", "combined, mean ± sd", "range", "a > b", "SOD",
                                  "F1 new", "F1 young"], tablefmt="github", disable_numparse=True)
    probes = (f"\nHistory probes (`seaice experiment probe`), combined score at the budget with the earlier "
              f"acquisitions altered:\n\n{probe_table(doc['probes'])}\n") if doc.get("probes") else ""
    stale = doc.get("stale_probes", [])
    stale_text = ("\nHistory probes left out (not of the weights the results are of; run `seaice experiment probe` "
                  "again):\n\n" + "".join(f"- {p['job']}: {p['why']}\n" for p in stale)) if stale else ""
    nan = left_out_lines(doc["summary"].get("left_out", []))
    nan_text = ("\nLeft out of the means (NaN: a score without pixels to score, such as the F1 of a class the "
                "scenes lack):\n\n" + "".join(f"- {line}\n" for line in nan)) if nan else ""
    unhashed = doc.get("unhashed", {"results": 0, "probes": 0})
    unhashed_text = (f"\nChecked against `{UNHASHED}` (written before results recorded their content hash): "
                     f"{unhashed['results']} job results, {unhashed['probes']} history probes.\n"
                     ) if sum(unhashed.values()) else ""
    if others := doc.get("written_by_other_names"):
        unhashed_text += ("\nWritten by an experiment of another name (results count by their job's definition, not "
                          f"the name): {', '.join(f'{n} by {name}' for name, n in others.items())}.\n")
    not_current = doc.get("not_current", {})
    unrun = [name for name in doc["missing"] if name not in not_current]
    missing = f"\n\nNot finished yet ({len(unrun)} jobs): {', '.join(unrun)}\n" if unrun else "\n"
    if stale := [name for name, why in not_current.items() if why == "stale"]:
        missing += (f"\nStale ({len(stale)} jobs: results of another definition or of scene groups cut again since, "
                    f"`seaice experiment run` runs them again): {', '.join(stale)}\n")
    if damaged := damaged_jobs(doc):
        missing += (f"\nLeft out as damaged ({len(damaged)} jobs; `seaice experiment run` runs them again):\n\n"
                    + "".join(f"- {name}: {why.removeprefix('damaged: ')}\n" for name, why in damaged.items()))
    return (f"{table}\n\nPaired differences over folds x seeds (points):\n\n{diff_table}\n\n"
            f"Learning curves, combined score on the held-out / inner scenes at each step, per job:\n\n"
            f"{curve_table(doc['results'])}\n{nan_text}{probes}{stale_text}{unhashed_text}{missing}")


def damaged_jobs(doc: Mapping) -> dict[str, str]:
    """The jobs of an :func:`aggregate` document whose result is damaged, with why."""
    return {name: why for name, why in doc.get("not_current", {}).items() if why.startswith("damaged")}


def curve_table(results: list[Mapping]) -> str:
    """One row per training job: training CPU seconds per step (at its last point), the largest fall
    of the held-out / inner combined score from one curve step to the next (how unsteady training
    is), and both scores at each curve step."""
    from tabulate import tabulate

    jobs = [r for r in results if r["kind"] == "network"]
    steps = sorted({p["step"] for r in jobs for p in r["curve"]})
    lines = []
    for r in jobs:
        by_step = {p["step"]: p for p in r["curve"]}
        fall = {k: max((a[f"{k}_combined"] - b[f"{k}_combined"] for a, b in zip(r["curve"], r["curve"][1:])),
                       default=0.0) for k in ("val", "inner")}
        last = r["curve"][-1]
        lines.append([r["run"], r["fold"], r["seed"], f"{last['train_cpu_s'] / last['step']:.2f}",
                      f"{max(fall['val'], 0):.1f} / {max(fall['inner'], 0):.1f}",
                      *(f"{by_step[s]['val_combined']:.1f} / {by_step[s]['inner_combined']:.1f}" if s in by_step
                        else "" for s in steps)])
    return tabulate(lines, ["run", "fold", "seed", "CPU s / step", "largest fall", *map(str, steps)],
                    tablefmt="github", disable_numparse=True)


def reported_name(results: Path) -> str | None:
    """The experiment name of the report in ``results`` (its ``summary.json``); None without a
    readable one."""
    try:
        name = read_json(results / "summary.json").get("experiment")
    except (OSError, ValueError):
        return None
    return name if isinstance(name, str) else None


def into_block(document: str, name: str, text: str, where: str = "the document") -> str:
    """``document`` with the lines between ``<!-- report NAME -->`` and ``<!-- end report NAME -->``
    replaced by ``text``; ValueError naming ``where`` when the markers are not there once each."""
    start, end = f"<!-- report {name} -->", f"<!-- end report {name} -->"
    if document.count(start) != 1 or document.count(end) != 1 or document.index(start) > document.index(end):
        raise ValueError(f"{where}: needs one {start} line and one {end} line after it")
    head, rest = document.split(start, 1)
    if "<!-- report " in (inside := rest.split(end, 1)[0]) or "<!-- end report " in inside:
        raise ValueError(f"{where}: another report's marker lies between {start} and {end}: its block would be lost")
    return f"{head}{start}\n{text.rstrip()}\n{end}{rest.split(end, 1)[1]}"


def block_of(document: str, name: str) -> str | None:
    """The text between the report markers of ``name`` (:func:`into_block`), or None without them."""
    start, end = f"<!-- report {name} -->\n", f"\n<!-- end report {name} -->"
    if start not in document or end not in document:
        return None
    return document.split(start, 1)[1].split(end, 1)[0]


def probe_table(docs: list[dict]) -> str:
    """Combined score per probed job (:mod:`.probes`), scene part and probe, as GitHub markdown."""
    from tabulate import tabulate

    lines = []
    for doc in docs:
        probes = list(doc["scores"])
        for part in ("val", "inner", "train"):
            if part in doc["scores"][probes[0]]:
                lines.append([doc["run"], doc["fold"], doc["seed"], doc["step"], {"val": "held-out"}.get(part, part),
                              *(f"{doc['scores'][p][part]['combined']:.1f}" for p in probes)])
    header = ["run", "fold", "seed", "step", "scenes", *(list(docs[0]["scores"]) if docs else [])]
    return tabulate(lines, header, tablefmt="github", disable_numparse=True)
