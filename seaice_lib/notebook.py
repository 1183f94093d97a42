"""The notebooks' parameters, checked: ``seaice notebook`` runs one through papermill, refusing a
parameter name it does not declare, and :func:`check_parameters` (each notebook's first call after
its parameters cell) refuses a value of another type than the declared default's.

Types come from the defaults in the notebook's cell tagged ``parameters`` (scalars only): a
``bool`` default takes only ``True``/``False`` (papermill reads ``-p flag no`` as the string
``"no"``, which would be true), an ``int`` default only integers, a ``float`` default any number,
a ``str`` default only strings (``seaice notebook -p name 123`` gives a string parameter the value
as written). A parameter declared ``name: int = None`` takes an integer or None (the notebook
then reads the value from elsewhere: 04_train's from its ``config``), and so on for the other
types (the annotation as papermill reads it: ``int | None`` is not one it can).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import sys
import tempfile
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from . import logs, yamldoc
from .arguments import Parser, once_each
from .atomic import atomic_path, folder_lock, out_file, out_folder, remove_unused, write_text
from .jsondoc import read_json
from .provenance import file_sha256, provenance
from .stages import CHARTS, EXPORT, NOTEBOOK_MODEL, NOTEBOOK_RECORD, NOTEBOOK_RUN_FOLDER, RUN, SCENES, other_stage
from .stopping import STOPPED_EXIT_CODE, Stopped, abandon_on_stop

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# the project's Jupyter kernel: the notebooks declare it, `make venv`/`make lab` and jupyter.sbatch
# install it (JupyterHub starts the kernel a notebook names: the Hub's own python3 lacks seaice_lib)
KERNEL = "seaice"
KERNEL_DISPLAY_NAME = "Python (seaice)"
KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
OUTPUT_PARAMETERS = ("out_dir", "dest")  # a notebook's parameters naming the folder it writes into
WRITES_ALSO = {"03_patches": ("store",)}  # other parameters naming what a notebook writes: 03 builds its store
# the notebooks that derive an output parameter left empty (04_train: its config's out_dir, else its
# model's folder; engine.config.notebook_config): derived_output
DERIVES = {"04_train": "out_dir"}
FILE_PARAMETERS = ("config", "experiment")  # parameters naming a file an execution reads its settings from (04_train)
RECORD = NOTEBOOK_RECORD  # in a notebook's out_dir: which execution made the files listed there


def output_parameters(notebook: Path) -> tuple[str, ...]:
    """The parameters of ``notebook`` that name what it writes (:data:`OUTPUT_PARAMETERS`,
    :data:`WRITES_ALSO`): two executions at once must not share one."""
    return OUTPUT_PARAMETERS + WRITES_ALSO.get(Path(notebook).stem, ())


def new_output_folders(notebook: Path, parameters: Mapping, cwd: Path) -> list[Path]:
    """The folders ``notebook``'s output parameters (:func:`output_parameters`) name, as given in
    ``parameters`` or by default (relative ones in the kernel's folder ``cwd``), that are not there
    yet (the outermost folder of each path not there): those its execution made and left holding
    only their lock go again after it (:func:`~seaice_lib.atomic.remove_unused`)."""
    values = declared_parameters(notebook) | dict(parameters)
    folders = [cwd / value for name in output_parameters(notebook)
               if isinstance(value := values.get(name), str) and value.strip()]
    return [missing[-1] for folder in folders  # the outermost folder of its path not there yet
            if (missing := [p for p in (folder, *folder.parents) if not (p.exists() or p.is_symlink())])]


def derived_output(notebook: Path, values: Mapping, cwd: Path) -> Path | tuple[str, str] | None:
    """The folder ``notebook`` derives for its output parameter (:data:`DERIVES`) left empty in
    ``values`` (relative paths in the kernel's folder ``cwd``): 04_train's config's ``out_dir``, else
    :data:`~seaice_lib.stages.NOTEBOOK_RUN_FOLDER` of its model (:data:`~seaice_lib.stages.NOTEBOOK_MODEL`
    when none is given); ``("config", PATH)`` for a config that cannot be read (the notebook says
    why); None where the notebook derives nothing."""
    if Path(notebook).stem not in DERIVES:
        return None
    if config := values.get("config"):
        try:
            doc = yamldoc.loads((cwd / config).read_text())
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("out_dir"), str):
            return (cwd / doc["out_dir"]).resolve()
        return "config", str((cwd / config).resolve())
    return (cwd / NOTEBOOK_RUN_FOLDER.format(model=values.get("model") or NOTEBOOK_MODEL)).resolve()


_HELD: dict[Path, ExitStack] = {}  # the output folders this process (a notebook's kernel) holds


def notebook_path(name: str | Path) -> Path:
    """A notebook by path (an ``.ipynb`` file), or by bare name (``04_train``) in the working folder,
    else in the repository's notebooks/; ValueError naming it otherwise."""
    path = Path(name)
    if path.is_file():
        if path.suffix != ".ipynb":
            raise ValueError(f"notebook {name}: not a notebook (.ipynb)")
        return path
    if path.parent != Path(".") or path.suffix not in ("", ".ipynb"):
        raise ValueError(f"notebook {name}: no such file")
    for folder in (Path.cwd(), NOTEBOOKS):
        if (folder / f"{path.stem}.ipynb").is_file():
            return folder / f"{path.stem}.ipynb"
    raise ValueError(f"notebook {name}: no such notebook (looked in {Path.cwd()} and {NOTEBOOKS}, which holds "
                     f"{', '.join(sorted(p.stem for p in NOTEBOOKS.glob('*.ipynb')))})")


def papermill_record(path: Path) -> dict | None:
    """The ``metadata.papermill`` record of an executed notebook file (papermill writes it when the
    execution starts and completes it as the execution ends); None when the file holds none. OSError
    or ValueError when it cannot be read as JSON."""
    doc = json.loads(path.read_text())
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    meta = metadata.get("papermill") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else None


def notebook_cells(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of each cell of a notebook file but the one papermill injects (tagged
    ``injected-parameters``): the same for a notebook and every execution of it. OSError or
    ValueError when it cannot be read as a notebook."""
    doc = json.loads(path.read_text())
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise ValueError(f"{path}: no list of cells")
    return [(str(c.get("cell_type")), "".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source")))
            for c in cells if "injected-parameters" not in (c.get("metadata") or {}).get("tags", [])]


def declared_parameters(notebook: str | Path) -> dict[str, object]:
    """Name -> default of the parameters a notebook declares (its cell tagged ``parameters``);
    ValueError naming the notebook when it cannot be read or that cell holds other than constants."""
    return {name: default for name, (default, _) in _declarations(notebook).items()}


def _declarations(notebook: str | Path) -> dict[str, tuple[object, type]]:
    """Name -> (default, type) of the parameters a notebook declares: the default's type, or ``T`` of
    one declared ``name: T = None`` (None: the value comes from elsewhere, such as a config)."""
    import nbformat

    path = notebook_path(notebook)
    try:
        nb = nbformat.read(path, as_version=4)
    except (ValueError, TypeError, AttributeError, nbformat.ValidationError) as err:
        why = str(err).splitlines() or [type(err).__name__]
        raise ValueError(f"{path}: not a notebook ({why[0]})") from None
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{path}: no cell tagged parameters")
    try:
        body = ast.parse(cell.source).body
    except SyntaxError as err:
        raise ValueError(f"{path}: its parameters cell is not Python (line {err.lineno}: {err.msg})") from None
    kinds = {kind.__name__: kind for kind in KINDS}
    out: dict[str, tuple[object, type]] = {}
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, annotation = node.target.id, node.value, ast.unparse(node.annotation)
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except ValueError:
            raise ValueError(f"{path}: parameter {name}: its default is not a constant (line {node.lineno})") from None
        if annotation is None:
            out[name] = default, type(default)
        elif default is None and annotation in kinds:
            out[name] = default, kinds[annotation]
        else:
            raise ValueError(f"{path}: parameter {name}: annotated {annotation} = {default!r}; an annotated parameter "
                             f"is declared T = None, T one of {', '.join(kinds)} (line {node.lineno})")
    return out


def check_names(notebook: str | Path, names) -> None:
    """ValueError naming the parameters ``names`` holds that the notebook does not declare."""
    declared = declared_parameters(notebook)
    if unknown := sorted(set(names) - set(declared)):
        raise ValueError(f"{notebook_path(notebook).name}: no parameter {unknown} (it declares {sorted(declared)})")


def _fits(value, kind: type, default) -> bool:
    if value is None:
        return default is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_parameters(notebook: str | Path, namespace: Mapping, **ranges: tuple[float | None, float | None]) -> None:
    """Check the parameters' values in ``namespace`` (a notebook's ``globals()``) against the types of
    the declared defaults, and numbers against ``ranges`` (name -> (low, high), either None; a
    parameter with a range is a finite number: NaN and inf are in none).
    One ValueError naming every parameter that fails."""
    problems = []
    for name, (default, kind) in _declarations(notebook).items():
        value = namespace.get(name, default)
        if not _fits(value, kind, default):
            problems.append(f"{name} must be {KINDS.get(kind, kind.__name__)}{' or None' if default is None else ''}, "
                            f"not {value!r} ({type(value).__name__})")
        elif name in ranges and value is not None:
            low, high = ranges[name]
            within = {(False, False): f"in [{low}, {high}]", (False, True): f">= {low}", (True, False): f"<= {high}",
                      (True, True): ""}[low is None, high is None]
            if not math.isfinite(value):  # NaN compares false with every bound: in no range
                problems.append(f"{name} must be a finite number{' ' * bool(within)}{within}, not {value!r}")
            elif (low is not None and value < low) or (high is not None and value > high):
                problems.append(f"{name} must be {within}, not {value!r}")
    if problems:
        raise ValueError(f"{notebook_path(notebook).name}: " + "; ".join(problems))


def hold_output(folder: str | Path, own: tuple[str, ...] = (), parameter: str = "") -> Path:
    """Hold ``folder`` (created if missing) as its only writer until this process, a notebook's
    kernel, ends (:func:`~seaice_lib.atomic.folder_lock`): another kernel or a command that writes
    there ends at once naming this one. Asked again in the same kernel (a cell run again), it is
    held still. ValueError where ``folder`` is another stage's output than ``own``
    (:func:`~seaice_lib.stages.other_stage`), an empty name (the kernel's folder, ``notebooks/``), a
    file or a link to nothing; the message starts with the notebook's ``parameter`` naming it. The
    folder, resolved."""
    named = f"{parameter} " if parameter else ""
    if not str(folder).strip():
        raise ValueError(f"{named}{str(folder)!r}: an empty folder name (it would be the notebook's own folder): "
                         "name the folder to write into")
    if other := other_stage(folder, own):
        raise ValueError(f"{named}{folder}: {other}, not a folder for this notebook to write into: give another folder")
    try:  # a file, or a link to nothing (whose target would be made and written into)
        out_folder(str(folder))
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{named}{err}") from None
    key = Path(folder).resolve()
    if key not in _HELD:
        stack = ExitStack()
        stack.enter_context(folder_lock(key, "running a notebook"))
        _HELD[key] = stack
    return key


class OutputFolder:
    """A notebook's ``out_dir``, refused where it is another stage's output
    (:func:`~seaice_lib.stages.other_stage`, but for ``own``), held (:func:`hold_output`) and
    recorded in ``out_dir/notebook_outputs.json`` (:data:`RECORD`): the notebook, its parameters,
    provenance, the ``inputs`` :meth:`finish` names, and each file written (``out / "NAME"``) with
    its SHA-256. The first file asked for removes those the last execution's record lists, so one
    execution's files are never left beside another's, and a check that refuses before any file
    is written keeps them all; ``finished`` is false until :meth:`finish`. A folder whose record is
    another notebook's is refused (ValueError): its files are not this notebook's to remove; so is
    one that is, or lies inside, one of ``apart`` (name -> folder: the notebook's other outputs)."""

    def __init__(self, out_dir: str | Path, notebook: str, namespace: Mapping, own: tuple[str, ...] = (),
                 apart: Mapping[str, str | Path] | None = None):
        if not str(out_dir).strip():
            raise ValueError(f"out_dir {str(out_dir)!r}: empty (it would be the notebook's own folder): name the folder")
        for name, folder in (apart or {}).items():  # another output of the notebook, which may not exist yet
            if (there := Path(folder).resolve()) in (here := Path(out_dir).resolve(), *here.parents):
                raise ValueError(f"out_dir {out_dir}: {'the' if there == here else 'inside the'} {name} {folder}, "
                                 "which this notebook writes too: give its pictures and tables a folder of their own")
        record = Path(out_dir) / RECORD
        try:
            theirs = read_json(record).get("notebook", notebook) if record.is_file() else notebook
        except ValueError:
            theirs = notebook  # unreadable: named, and nothing removed, at the first write
        if isinstance(theirs, str) and theirs != notebook:
            raise ValueError(f"out_dir {out_dir}: holds the outputs of notebook {theirs} ({RECORD}), which {notebook} "
                             "would remove: give another folder")
        self.folder = hold_output(out_dir, own, "out_dir")
        self.record = self.folder / RECORD
        self.notebook = notebook
        self.parameters = {name: namespace[name] for name in declared_parameters(notebook) if name in namespace}
        self.files: dict[str, str | None] = {}
        self.made_by = provenance()

    def __truediv__(self, name: str) -> Path:
        if Path(name).name != name or name == RECORD:
            raise ValueError(f"{name!r}: a notebook output is a file name directly in out_dir")
        if not self.files:
            self._remove_earlier()
        if name not in self.files:
            self.files[name] = None
            self._write({"finished": False})
        return self.folder / name

    def finish(self, **inputs) -> Path:
        """The record of a whole execution: each file's SHA-256 and ``inputs`` (JSON values)."""
        self.files = {name: file_sha256(self.folder / name) for name in self.files}
        return self._write({"finished": True, "inputs": inputs})

    def _write(self, status: dict) -> Path:
        return write_text(self.record, json.dumps({
            "notebook": self.notebook, **status, "parameters": self.parameters, "made_by": self.made_by,
            "files": self.files}, indent=1, default=str))

    def _remove_earlier(self) -> None:
        """Remove the files the last execution's record lists (a file changed since it was
        recorded stays, named); a record that cannot be read is named and nothing removed."""
        if not self.record.exists():
            return
        try:
            listed = read_json(self.record, {"files": {"*": (str, None)}})["files"]
        except ValueError as err:
            print(f"note: {err}; no earlier file removed")
            return
        removed, kept = [], []
        for name, sha in listed.items():
            path = self.folder / name
            if Path(name).name != name or name == RECORD or not path.is_file() or path.is_symlink():
                continue
            if sha is None or file_sha256(path) == sha:
                path.unlink()
                removed.append(name)
            else:
                kept.append(name)
        if removed:
            print(f"removed the last execution's {len(removed)} files from {self.folder}: {', '.join(removed)}")
        if kept:
            print(f"note: {', '.join(kept)} of the last execution changed since it wrote them: left in {self.folder}")


# What every kernel's log says that tells a user nothing (RT15-R22): ipykernel's notice that its local
# sockets are TCP (papermill's kernels listen on 127.0.0.1 only), and the KeyboardInterrupt it logs
# as an ERROR when the kernel is shut down after its last cell.
KERNEL_LOG_NOISE = ("Kernel is running over TCP without encryption", "KeyboardInterrupt caught in kernel")


def kernel_log(text: str) -> str:
    """A kernel's stderr ``text`` without the lines of :data:`KERNEL_LOG_NOISE`."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(noise in line for noise in KERNEL_LOG_NOISE))


def _stderr_into(file: IO[bytes]) -> type:
    """A kernel manager class (jupyter_client's) whose kernels write their stderr into ``file``."""
    from jupyter_client import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            return await super().start_kernel(**kw, stderr=file)

    return KernelManager


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    import papermill
    from papermill.cli import _resolve_type

    parser = Parser(prog=prog, description="Run a notebook headless through papermill, its "
                                             "parameters checked by name and type first.", epilog=logs.EPILOG)
    parser.add_argument("notebook", type=Path, help="a notebook: its path, or its name in notebooks/ (04_train)")
    parser.add_argument("output", type=out_file,
                        help="the executed notebook, an .ipynb file (its folder is created); an existing file "
                             "there is replaced only when it is an executed notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a scalar parameter (read as papermill reads it; as written for a string one)")
    parser.add_argument("-f", "--parameters-file", type=Path, default=None, help="YAML of parameters")
    parser.add_argument("--cwd", type=Path, default=None, help="the kernel's folder (default: the notebook's)")
    parser.add_argument("--start-timeout", type=int, default=600, help="kernel start timeout, seconds")
    parser.add_argument("--log-output", action="store_true", help="copy the cells' output to the log")
    args = parser.parse_args(argv)
    try:
        args.notebook = notebook_path(args.notebook)
        declared = _declarations(args.notebook)
    except ValueError as err:
        parser.error(str(err))
    if args.cwd is not None and not args.cwd.is_dir():
        parser.error(f"--cwd {args.cwd}: no such folder")
    if args.output.resolve() == args.notebook.resolve() or (
            args.output.exists() and args.output.samefile(args.notebook)):  # a hard link is the notebook too
        parser.error(f"output {args.output}: the notebook itself; the executed copy goes elsewhere (runs/)")
    if args.output.suffix != ".ipynb":
        parser.error(f"output {args.output}: name the executed notebook's file (.ipynb)")
    if other := other_stage(args.output.parent, own=(SCENES, RUN, CHARTS, EXPORT)):  # beside any stage's files,
        parser.error(f"output {args.output}: {other}; write the executed notebook elsewhere (runs/)")  # not in a store
    if args.output.exists() or args.output.is_symlink():
        try:
            executed = papermill_record(args.output) is not None
        except (OSError, ValueError):
            executed = False
        if not executed:
            parser.error(f"output {args.output}: an existing file that is not an executed notebook (papermill's "
                         "record); name another file or move it away")
    parameters: dict = {}
    if args.parameters_file is not None:
        try:
            loaded = yamldoc.loads(args.parameters_file.read_text()) or {}
        except (OSError, ValueError) as err:
            parser.error(f"{args.parameters_file}: {str(err).splitlines()[0]}")
        if not isinstance(loaded, dict):
            parser.error(f"{args.parameters_file}: parameters must be a mapping")
        parameters = loaded
    try:
        given = once_each("-p", [(name, value) for name, value in args.parameter])
    except ValueError as err:
        parser.error(str(err))
    if twice := sorted(set(given) & set(parameters)):  # as batch refuses one both fixed and in the grid
        parser.error(f"{twice} both in {args.parameters_file} (-f) and given by -p: give each parameter once")
    # a string parameter takes the value as written (papermill would read -p name 123 as a number)
    parameters |= {name: value if declared.get(name, (None, None))[1] is str else _resolve_type(value)
                   for name, value in given.items()}
    try:
        check_names(args.notebook, parameters)
        check_parameters(args.notebook, parameters)
    except ValueError as err:
        parser.error(str(err))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.unlink(missing_ok=True)  # the earlier execution goes: a stopped run leaves none to pass for its own
    if args.log_output:  # papermill logs the cells' output at INFO on its logger: to stderr, as its CLI does
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        papermill_log = logging.getLogger("papermill")
        papermill_log.addHandler(handler)
        papermill_log.setLevel(logging.INFO)
    failed, stopped = None, False
    cwd = args.cwd or args.notebook.parent
    made = new_output_folders(args.notebook, parameters, cwd)
    # the kernel's own log (not the cells' output): passed on once the execution ends, unread after a stop,
    # where it holds only the noise of the kernel's sockets closing under it
    with tempfile.TemporaryFile() as kernel_stderr:
        try:  # executed under a temporary name (papermill writes it in place as it goes), renamed once it ends
            with abandon_on_stop(), atomic_path(args.output) as executing, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The specified file .* does not end in")  # the .tmp name
                try:
                    papermill.execute_notebook(str(args.notebook), str(executing), parameters=parameters,
                                               cwd=str(cwd), progress_bar=False,
                                               start_timeout=args.start_timeout, log_output=args.log_output,
                                               kernel_name=KERNEL, kernel_manager_class=_stderr_into(kernel_stderr))
                except papermill.PapermillExecutionError as err:  # kept: papermill's record says it failed
                    failed = err
        except Stopped as stop:
            stopped = True
            print(f"{prog}: stopped by {stop}: {args.notebook.name} did not run to its end, and {args.output} is "
                  "not written; run the same command again", file=sys.stderr, flush=True)
            return STOPPED_EXIT_CODE
        finally:
            if not stopped:  # a kernel that died says why there
                kernel_stderr.seek(0)
                print(kernel_log(kernel_stderr.read().decode(errors="replace")), end="", file=sys.stderr, flush=True)
            for folder in made:  # one its kernel made and wrote nothing into (refused in a check)
                remove_unused(folder)
    if failed is not None:
        print(f"{prog}: error: {args.notebook.name} failed in {failed_cell(args.notebook, failed.source)}: "
              f"{failed.ename}: {failed.evalue} (the executed notebook: {args.output})", flush=True)
        return 1
    return 0


def execution_error(notebook: Path, executed: Path) -> str:
    """The error an execution of ``notebook`` recorded in ``executed`` (the executed notebook), as
    ``seaice notebook`` says it: "failed in code cell N (first line): Name: message"; "" where it
    records none or cannot be read."""
    try:
        doc = json.loads(executed.read_text())
    except (OSError, ValueError):
        return ""
    for cell in doc.get("cells", []) if isinstance(doc, dict) else []:
        for output in cell.get("outputs") or []:
            if isinstance(output, dict) and output.get("output_type") == "error":
                source = "".join(cell.get("source") or [])
                return f"failed in {failed_cell(notebook, source)}: {output.get('ename')}: {output.get('evalue')}"
    return ""


def failed_cell(notebook: Path, source: str) -> str:
    """Where in ``notebook`` the failed cell (its ``source``) is, as a reader finds it: its number
    among the notebook's code cells and its first line."""
    code = [text for kind, text in notebook_cells(notebook) if kind == "code"]
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    where = f"code cell {code.index(source) + 1}" if source in code else "the cell"
    return f"{where} ({first[:60]}{'...' * (len(first) > 60)})" if first else where
