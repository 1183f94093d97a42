"""The notebooks' parameters, checked: ``seaice notebook`` runs one through papermill, refusing a
parameter name it does not declare, and :func:`check_parameters` (each notebook's first call after
its parameters cell) refuses a value of another type than the declared default's.

Types come from the defaults in the notebook's cell tagged ``parameters`` (scalars only): a
``bool`` default takes only ``True``/``False`` (papermill reads ``-p flag no`` as the string
``"no"``, which would be true), an ``int`` default only integers, a ``float`` default any number,
a ``str`` default only strings.
"""

from __future__ import annotations

import argparse
import ast
import logging
from collections.abc import Mapping
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def notebook_path(name: str | Path) -> Path:
    """A notebook by path, or by name (``04_train``) in the working folder or the repository's notebooks/."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return path
    for folder in (Path.cwd(), NOTEBOOKS):
        candidate = folder / f"{path.stem}.ipynb"
        if candidate.is_file():
            return candidate
    raise ValueError(f"notebook {name}: no such notebook (looked in {Path.cwd()} and {NOTEBOOKS})")


def declared_parameters(notebook: str | Path) -> dict[str, object]:
    """Name -> default of the parameters a notebook declares (its cell tagged ``parameters``)."""
    import nbformat

    path = notebook_path(notebook)
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{path}: no cell tagged parameters")
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def check_names(notebook: str | Path, names) -> None:
    """ValueError naming the parameters ``names`` holds that the notebook does not declare."""
    declared = declared_parameters(notebook)
    if unknown := sorted(set(names) - set(declared)):
        raise ValueError(f"{notebook_path(notebook).name}: no parameter {unknown} (it declares {sorted(declared)})")


def _fits(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def check_parameters(notebook: str | Path, namespace: Mapping, **ranges: tuple[float | None, float | None]) -> None:
    """Check the parameters' values in ``namespace`` (a notebook's ``globals()``) against the types of
    the declared defaults, and numbers against ``ranges`` (name -> (low, high), either None).
    One ValueError naming every parameter that fails."""
    problems = []
    for name, default in declared_parameters(notebook).items():
        value = namespace.get(name, default)
        if not _fits(value, default):
            problems.append(f"{name} must be {KINDS.get(type(default), type(default).__name__)}, "
                            f"not {value!r} ({type(value).__name__})")
        elif name in ranges:
            low, high = ranges[name]
            if (low is not None and value < low) or (high is not None and value > high):
                problems.append(f"{name} must be in [{low}, {high}], not {value!r}")
    if problems:
        raise ValueError(f"{notebook_path(notebook).name}: " + "; ".join(problems))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    import papermill
    import yaml
    from papermill.cli import _resolve_type

    parser = argparse.ArgumentParser(prog=prog, description="Run a notebook headless through papermill, its "
                                                            "parameters checked by name and type first.")
    parser.add_argument("notebook", type=Path, help="a notebook of notebooks/")
    parser.add_argument("output", type=Path, help="the executed notebook (its folder is created)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a scalar parameter (read as papermill reads it)")
    parser.add_argument("-f", "--parameters-file", type=Path, default=None, help="YAML of parameters")
    parser.add_argument("--cwd", type=Path, default=None, help="the kernel's folder (default: the notebook's)")
    parser.add_argument("--start-timeout", type=int, default=600, help="kernel start timeout, seconds")
    parser.add_argument("--log-output", action="store_true", help="copy the cells' output to the log")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"notebook {args.notebook}: no such file")
    if args.output.resolve() == args.notebook.resolve():
        parser.error(f"output {args.output}: the notebook itself; the executed copy goes elsewhere (runs/)")
    parameters = {}
    if args.parameters_file is not None:
        try:
            parameters = yaml.safe_load(args.parameters_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            parser.error(f"{args.parameters_file}: {str(err).splitlines()[0]}")
        if not isinstance(parameters, dict):
            parser.error(f"{args.parameters_file}: parameters must be a mapping")
    parameters |= {name: _resolve_type(value) for name, value in args.parameter}
    try:
        check_names(args.notebook, parameters)
        check_parameters(args.notebook, parameters)
    except ValueError as err:
        parser.error(str(err))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.log_output:  # papermill logs the cells' output at INFO on its logger: to stderr, as its CLI does
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        papermill_log = logging.getLogger("papermill")
        papermill_log.addHandler(handler)
        papermill_log.setLevel(logging.INFO)
    try:
        papermill.execute_notebook(str(args.notebook), str(args.output), parameters=parameters,
                                   cwd=str(args.cwd or args.notebook.parent), progress_bar=False,
                                   start_timeout=args.start_timeout, log_output=args.log_output,
                                   kernel_name="python3")
    except papermill.PapermillExecutionError as err:
        print(f"{prog}: error: {args.notebook.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
              f"(the executed notebook: {args.output})", flush=True)
        return 1
    return 0
