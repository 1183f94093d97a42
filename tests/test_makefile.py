"""The Makefile on other machines: it finds a Python >= 3.11 by itself, and without root it runs the
tests it can and says in one line which Debian packages it could not install and what that leaves
out. Checked with `make -n` (nothing run) on a PATH of stand-in commands: ``id`` answering a user's
uid, ``python3*`` of chosen versions, and no Chromium, pdftoppm, GDAL tools or SLURM."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import rendering

ROOT = Path(__file__).parents[1]
MAKE = shutil.which("make")


def _bin(folder: Path, **scripts: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def _make(target: str, path: Path, cwd: Path = ROOT, dry: bool = True) -> subprocess.CompletedProcess:
    env = {"PATH": str(path), "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run([MAKE, *(["-n"] if dry else []), "--no-print-directory", target], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_root_the_tests_run_without_what_is_missing_and_say_so(tmp_path):
    fake = _bin(tmp_path / "bin", id="echo 1000")  # a user; no chromium, pdftoppm, slurmd, munged here
    out = _make("test-fast", fake).stdout
    assert "apt-get" in out and '[ "" = yes ]' in out  # the install is not attempted without root
    note = [line for line in out.splitlines() if line.startswith('echo "make: not root')]
    assert len(note) == 1 and "chromium gdal-bin poppler-utils" in note[0] and "left out" in note[0]
    assert 'SEAICE_MISSING_TOOLS="pdftoppm chromium gdalinfo ogrinfo"' in out
    slurm = _make("test-slurm", fake).stdout
    assert "the SLURM tests (a local SLURM needs root and slurm-wlm, munge) are left out" in slurm


def test_as_root_with_the_tools_nothing_is_left_out(tmp_path):
    fake = _bin(tmp_path / "bin", id="echo 0", chromium="true", pdftoppm="true", gdalinfo="true", ogrinfo="true")
    out = _make("test-fast", fake).stdout
    assert "not root" not in out and 'SEAICE_MISSING_TOOLS=""' in out


def test_the_first_python_of_at_least_3_11_is_taken_and_none_is_named(tmp_path):
    version = "import sys; sys.exit(sys.version_info < (3, 11))"
    assert version in (ROOT / "Makefile").read_text()  # what the stand-ins below answer for
    old = _bin(tmp_path / "old", python3="exit 1")  # a Python 3.10: the check exits 1
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copy(ROOT / "Makefile", work)
    shutil.copy(ROOT / "pyproject.toml", work)
    refused = _make("venv", old, work, dry=False)
    assert refused.returncode == 2 and "no Python >= 3.11 on PATH" in refused.stderr and not (work / ".venv").exists()
    new = _bin(tmp_path / "new", python3="exit 1", **{"python3.12": "exit 0"})
    assert "python3.12 -m venv .venv" in _make("venv", new, work).stdout


def test_a_tool_make_declared_missing_skips_by_name_and_otherwise_fails(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("SEAICE_MISSING_TOOLS", "pdftoppm chromium")
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed and make could not install it"):
        rendering.tool("chromium")
    monkeypatch.setenv("SEAICE_MISSING_TOOLS", "")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed: run `make system-deps`"):
        rendering.tool("chromium")
