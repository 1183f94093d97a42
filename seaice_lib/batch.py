"""``seaice batch NOTEBOOK GRID.yaml --name NAME``: one notebook over a grid of parameter sets.

``GRID.yaml`` holds ``parameters`` (the same for every execution) and either ``grid`` (name ->
list of values; every combination runs, in order) or ``sets`` (a list of ``{name, parameters}``:
exactly these executions, as ``seaice experiment`` writes them). ``{run_dir}`` in a string value
(also inside lists and mappings) becomes the folder of the execution, ``runs/NAME/<set>/`` (``<set>``
like ``model-unet_seed-0``), which holds the executed notebook, its ``parameters.yaml`` and
``status.json``. Locally ``--jobs`` executions run at a time; ``--slurm`` submits a job array
(``slurm/batch.sbatch``, one set per task, each in the same ``--cwd``; with ``--task N`` only set N)
and a summary job after it. A failed execution is reported and the others go on; running the same
command again skips the sets that completed with the same parameters, in the same working
directory and by this seaice_lib release (``--rerun`` runs them anyway) and retries the rest;
completed means the set's status.json and its executed notebook's own papermill record (finished,
no exception, the same parameters) both say so, and that executed notebook holds the notebook's cells.
``summary.csv`` and ``summary.md`` (``--summary``: only them) list what ran, what failed (with the
error) and where each notebook is; a set is "completed" there only when it would be skipped: one
run by another notebook, by the notebook before it changed, with other parameters, in another
working directory or by another release is "stale".
A stop signal ends a local batch's running executions with it (:class:`Executions`), exit 124;
on Linux a batch killed outright (SIGKILL, the OOM killer) takes them with it too."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from . import logs, yamldoc
from .arguments import Parser
from .atomic import FolderBusy, folder_lock, out_folder, remove_unused, write_text
from .jsondoc import read_json
from .notebook import (
    FILE_PARAMETERS,
    KERNEL,
    check_parameters,
    declared_parameters,
    derived_output,
    execution_error,
    new_output_folders,
    notebook_cells,
    notebook_path,
    output_parameters,
    papermill_record,
)
from .provenance import another_release, file_sha256, git_commit, provenance
from .stages import other_stage
from .stopping import STOPPED_EXIT_CODE, TERMINAL_STOP_SIGNALS, StopFlag, ending_with_this_process

log = logging.getLogger(__name__)
STATUS = "status.json"  # written by each execution when it ends
STATUS_SHAPE = {"status": str, "seconds": float, "notebook": str, "error": str}
OWN_FILES = ("summary.csv", "summary.md", "logs")  # what the batch writes beside the sets' folders
PAPERMILL_TIMEOUT_S = 600  # kernel start timeout (shared cluster nodes can be slow)
# A kernel that dies before its first reply ran nothing: two kernels started at once can race for
# the same free ports. Such an execution is started again, at most this many times.
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"
KERNEL_START_RETRIES = 2
# A set's folder name: the file-system limit is 255 bytes; the executed notebook's temporary names
# inside it are short, so a name may take most of it.
MAX_SET_NAME = 200


class Executions:
    """The papermill processes a batch runs, each in its own process group, so that :meth:`stop`
    (the batch's stop signal) ends them all, not only the batch, and each killed with the batch
    however it dies (SIGKILL, the OOM killer; on Linux: :func:`ending_with_this_process`); their
    kernels end with them. No kernel trains on unwatched, and no orphan writes into a set's folder
    once its lock is free. Once stopped, no further execution starts."""

    def __init__(self) -> None:
        self._guard = threading.RLock()  # a second signal may arrive inside stop()
        self._running: set[subprocess.Popen] = set()
        self.stopped = False

    def run(self, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess | None:
        """``command`` to its end, its output captured; None when the batch was stopped before it started."""
        with self._guard:
            if self.stopped:
                return None
            proc = subprocess.Popen(ending_with_this_process(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, start_new_session=True)
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate()
        finally:
            with self._guard:
                self._running.discard(proc)
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Start no more executions and send SIGTERM to the process groups of the running ones."""
        with self._guard:
            self.stopped = True
            for proc in self._running:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:  # ended meanwhile
                    pass


def read_sets(path: str | Path) -> list[tuple[str, dict]]:
    """Every parameter set of a grid file as (set name, parameters); ValueError naming the file and
    the entry."""
    path = Path(path)
    try:
        doc = yamldoc.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the grid: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict) or set(doc) - {"parameters", "grid", "sets"} or ("grid" in doc and "sets" in doc):
        raise ValueError(f"{path}: a grid file is a mapping with 'parameters' and either 'grid' or 'sets'")
    if "sets" not in doc:
        fixed, grid = read_grid(path, doc)  # its errors name the file
        try:
            return parameter_sets(fixed, grid)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    fixed, listed = doc.get("parameters") or {}, doc["sets"]
    if not isinstance(fixed, dict) or not isinstance(listed, list) or not listed:
        raise ValueError(f"{path}: 'parameters' must be a mapping and 'sets' a non-empty list")
    sets = []
    for k, entry in enumerate(listed):
        if not (isinstance(entry, dict) and set(entry) == {"name", "parameters"} and isinstance(entry["name"], str)
                and re.fullmatch(r"[A-Za-z0-9._=-]+", entry["name"]) and entry["name"].strip(".")
                and isinstance(entry["parameters"], dict)):
            raise ValueError(f"{path}: sets[{k}] must be {{name: a folder name, parameters: a mapping}}")
        if len(entry["name"]) > MAX_SET_NAME:
            raise ValueError(f"{path}: sets[{k}]: its name has {len(entry['name'])} characters, more than the "
                             f"{MAX_SET_NAME} a folder name may have here; shorten it")
        if entry["name"].lower() in OWN_FILES:
            raise ValueError(f"{path}: sets[{k}] is named {entry['name']!r}, a file of the batch itself "
                             f"({', '.join(OWN_FILES)}); rename the set")
        sets.append((entry["name"], fixed | entry["parameters"]))
    if len({n for n, _ in sets}) != len(sets):
        raise ValueError(f"{path}: two sets have the same name")
    return sets


