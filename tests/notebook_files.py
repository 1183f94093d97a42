"""Notebooks and parameter grids for the tests of `seaice batch` and the notebook jobs."""

import os
import subprocess
import sys
import time
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


WAITING = ("import os, time\nfrom pathlib import Path\n"
           "Path(out_dir, f'pid_{os.getpid()}').touch()\nwhile Path(hold).exists():\n    time.sleep(0.1)")
"""A notebook cell that writes its kernel's pid into ``out_dir`` (``pid_N``), then waits while ``hold`` exists."""


def waiting_batch(tmp_path: Path, values: list[int]) -> tuple[list[str], dict[str, str], Path]:
    """A `seaice batch` over a notebook of :data:`WAITING`, one set per value of ``n`` (one at a time,
    in ``tmp_path/runs/w/n-N``): its command line, environment and the ``hold`` file (made here)."""
    hold = tmp_path / "hold"
    hold.touch()
    code_notebook(tmp_path / "wait.ipynb", 'n = 0\nhold = ""\nout_dir = "."', WAITING)
    grid = write_grid(tmp_path / "grid.yaml", {"n": values}, parameters={"out_dir": "{run_dir}", "hold": str(hold)})
    command = [sys.executable, "-m", "seaice_lib", "batch", str(tmp_path / "wait.ipynb"), str(grid), "--name", "w",
               "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    return command, {**os.environ, "PYTHONPATH": str(ROOT)}, hold


def kernel_started(folder: Path, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """The pid a :data:`WAITING` cell run by ``proc`` wrote into ``folder``, once it has."""
    deadline = time.monotonic() + timeout
    while not list(folder.glob("pid_*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert list(folder.glob("pid_*")), proc.communicate(timeout=60)
    return int(next(folder.glob("pid_*")).name.removeprefix("pid_"))


def running(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def still_running(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Those of ``pids`` still running after waiting up to ``timeout`` s for them all to end."""
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive
