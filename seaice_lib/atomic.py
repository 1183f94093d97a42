"""Nothing half-written looks complete: every output is written under a temporary sibling name
(``.NAME.PID.tmp``) and renamed into place once whole. One writer per output folder:
:func:`folder_lock`.

One helper serves files (netCDF, checkpoints, JSON, CSV) and folders (zarr groups). Read back,
a JSON document is checked for its shape (:func:`read_json`): anything else is one error naming the
file and the key.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: str | Path) -> Path:
    """``.NAME.PID.tmp`` beside ``path``: hidden, and naming the process that writes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file or a folder); when the block ends
    without an error it is flushed to disk (a file) and renamed to ``path``, else deleted.

    An existing ``path`` is replaced (a folder is removed first); with ``replace=False`` the
    rename raises :class:`FileExistsError` instead (another process finished first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    _remove(tmp)
    try:
        yield tmp
        if path.exists() and not replace:
            raise FileExistsError(f"{path}: already written")
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        elif tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError:
            if not replace and path.exists():  # another process renamed its own first
                raise FileExistsError(f"{path}: already written") from None
            raise
    finally:
        _remove(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holding ``text``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


MISSING = object()  # a key a JSON mapping lacks
KINDS = {None: "null", dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
         bool: "true or false"}


def read_json(path: str | Path, shape=dict):
    """The JSON document in ``path``, of ``shape`` (:func:`check_shape`); ValueError naming the file
    (and the key) for anything else."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON (truncated?): {err}") from None
    check_shape(doc, shape, str(path))
    return doc


def _kind(shape) -> str:
    return KINDS[dict if isinstance(shape, dict) else list if isinstance(shape, list) else shape]


def _fits(value, one) -> bool:
    if one is None:
        return value is None or value is MISSING
    return (isinstance(one, type) and isinstance(value, (int, float) if one is float else one)
            and (one is bool or not isinstance(value, bool)))


def check_shape(value, shape, where: str, key: str = "") -> None:
    """ValueError ``WHERE: KEY must be ...`` unless ``value`` has ``shape``: a type (``float``: any
    number; a bool is no number), None (null or missing), a tuple (any of its shapes), a dict (a
    mapping with these keys, ``"*"`` every key) or a one-item list (a list of such items)."""
    shapes = shape if isinstance(shape, tuple) else (shape,)
    for one in shapes:
        if isinstance(one, dict) and isinstance(value, dict):
            for name, inner in one.items():
                for k in value if name == "*" else (name,):
                    check_shape(value.get(k, MISSING), inner, where, f"{key}.{k}" if key else str(k))
            return
        if isinstance(one, list) and isinstance(value, list):
            for i, item in enumerate(value):
                check_shape(item, one[0], where, f"{key}[{i}]")
            return
        if _fits(value, one):
            return
    want = " or ".join(map(_kind, shapes))
    if value is MISSING:
        raise ValueError(f"{where}: no {key} (must be {want})")
    found = _kind(None if value is None else type(value))
    raise ValueError(f"{where}: {key} must be {want}, not {found}" if key else f"{where}: holds {found}, not {want}")


def remove_stale(path: str | Path) -> list[Path]:
    """Delete temporary siblings of ``path`` left by processes that no longer exist; returns them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 2:-len(".tmp")])
            os.kill(pid, 0)
        except ValueError:
            continue  # not one of ours
        except ProcessLookupError:
            _remove(tmp)
            removed.append(tmp)
        except PermissionError:
            pass  # alive, another user's
    return removed


LOCK_NAME = ".seaice.lock"  # in a locked folder: who holds it (JSON), locked with flock while held


class FolderBusy(ValueError):
    """Another live process writes the folder (the message names it)."""


@contextmanager
def folder_lock(folder: str | Path, doing: str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) as its only writer while the block runs.

    An advisory ``flock`` on ``folder/.seaice.lock``, which records the holder (pid, host, start,
    command, ``doing``). A second process gets :class:`FolderBusy` at once, naming the holder. The
    kernel releases the lock when the holder exits, however it dies (SIGKILL included), so a lock
    left by a killed process is taken over by the next writer; the file itself stays, rewritten.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            raise FolderBusy(
                f"{folder}: another process is {holder.get('doing', 'writing')} here (pid {holder.get('pid', '?')} "
                f"on host {holder.get('host', '?')} since {holder.get('since', '?')}: {holder.get('command', '?')}); "
                "one writer per folder: wait for it to end, or use another folder") from None
        record = {"pid": os.getpid(), "host": platform.node(), "doing": doing,
                  "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