def read_grid(path: str | Path, doc: object = None) -> tuple[dict, dict[str, list]]:
    """(fixed parameters, grid) of a grid file; ValueError naming the file and the entry."""
    path = Path(path)
    if doc is None:
        try:
            doc = yamldoc.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read the grid: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict) or set(doc) - {"parameters", "grid"}:
        raise ValueError(f"{path}: a grid file is a mapping with 'parameters' and 'grid' only")
    fixed, grid = doc.get("parameters") or {}, doc.get("grid") or {}
    if not isinstance(fixed, dict) or not isinstance(grid, dict):
        raise ValueError(f"{path}: 'parameters' and 'grid' must be mappings")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid entry {name!r} must be a non-empty list of values")
    if overlap := set(fixed) & set(grid):
        raise ValueError(f"{path}: {sorted(overlap)} both fixed and in the grid")
    return fixed, grid


def parameter_sets(fixed: dict, grid: dict[str, list]) -> list[tuple[str, dict]]:
    """Every combination of the grid as (set name, parameters), in the grid's order."""
    sets = []
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values))
        name = "_".join(f"{k}-{v}" for k, v in chosen.items()) or "default"
        name = re.sub(r"[^A-Za-z0-9._=-]+", "-", name)
        if len(name) > MAX_SET_NAME:
            raise ValueError(f"the set {chosen} gets a folder name of {len(name)} characters, more than the "
                             f"{MAX_SET_NAME} allowed; use shorter values or list named 'sets' instead of a 'grid'")
        sets.append((name, fixed | chosen))
    names = [n for n, _ in sets]
    if len(set(names)) != len(names):
        raise ValueError("two parameter sets get the same folder name; make the grid's values distinct")
    return sets


