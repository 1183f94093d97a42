"""``seaice experiment {folds,run,status,report,probe} EXPERIMENT.yaml``: an experiment file's folds,
its jobs through ``seaice batch`` (locally or as SLURM job arrays), what is finished, the report,
and the history probes of finished training jobs (:mod:`.probes`).

``run`` writes the jobs that have no current result as two batch files under ``RUNS/experiments/NAME/``
(the floors through ``notebooks/04_floors.ipynb``, the training runs through
``notebooks/04_train.ipynb``) and runs them with ``seaice batch``: ``--jobs N`` at a time
(``floors.yaml``, ``train.yaml``), or ``--slurm`` as two job arrays (the training array's tasks sized
from the training configs: CPUs for the loader workers, ``job_mem``) that read the files of their own
submission (``train-TIME.yaml``), which no later submission rewrites. A job's folder is
``RUNS/experiments/NAME/{floors,train}/JOB``; an interrupted training job resumes there, a failed one is
tried again, a job whose only changes are a larger ``steps`` or the stopping rule continues from its last
checkpoint, a folder whose job was defined otherwise, or whose checkpoint is of other data (scene
groups cut again since), is moved aside (``JOB.replaced-TIME``), never reused. ``report`` writes
``summary.json`` and ``report.md`` into the results folder; ``seaice figures --experiment`` draws its
figures.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
import time
from pathlib import Path

import yaml

from .. import batch, logs
from ..arguments import Parser
from ..atomic import folder_lock, not_there, write_text
from ..engine import checkpoints
from ..engine.config import job_resources
from ..engine.run import Run
from ..stopping import STOPPED_EXIT_CODE
from ..walk import Walk
from . import JOB_FILE, folder_key, probes, report
from .spec import Experiment, Job, load

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = {"floors": NOTEBOOKS / "04_floors.ipynb", "train": NOTEBOOKS / "04_train.ipynb"}


def job_parameters(exp: Experiment, job: Job) -> dict:
    """The notebook parameters of one job (``out_dir`` is the execution's folder)."""
    run = {} if job.kind == "floors" else {"run": job.run}
    return {"experiment": str(exp.path), **run, "fold": job.fold, "seed": job.seed, "out_dir": "{run_dir}"}


def prepare_folder(exp: Experiment, job: Job, folder: Path) -> str | None:
    """Make ``folder`` ready to run ``job`` again: a folder of another definition is moved aside
    (one that differs only by a smaller ``steps`` or another stopping rule is kept: training
    continues it), as is one whose checkpoint training would refuse for its data (:func:`other_data`),
    and the record of an earlier completed execution removed (its result is missing or stale).
    What was done, or None."""
    note, held = None, None
    if (folder / JOB_FILE).is_file():
        try:
            key, why = folder_key(folder), "another definition"
        except ValueError:
            key, why = None, f"a damaged {JOB_FILE}"
        if key != exp.key(job) and (note := continued(exp, job, folder, key)) is None:
            held = why
    if held is None and job.kind == "train":
        held = other_data(exp, folder)
    if held is not None:
        aside = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(aside)
        return f"{job.name}: its folder held {held}, moved to {aside.name}"
    status = folder / batch.STATUS
    if status.is_file():
        status.unlink()  # batch would skip a completed execution; its result is what counts here
        note = note or f"{job.name}: ran before without a current result, runs again"
    return note


def other_data(exp: Experiment, folder: Path) -> str | None:
    """What the checkpoint of the training job run in ``folder`` holds that training would not resume
    from on the experiment's store as it is now, or None: a checkpoint of scene groups cut again
    since (:func:`~seaice_lib.engine.checkpoints.trained_on_other_groups`; one of the store's former
    identity, the same patches, resumes), or an unreadable one."""
    if not folder.is_dir():  # never run
        return None
    path = Run(folder).last_checkpoint
    if not path.is_file():
        return None
    try:
        stale = checkpoints.trained_on_other_groups(path, exp.store)
    except ValueError:
        return f"an unreadable {path.relative_to(folder)}"
    return f"a checkpoint of other data (scene groups of {exp.store} cut again since)" if stale else None


def continued(exp: Experiment, job: Job, folder: Path, key: str | None) -> str | None:
    """Why the training job in ``folder`` (of definition ``key``) continues as ``job``, or None
    where it may not: it is ``job`` with a smaller budget under a schedule that does not depend on
    the run's length (training then continues it exactly, see ``engine.checkpoints.extends``)
    and/or under another stopping rule (which decides where a run ends, never its steps)."""
    if job.kind != "train" or key is None:
        return None
    try:
        cfg = Run(folder).config
    except ValueError:
        return None
    if cfg is None:
        return None
    steps = cfg.steps
    rule = {"min_gain": cfg.converge_min_gain, "patience": cfg.converge_patience}
    if cfg.converge_max_dip is not None:
        rule["max_dip"] = cfg.converge_max_dip
    cap = exp.runs[job.run].steps
    schedule = {**exp.training, **exp.runs[job.run].training}.get("schedule", "cosine")
    if not isinstance(steps, int) or not 0 < steps <= cap or (steps < cap and schedule == "cosine"):
        return None
    if exp.key(job, steps, rule) != key:
        return None
    changes = ([f"its budget rises from {steps} to {cap} steps"] if steps < cap else []) + \
        ([f"its stopping rule changes from {rule} to {exp.stopping_rule()}"] if rule != exp.stopping_rule() else [])
    return f"{job.name}: {' and '.join(changes)}, continues"


def write_batches(exp: Experiment, pending: list[Job], out: Path, submission: str = "") -> dict[str, Path]:
    """One batch file per notebook (floors, train) listing the pending jobs: ``KIND.yaml``, or
    ``KIND-SUBMISSION.yaml`` for a submission whose job array reads it later (:func:`submission_name`)."""
    files = {}
    for kind in ("floors", "train"):
        jobs = [j for j in pending if j.kind == kind]
        if not jobs:
            continue
        for job in jobs:
            if note := prepare_folder(exp, job, out / kind / job.name):
                print(note, flush=True)
        doc = {"sets": [{"name": j.name, "parameters": job_parameters(exp, j)} for j in jobs]}
        name = f"{kind}-{submission}" if submission else kind
        files[kind] = write_text(out / f"{name}.yaml", yaml.safe_dump(doc, sort_keys=False))
    return files


def submission_name(out: Path) -> str:
    """A name (the time, ``20260101T120000``, and ``-2``, ``-3`` ... after it where taken) that no
    earlier submission's batch files in ``out`` have: a job array reads its file when each task
    starts, so a later submission must not rewrite it."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    name, n = stamp, 1
    while any((out / f"{kind}-{name}.yaml").exists() for kind in NOTEBOOK):
        n += 1
        name = f"{stamp}-{n}"
    return name


def _megabytes(size: str) -> float:
    """A SLURM memory size ("16G", "512M", "2048": megabytes) in megabytes."""
    return int(size.rstrip("KMGT")) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}.get(size[-1], 1)


def train_resources(exp: Experiment, jobs: list[Job], out: Path) -> list[str]:
    """``seaice batch`` options sizing the training array's tasks for the most any of ``jobs`` asks:
    a CPU for the trainer and each of its loader workers, and the config's ``job_mem``
    (:func:`seaice_lib.engine.config.job_resources`, as ``train.sbatch`` is sized)."""
    cpus, mems = 1, []
    for job in jobs:
        for option in job_resources(exp.train_config(job, out / job.name), trainers=1):
            key, _, value = option.partition("=")
            if key == "--cpus-per-task":
                cpus = max(cpus, int(value))
            else:
                mems.append(value)
    return ["--cpus-per-task", str(cpus)] + (["--mem", max(mems, key=_megabytes)] if mems else [])


REPORT_LOCK = ".report.lock"  # in the results folder, and the --into document's, held by `experiment report`


def run(exp: Experiment, runs: Path, jobs: int, slurm: bool, only: list[str] | None = None,
        folds: list[int] | None = None, seeds: list[int] | None = None) -> int:
    every = exp.jobs(only, folds, seeds)
    pending = [j for j in every if not exp.finished(j)]
    print(f"{exp.name}: {len(every)} jobs, {len(every) - len(pending)} finished, {len(pending)} to run", flush=True)
    if not pending:
        return 0
    out = runs / "experiments" / exp.name
    code = 0
    # one runner (or submitter) at a time: of the runs folder, and of the results every runs folder writes
    with folder_lock(out, "running the experiment"), folder_lock(exp.results, "running the experiment"):
        for kind, file in write_batches(exp, pending, out, submission_name(out) if slurm else "").items():
            args = [str(NOTEBOOK[kind]), str(file), "--name", f"experiments/{exp.name}/{kind}", "--runs",
                    str(runs), "--jobs", str(jobs)] + (["--slurm"] if slurm else [])
            if slurm and kind == "train":
                args += train_resources(exp, [j for j in pending if j.kind == "train"], out / "train")
            code = max(code, batch.main(args, prog="seaice batch"))
            if code == STOPPED_EXIT_CODE:  # stopped by a signal: its jobs resume on the next run
                return code
    if not slurm:
        left = [j.name for j in every if not exp.finished(j)]
        if left:
            print(f"{len(left)} jobs without a result: {', '.join(left)}", flush=True)
        code = max(code, int(bool(left)))
    return code


def status(exp: Experiment) -> int:
    every = exp.jobs()
    problems = {j.name: problem for j in every if (problem := exp.result_problem(j)) is not None}
    missing = [j for j in every if j.name in problems]
    stale = [j.name for j in missing if problems[j.name] == "stale"]
    damaged = [j.name for j in missing if problems[j.name].startswith("damaged")]
    print(f"{exp.name}: {len(every) - len(missing)} of {len(every)} jobs finished")
    named = collections.Counter(exp.read_result(j).get("experiment") for j in every if j.name not in problems)
    if others := {name: n for name, n in named.items() if isinstance(name, str) and name != exp.name}:  # renamed
        print(f"of these, written by an experiment of another name (results count by their job's definition, not "
              f"the name): {', '.join(f'{n} by {name}' for name, n in sorted(others.items()))}")
    if stale:
        print(f"stale (results of another definition or of scene groups cut again since, will run again): {', '.join(stale)}")
    if damaged:
        print(f"unreadable results (damaged, will run again): {', '.join(damaged)}\n"
              + "\n".join(f"  {problems[name].removeprefix('damaged: ')}" for name in damaged))
    if rest := [j.name for j in missing if problems[j.name] == "missing"]:
        print(f"to run: {', '.join(rest)}")
    return int(bool(missing))


def write_report(exp: Experiment, into: Path | None = None) -> dict:
    """``summary.json`` and ``report.md`` in the results folder; with ``into``, the report also
    replaces the block between ``<!-- report NAME -->`` and ``<!-- end report NAME -->`` there.
    One reporter at a time (a lock of its own in the results folder: a runner writes only ``jobs/``
    there, so a report drawn while jobs run lists them as not finished), and one writer of ``into``
    (the same lock in its folder: two experiments' reports into one document both stay)."""
    with contextlib.ExitStack() as held:
        held.enter_context(folder_lock(exp.results, "writing the report", REPORT_LOCK))
        if into is not None and into.parent.resolve() != exp.results.resolve():  # DOC is read, changed, written
            held.enter_context(folder_lock(into.parent, f"writing a report into {into.name}", REPORT_LOCK))
        doc = report.aggregate(exp)
        text = report.markdown(doc)
        if into is not None:
            write_text(into, report.into_block(into.read_text(), exp.name, text, str(into)))
        write_text(exp.results / "summary.json", json.dumps(doc, indent=1))
        write_text(exp.results / "report.md", text)
    return doc


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description=__doc__.splitlines()[0].split(": ", 1)[1], epilog=logs.EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {name: sub.add_parser(name, help=text) for name, text in (
        ("folds", "print the folds the file gives on its store"),
        ("run", "run the jobs without a current result through seaice batch"),
        ("status", "which jobs are finished (exit 1 while some are not)"),
        ("report", "summary.json and report.md in the results folder"),
        ("probe", "score finished training jobs with their history altered (results/probes/); "
                  "exit 1 while some are not finished"))}
    for p in commands.values():
        p.add_argument("experiment", type=Path, help="the experiment YAML (experiments/*.yaml)")
    for name in ("run", "probe"):
        commands[name].add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default runs/)")
        commands[name].add_argument("--only", nargs="+", action="extend", metavar="RUN",
                                    help="only these runs ('floors': the floors job)")
        commands[name].add_argument("--folds", nargs="+", action="extend", type=int, metavar="F", help="only these folds")
        commands[name].add_argument("--seeds", nargs="+", action="extend", type=int, metavar="S", help="only these seeds")
    commands["run"].add_argument("--jobs", type=int, default=2, help="executions at a time (array tasks with --slurm)")
    commands["run"].add_argument("--slurm", action="store_true", help="submit job arrays instead of running here")
    commands["report"].add_argument("--into", type=Path, default=None, metavar="DOC",
                                    help="also write the report into DOC, between <!-- report NAME --> and "
                                         "<!-- end report NAME --> (docs/results.md)")
    args = parser.parse_args(argv)
    if not args.experiment.is_file():
        parser.error(f"experiment {args.experiment}: {not_there(args.experiment, folder=False)}")
    if args.command == "probe" and not args.runs.is_dir():  # run makes its runs folder, probe reads it
        parser.error(f"--runs {args.runs}: {not_there(args.runs, folder=True)}")
    if getattr(args, "into", None) is not None:
        if not args.into.is_file():
            parser.error(f"--into {args.into}: {not_there(args.into, folder=False)}")
        args.into = args.into.resolve()  # a link: its document is written (and its folder locked), not the link
    if getattr(args, "jobs", 1) < 1:
        parser.error("--jobs must be at least 1")
    try:
        exp = load(args.experiment)
        exp.folds()
        if args.command in ("run", "probe"):
            exp.jobs(args.only, args.folds, args.seeds)
        if getattr(args, "into", None) is not None:  # its markers, before anything is aggregated
            report.into_block(args.into.read_text(), exp.name, "", str(args.into))
        if args.command == "report" and (other := report.reported_name(exp.results)) not in (None, exp.name):
            raise ValueError(f"{exp.results}: holds the report of experiment {other!r} (summary.json), which a report "
                             f"of {exp.name!r} would replace: give this file a results folder of its own")
    except ValueError as err:
        parser.error(str(err))
    if args.command == "probe" and args.only and "floors" in args.only:
        parser.error("--only floors: the floors are not probed (probes score a training job's weights)")
    if args.command == "folds":
        for f in exp.folds():
            print(f"fold {f.index}: held out {', '.join(f.held_out)} ({len(f.val)} scenes); inner validation "
                  f"{f.inner} ({len(f.inner_scenes)} scenes); training {len(f.train)} scenes")
        return 0
    if args.command == "status":
        return status(exp)
    if args.command == "report":
        doc = write_report(exp, args.into)  # a store out of date: one line, exit 1
        print(report.markdown(doc))
        if damaged := report.damaged_jobs(doc):  # an unfinished experiment is reported (exit 0), a damaged one is not
            print(f"{exp.name}: {len(damaged)} damaged job results left out of the report (named in it): "
                  f"{', '.join(damaged)}", file=sys.stderr)
        return int(bool(damaged))
    if args.command == "probe":
        return probe(exp, args.runs.resolve(), args.only, args.folds, args.seeds)
    return run(exp, args.runs.resolve(), args.jobs, args.slurm, args.only, args.folds, args.seeds)


def probe(exp: Experiment, runs: Path, only: list[str] | None = None, folds: list[int] | None = None,
          seeds: list[int] | None = None) -> int:
    """:func:`probes.probe_history` for each finished training job (a failure named, the others go
    on); the table, and the jobs not finished yet, named. Exit 1 where a job asked for was not probed.
    One prober at a time writes the results' ``probes/`` (a second one ends at once naming the first)."""
    walk, docs = Walk("jobs", label="not probed"), []
    trained = [j for j in exp.jobs(only, folds, seeds) if j.kind == "train"]
    with folder_lock(exp.results / "probes", "probing the experiment"):
        for job in (j for j in trained if exp.finished(j)):
            walk.attempt(job.name, lambda: docs.append(probe_job(exp, job, runs)))
    print(report.probe_table(docs))
    waiting = [j.name for j in trained if not exp.finished(j)]
    print(walk.summary("probed"), file=sys.stderr if walk.failed else sys.stdout)
    if waiting:
        print(f"{len(waiting)} jobs not finished yet, not probed: {', '.join(waiting)}", file=sys.stderr)
    return max(walk.exit_code, int(bool(waiting)))


def probe_job(exp: Experiment, job: Job, runs: Path) -> dict:
    """:func:`probes.probe_history` of the finished training ``job`` in the run folder its result
    records (``run_dir``: where it ran, notebook 04_train's ``out_dir`` too) where that is on this
    machine, else in the runs folder ``runs``; ValueError naming the folders where it is in neither."""
    folder = runs / "experiments" / exp.name / "train" / job.name
    recorded = exp.read_result(job).get("run_dir")
    if isinstance(recorded, str) and Path(recorded).is_dir():
        folder = Path(recorded)
    if not folder.is_dir():
        also = f" nor in the run folder its result records ({recorded})" if isinstance(recorded, str) else ""
        raise ValueError(f"{folder}: no such folder, {job.name} has not run in {runs}{also}: give the runs folder it "
                         f"ran in as --runs, or run it there (`seaice experiment run {exp.path} --runs {runs}`, after "
                         f"removing its result {exp.result_path(job)})")
    return probes.probe_history(exp, job, folder)
