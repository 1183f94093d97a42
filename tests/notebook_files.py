"""Notebooks and parameter grids for the tests of `seaice batch` and the notebook jobs."""

import os
import sys
from pathlib import Path

import nbformat
import yaml

from seaice_lib.notebook import KERNEL, KERNEL_DISPLAY_NAME

ROOT = Path(__file__).parents[1]


def code_notebook(path, parameters: str, *cells: str):
    """A notebook on the project kernel at ``path``: a cell tagged ``parameters`` with ``parameters``, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(cell) for cell in cells)]
    nbformat.write(nb, path)
    return path


def write_notebook(path):
    """Parameters a, b and out_dir; writes a / b to out_dir/ratio.txt (b = 0 fails)."""
    return code_notebook(path, 'a = 1\nb = 1\nout_dir = "."',
                         "from pathlib import Path\nPath(out_dir, 'ratio.txt').write_text(str(a / b))")


def write_grid(path, grid, parameters=None):
    """A `seaice batch` grid file: ``parameters`` (out_dir in each set's folder by default) and ``grid``."""
    path.write_text(yaml.safe_dump({"parameters": parameters or {"out_dir": "{run_dir}"}, "grid": grid}))
    return path


def job_env(folder: Path) -> dict[str, str]:
    """The environment to run a slurm/*.sbatch script outside SLURM: a config (SEAICE_CONFIG, runs in
    the job's working folder's runs/) whose ``seaice_activate`` puts a ``seaice`` of this Python,
    importing this checkout's seaice_lib, first on PATH; its files go into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seaice").write_text(f'#!/bin/sh\nexec {sys.executable} -m seaice_lib "$@"\n')
    (folder / "seaice").chmod(0o755)
    (folder / "config.sh").write_text(f'SEAICE_RUNS=runs\nseaice_activate() {{ PATH={folder}:$PATH; }}\n')
    return {**os.environ, "SEAICE_CONFIG": str(folder / "config.sh"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