def shared_outputs(sets: list[tuple[str, dict]], defaults: Mapping[str, object], out: Path, cwd: Path,
                   notebook: Path) -> str:
    """The first output (a parameter of :func:`~seaice_lib.notebook.output_parameters`, given or
    the notebook's default; relative to the kernel's folder ``cwd``) that two of ``sets`` would
    write into at once, said as "sets A and B both write into out_dir PATH"; "" when none is shared.
    An empty value is the folder the notebook derives (:func:`~seaice_lib.notebook.derived_output`:
    04_train's from its config, else its model), compared with the others the same way."""
    seen: dict[tuple[str, object], str] = {}
    for name, parameters in sets:
        values = _resolved(dict(defaults) | parameters, out / name)
        for key in output_parameters(notebook):
            value = values.get(key)
            folder = derived_output(notebook, values, cwd) if value == "" else \
                (cwd / value).resolve() if isinstance(value, str) else None
            if folder is None:
                continue
            if (key, folder) in seen:
                first = seen[key, folder]
                if isinstance(folder, Path):
                    return f"sets {first} and {name} both write into {key} {folder}"
                return (f"sets {first} and {name} both leave {key} empty with {folder[0]} {folder[1]}, so the notebook "
                        "derives one folder for both")
            seen[key, folder] = name
    return ""


def _resolved(parameters: dict, run_dir: Path) -> dict:
    """``parameters`` with ``{run_dir}`` in every string, at any depth of lists and mappings, made ``run_dir``."""
    def resolve(value: object) -> object:
        if isinstance(value, str):
            return value.replace("{run_dir}", str(run_dir))
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    return {k: resolve(v) for k, v in parameters.items()}


def same_parameters(recorded: object, values: dict) -> bool:
    """Whether parameters a record holds (read back from JSON) are ``values``, compared as sorted JSON:
    a NaN value is the same NaN (``==`` says NaN differs from itself)."""
    return json.dumps(recorded, sort_keys=True) == json.dumps(values, sort_keys=True)


def executed_mismatch(executed: Path, values: dict, notebook: Path) -> str:
    """Why the executed notebook ``executed`` is not one papermill finished without an exception
    with the parameters ``values`` (what its own ``metadata.papermill`` records), of ``notebook``
    as it is now (the same cells: not one that an execution of another notebook, or of this one
    before it changed, left or wrote over the set's); "" when it is."""
    try:
        meta = papermill_record(executed)
        ran = notebook_cells(executed)
    except FileNotFoundError:
        return f"{executed} is gone"
    except (OSError, ValueError) as err:
        return f"{executed} cannot be read as a notebook ({str(err).splitlines()[0]})"
    if meta is None or not meta.get("end_time"):
        return f"{executed} records no finished papermill execution"
    if meta.get("exception"):
        return f"{executed} records an execution that failed"
    if not same_parameters(meta.get("parameters"), values):
        return f"{executed} was executed with other parameters"
    try:
        if ran != notebook_cells(notebook):
            return f"{executed} is an execution of other cells than {notebook} has"
    except (OSError, ValueError) as err:
        return f"{notebook} cannot be read as a notebook ({str(err).splitlines()[0]})"
    return ""


def other_execution(status: dict, notebook: Path, values: dict, cwd: Path) -> str:
    """Why the execution a ``status.json`` (``status``) records is not one of ``notebook`` as it is
    now (its SHA-256) with ``values``, in the working directory ``cwd`` (resolved: relative paths
    in the parameters name its files) and by the seaice_lib release running now; "" when it is."""
    if not same_parameters(status.get("parameters"), values):
        return "with other parameters"
    if (ran := Path(status.get("notebook", "")).name) != notebook.name:
        return f"with another notebook ({ran or 'none recorded'}, not {notebook.name})"
    if status.get("notebook_sha256") != file_sha256(notebook):
        return f"with {notebook} as it was before it changed"
    if (ran_in := status.get("cwd")) != str(cwd):
        return f"in {ran_in or 'a working directory it did not record'}, not {cwd}"
    if (other := another_release(status.get("made_by"))) is not None:
        return f"by {other}, not by the seaice_lib release running now"
    if changed := [name for name, sha in read_files(values, cwd).items() if (status.get("files_sha256") or {}).get(name) != sha]:
        return f"with {', '.join(f'{name} {values[name]}' for name in changed)} as it was before it changed"
    return ""


