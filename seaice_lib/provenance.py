"""What made an output: package version, git commit, command line, host, time, torch and CUDA;
files named by their SHA-256."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from . import __version__


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes (a run's ``config.yaml``, its weights, an ONNX model), read
    in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identities(paths: Iterable[Path]) -> dict[str, dict[str, int]]:
    """Name -> size (``bytes``) and modification time (``mtime_ns``) of each file: what an output
    records of inputs too many or too large to hash (a notebook's view of hundreds of scenes)."""
    return {path.name: {"bytes": (st := path.stat()).st_size, "mtime_ns": st.st_mtime_ns} for path in paths}


def written_files(record: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` from ``record``: the JSON a command keeps beside the files it wrote
    (``synthetic_files.json``, ``prepared_files.json``); {} when there is none. ValueError naming it
    when it is not such a record."""
    if not record.is_file():
        return {}
    try:
        doc = json.loads(record.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{record}: not a record of written files ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"{record}: not a record of written files (a mapping of file name to SHA-256)")
    return doc


def git_commit(folder: str | Path | None = None) -> str:
    """The commit checked out at ``folder`` (default: the package's), with ``+dirty`` when files
    differ from it; ``"not a git checkout"`` elsewhere. The package's is read once per process, as
    this module is imported: its outputs all record the code it started with, whatever is checked
    out while it runs."""
    return _commit_at(Path(folder)) if folder else _package_commit()


@functools.cache
def _package_commit() -> str:
    return _commit_at(Path(__file__).resolve().parent)


def _commit_at(folder: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not a git checkout"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def history_line(action: str) -> str:
    """One CF ``history`` line: UTC time, package version and git commit, what was done, and the
    command line that did it."""
    record = provenance()
    return (f"{record['time']} seaice_lib {record['version']} (commit {record['commit']}) {action}; "
            f"command: {record['command'] or 'python'}")


def provenance() -> dict:
    """The record every output of the project carries (JSON-ready)."""
    record = {"package": "seaice_lib", "version": __version__, "commit": git_commit(),
              "command": " ".join(sys.argv), "host": platform.node(),
              "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only when the caller already uses it: never imported here
    if torch is not None:
        record |= {"torch": torch.__version__, "cuda": torch.version.cuda or "none"}
    return record


def another_release(made_by: object) -> str | None:
    """None when a ``made_by`` record (:func:`provenance`) is of the seaice_lib release running now
    (commits of one release are not told apart); else what made it, for a message
    (``"seaice_lib 0.1.0"``, or a version from before ``made_by`` was recorded): a release may make
    other outputs from the same inputs, so what another one made is made again."""
    if isinstance(made_by, dict) and made_by.get("version") == __version__:
        return None
    if isinstance(made_by, dict) and made_by.get("version"):
        return f"seaice_lib {made_by['version']}"
    return "a version that did not record itself in made_by"


_package_commit()  # now, as the process imports the code it runs (git_commit)
