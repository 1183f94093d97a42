"""`make lab`: JupyterLab starts headless on the project's kernel and notebooks/, answers its API
only with the token, and runs a notebook of notebooks/ through a kernel it started."""

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from seaice_lib.notebook import KERNEL
from tests.lab_client import NOTEBOOK_CELLS, api, run_cells, run_download_notebook, wait_ready
from tests.training_runs import free_port

ROOT = Path(__file__).parents[1]


def test_make_lab_serves_the_notebooks_on_the_project_kernel(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    # -o: the installed environment counts as up to date (the test never reinstalls it)
    server = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed", "lab",
                               f"LAB_PORT={port}", f"LAB_TOKEN={token}"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, token, alive=lambda: server.poll() is None)
        assert api(url, "wrong", "contents").status_code == 403  # the token is required
        listed = {item["name"] for item in api(url, token, "contents").json()["content"]}
        assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= listed  # notebooks/ is the root
        spec = api(url, token, "kernelspecs").json()["kernelspecs"][KERNEL]["spec"]
        assert Path(spec["argv"][0]).parent == Path(sys.prefix) / "bin"  # the project's environment
        prefix, numbers = run_cells(url, token, NOTEBOOK_CELLS)
        assert prefix.split()[-1] == sys.prefix and numbers.split()[-2:] == ["3", "6"], (prefix, numbers)
        run_download_notebook(url, token, tmp_path / "download")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