def read_files(values: dict, cwd: Path) -> dict[str, str | None]:
    """SHA-256 of each file a set's parameters of :data:`~seaice_lib.notebook.FILE_PARAMETERS` name
    (relative to ``cwd``; None where it is not there): an execution is of those files as they were."""
    def sha(path: Path) -> str | None:
        return file_sha256(path) if path.is_file() else None
    return {name: sha(cwd / value) for name in FILE_PARAMETERS if isinstance(value := values.get(name), str) and value}


def completed(run_dir: Path, notebook: Path, values: dict, cwd: Path) -> dict | None:
    """The status of an execution in ``run_dir`` that completed ``notebook``, as it is now, with
    ``values`` in ``cwd`` (:func:`other_execution`), and whose executed notebook there says so too
    (:func:`executed_mismatch`: a status edited or left over an executed notebook that is gone or
    another is not believed), else None."""
    try:
        status = read_json(run_dir / STATUS, STATUS_SHAPE)
    except (OSError, ValueError):
        return None  # none, or damaged: run again
    if status.get("status") != "completed":
        return None
    if other := other_execution(status, notebook, values, cwd):
        log.warning("%s: completed %s: the set runs again", run_dir.name, other)
        return None
    if why := executed_mismatch(run_dir / notebook.name, values, notebook):
        log.warning("%s says completed, but %s: the set runs again", run_dir / STATUS, why)
        return None
    return status


def _thread_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def execute(notebook: Path, name: str, parameters: dict, out: Path, cwd: Path, rerun: bool = False,
            threads: int | None = None, executions: Executions | None = None) -> dict:
    """Run ``notebook`` with ``parameters`` into ``out/name/``, the kernel in ``cwd`` (resolved); its
    status (also in status.json).

    A set that completed with the same parameters, the same notebook, in ``cwd`` and by this release
    is not run again (unless ``rerun``): its status
    comes back with ``"skipped": True``; one another process runs now comes back failed, naming it,
    its folder untouched. ``threads`` caps the kernel's OpenMP threads (torch's too) unless
    OMP_NUM_THREADS is set. With ``executions`` stopped, a set not yet started or ended by the stop
    comes back ``"stopped"``, without a status.json: the next run of the batch runs it."""
    run_dir = (out / name).resolve()
    values = _resolved(parameters, run_dir)
    try:  # not the folder's own lock: the notebook may take that (a training run's out_dir)
        with folder_lock(run_dir, f"running set {name}", ".batch.lock"):
            return _execute(notebook, name, values, run_dir, cwd, rerun, threads, executions or Executions())
    except FolderBusy as err:
        return {"set": name, "status": "failed", "error": str(err), "seconds": 0.0, "notebook": ""}


def _execute(notebook: Path, name: str, values: dict, run_dir: Path, cwd: Path, rerun: bool,
             threads: int | None, executions: Executions) -> dict:
    if not rerun and (done := completed(run_dir, notebook, values, cwd)):
        return done | {"skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "papermill.log").unlink(missing_ok=True)  # an earlier failure's, not this execution's
    (run_dir / STATUS).unlink(missing_ok=True)  # an earlier execution's: one killed now leaves none
    write_text(run_dir / "parameters.yaml", yaml.safe_dump(values, sort_keys=False))
    executed = run_dir / notebook.name
    executed.unlink(missing_ok=True)  # papermill writes in place: never through a (hard) link into another file
    digest = file_sha256(notebook)  # the notebook as it runs
    files = read_files(values, cwd)  # and the files its parameters name (a training config)
    made = new_output_folders(notebook, values, cwd)
    # the code its kernel imports: what is checked out now, which a commit since the batch started changed
    commit = git_commit(Path(__file__).resolve().parent)
    if commit != provenance()["commit"]:
        log.warning("%s: runs commit %s, checked out since this batch started on %s", name, commit,
                    provenance()["commit"])
    start = time.perf_counter()
    try:
        for attempt in range(KERNEL_START_RETRIES + 1):
            ran = executions.run([sys.executable, "-m", "papermill", str(notebook.resolve()), str(executed),
                                  "-f", str(run_dir / "parameters.yaml"), "--cwd", str(cwd), "--no-progress-bar",
                                  "--start-timeout", str(PAPERMILL_TIMEOUT_S), "-k", KERNEL], _thread_env(threads))
            if ran is None or (ran.returncode and executions.stopped):
                return {"set": name, "status": "stopped", "error": "", "notebook": str(executed),
                        "seconds": round(time.perf_counter() - start, 1)}
            proc = ran
            if not (proc.returncode and KERNEL_START_FAILURE in proc.stderr) or attempt == KERNEL_START_RETRIES:
                break
            log.info("%s: its kernel died before it ran anything; started again", name)
    finally:
        for folder in made:  # one its kernel made and wrote nothing into (refused in a check)
            remove_unused(folder)
    error = ""
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]  # a kernel that never ran: its last line
        error = execution_error(notebook, executed) or (lines[-1] if lines else "failed")
        write_text(run_dir / "papermill.log", proc.stderr)
    status = {"set": name, "status": "failed" if proc.returncode else "completed", "error": error.strip(),
              "seconds": round(time.perf_counter() - start, 1), "notebook": str(executed),
              "notebook_sha256": digest, "parameters": values, "cwd": str(cwd), "files_sha256": files,
              "made_by": provenance() | {"commit": commit}}
    write_text(run_dir / STATUS, json.dumps(status, indent=1))
    return status


def summarise(sets: list[tuple[str, dict]], out: Path, notebook: Path, cwd: Path) -> pd.DataFrame:
    """One row per set from the status files; a set without one is "not run", one whose status
    records another execution than of ``notebook`` as it is now with the set's parameters in ``cwd``
    (:func:`other_execution`), or says completed over an executed notebook that does not
    (:func:`executed_mismatch`), is "stale": the same test as :func:`completed`."""
    rows = []
    for name, parameters in sets:
        path = out / name / STATUS
        if path.is_file():
            try:
                s = read_json(path, STATUS_SHAPE)
            except ValueError as err:
                s = {"status": "unknown", "seconds": None, "notebook": "", "error": f"damaged status: {err}"}
            else:
                run_dir = (out / name).resolve()
                values = _resolved(parameters, run_dir)
                if other := other_execution(s, notebook, values, cwd):
                    s = {**s, "status": "stale", "error": f"ran {s['status']} {other}; run the set again"}
                elif s["status"] == "completed" and (
                        why := executed_mismatch(run_dir / notebook.name, values, notebook)):
                    s = {**s, "status": "stale", "error": f"{path} says completed, but {why}; run the set again"}
            rows.append({"set": name, "status": s["status"], "seconds": s["seconds"], "notebook": s["notebook"],
                         "error": s["error"]})
        else:
            started = (out / name / "parameters.yaml").is_file()  # written as an execution starts
            rows.append({"set": name, "status": "not run", "seconds": None, "notebook": "",
                         "error": "no status.json: the execution never ended (see its job log)" if started
                         else "not started yet"})
    table = pd.DataFrame(rows)
    write_text(out / "summary.csv", table.to_csv(index=False))
    write_text(out / "summary.md", table.to_markdown(index=False))
    return table


def available_cpus() -> int:
    """The CPUs this process may use: SLURM's ``SLURM_CPUS_PER_TASK`` inside a job (a node's
    ``os.cpu_count`` is all of its cores, not the job's), else the CPUs it is bound to."""
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if granted.isdigit() and int(granted) > 0:
        return int(granted)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def submit_array(notebook: Path, grid: Path, name: str, runs: Path, cwd: Path, tasks: str, rerun: bool = False,
                 resources: Sequence[str] = ()) -> tuple[str, str]:
    """The job array (``slurm/batch.sbatch``, one set per task: ``tasks`` is sbatch's ``--array``,
    e.g. ``0-5%2``; each runs the notebook in ``cwd``; ``resources``: more sbatch options for its
    tasks, e.g. ``--cpus-per-task=8``) and the summary job after it."""
    out = runs / name
    (out / "logs").mkdir(parents=True, exist_ok=True)
    slurm = Path(__file__).parents[1] / "slurm"
    script = slurm / "batch.sbatch"
    common = [str(notebook), str(grid), name, str(runs), "--cwd", str(cwd)]

    def sbatch(what: str, *args: str) -> str:  # through sbatch.sh: account and partition of slurm/config.sh
        proc = subprocess.run([str(slurm / "sbatch.sh"), "--parsable", f"--job-name=seaice-batch-{name}", *args],
                              capture_output=True, text=True)
        if proc.returncode:  # OSError: the command line prints it as one error line, exit 1
            raise OSError(f"sbatch refused {what}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
        return proc.stdout.strip().split(";")[0]

    array = sbatch("the job array", f"--array={tasks}", f"--output={out / 'logs'}/%A_%a.out",
                   *resources, str(script), *common, *(["--rerun"] if rerun else []))
    summary = sbatch(f"the summary job (job array {array} is submitted)", f"--dependency=afterany:{array}",
                     f"--output={out / 'logs'}/summary-%j.out", str(script), *common, "--summary")
    return array, summary


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description=__doc__.splitlines()[0].split(": ", 1)[1], epilog=logs.EPILOG)
    parser.add_argument("notebook", type=Path, help="a notebook: its path, or its name in notebooks/ (04_train)")
    parser.add_argument("grid", type=Path, help="YAML with 'parameters' and 'grid' (or 'sets')")
    parser.add_argument("--name", required=True, help="executions go under RUNS/NAME/<set>/")
    parser.add_argument("--runs", type=out_folder, default=Path("runs"), help="default runs/")
    parser.add_argument("--jobs", type=int, default=2, help="executions at a time (locally) or array tasks at a time")
    parser.add_argument("--cwd", type=Path, default=None,
                        help="the kernel's working directory (default: the notebook's folder); a set that "
                             "completed in another one runs again")
    parser.add_argument("--slurm", action="store_true", help="submit a job array and a summary job instead")
    parser.add_argument("--cpus-per-task", type=int, default=None, metavar="N",
                        help="with --slurm: CPUs of each array task (default: batch.sbatch's 2); the kernel's "
                             "threads follow what SLURM grants")
    parser.add_argument("--mem", default=None, metavar="SIZE", help="with --slurm: memory of each array task (e.g. 16G)")
    parser.add_argument("--task", type=int, default=None,
                        help="run only parameter set TASK (0-based; with --slurm: submit only that set)")
    parser.add_argument("--summary", action="store_true", help="only write the summary of what ran")
    parser.add_argument("--rerun", action="store_true",
                        help="run sets that completed before with the same parameters again (default: skip them)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        parser.error(f"--cpus-per-task must be at least 1, not {args.cpus_per_task}")
    if args.mem is not None and not re.fullmatch(r"[1-9][0-9]*[KMGT]?", args.mem):
        parser.error(f"--mem {args.mem!r}: a SLURM memory size such as 16G")
    if args.cwd is not None and not args.cwd.is_dir():
        parser.error(f"--cwd {args.cwd}: no such folder")
    if (args.cpus_per_task is not None or args.mem is not None) and not args.slurm:
        parser.error("--cpus-per-task and --mem size the array tasks of --slurm")
    try:
        args.notebook = notebook_path(args.notebook)
        known = set(declared_parameters(args.notebook))
        sets = read_sets(args.grid)
    except ValueError as err:
        parser.error(str(err))
    unknown = sorted({k for _, p in sets for k in p} - known)
    if unknown:
        parser.error(f"{args.grid}: {unknown} are not parameters of {args.notebook.name} (it takes {sorted(known)})")
    for name, values in sets:  # a value of another type than the notebook's default, before anything runs
        try:
            check_parameters(args.notebook, values)
        except ValueError as err:
            parser.error(f"{args.grid}: set {name}: {err}")
    named = Path(args.name)
    if named.is_absolute() or not named.parts or any(part in ("", ".", "..") for part in named.parts):
        parser.error(f"--name {args.name!r}: a folder under --runs (parts without '..'), e.g. experiments/x")
    out = (args.runs / args.name).resolve()
    cwd = (args.cwd or args.notebook.parent).resolve()
    if other := other_stage(out):
        parser.error(f"--runs {args.runs} --name {args.name}: {out} is {other}, not a folder of executions")
    if shared := shared_outputs(sets, declared_parameters(args.notebook), out, cwd, args.notebook):
        parser.error(f"{args.grid}: {shared}: one writer per output folder; give each set its own "
                     "(a value with {run_dir}, say)")
    if args.task is not None and not 0 <= args.task < len(sets):
        parser.error(f"--task {args.task}: the grid has sets 0..{len(sets) - 1}")
    if args.summary:
        table = summarise(sets, out, args.notebook, cwd)
        print(table.to_markdown(index=False))
        return int((table.status != "completed").any())
    if args.slurm:
        resources = ([f"--cpus-per-task={args.cpus_per_task}"] if args.cpus_per_task else []) + \
            ([f"--mem={args.mem}"] if args.mem else [])
        tasks = f"0-{len(sets) - 1}%{args.jobs}" if args.task is None else str(args.task)
        array, summary = submit_array(args.notebook.resolve(), args.grid.resolve(), args.name, args.runs.resolve(),
                                      cwd, tasks, args.rerun, resources)
        what = f"{len(sets)} executions" if args.task is None else f"set {args.task} ({sets[args.task][0]})"
        print(f"submitted {what} as job array {array}, summary job {summary}: {out}/summary.md")
        return 0
    chosen = sets if args.task is None else [sets[args.task]]
    executions = Executions()
    threads = max(1, available_cpus() // min(args.jobs, len(chosen)))  # the CPUs shared, not oversubscribed
    with StopFlag(TERMINAL_STOP_SIGNALS, on_signal=executions.stop) as flag, ThreadPoolExecutor(args.jobs) as pool:
        for status in pool.map(lambda s: execute(args.notebook, s[0], s[1], out, cwd, args.rerun, threads,
                                                 executions), chosen):
            if status.get("skipped"):
                print(f"{status['set']}: completed before with these parameters, skipped (the data they name, "
                      "but for a config file, is not compared: --rerun after it changed)", flush=True)
            elif status["status"] != "stopped":
                print(f"{status['set']}: {status['status']} in {status['seconds']} s"
                      + (f" ({status['error']})" if status["error"] else ""), flush=True)
    if flag.requested:
        table = summarise(sets, out, args.notebook, cwd)
        if args.task is not None:  # an array task runs one set: the others are other tasks'
            done = f"set {args.task} ({chosen[0][0]}) {table.status[args.task]}; the same task runs it again"
        else:
            done = f"{(table.status == 'completed').sum()} of {len(sets)} sets completed; the same command runs the rest"
        print(f"{args.name}: stopped by {flag.name}, its running executions ended with it; {done}",
              file=sys.stderr, flush=True)
        return STOPPED_EXIT_CODE
    if args.task is not None:
        return int(status["status"] != "completed")
    table = summarise(sets, out, args.notebook, cwd)
    print(table.to_markdown(index=False))
    return int((table.status != "completed").any())
