"""Nothing half-written looks complete: every output is written under a temporary sibling name
(``.NAME.PID.tmp``) and renamed into place once whole. One writer per output folder:
:func:`folder_lock`.

One helper serves files (netCDF, checkpoints, JSON, CSV) and folders (zarr groups).
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import fcntl
import glob
import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _stem(name: str) -> str:
    """``name``, or for a name too long to take ``.NAME.PID.tmp`` within the 255 bytes a file name
    may hold, its first 200 bytes and a hash of the whole."""
    raw = os.fsencode(name)
    if len(raw) <= 255 - len(".9999999999.tmp") - 1:
        return name
    return os.fsdecode(raw[:200]) + "~" + hashlib.sha256(raw).hexdigest()[:12]


def temporary_sibling(path: str | Path) -> Path:
    """``.NAME.PID.tmp`` beside ``path``: hidden, and naming the process that writes it (NAME
    shortened, with a hash, where the whole would be too long a file name)."""
    path = Path(path)
    return path.with_name(f".{_stem(path.name)}.{os.getpid()}.tmp")


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
    rename raises :class:`FileExistsError` instead (another process finished first). A writer
    that fails on a full disk with an error of its own kind (netCDF's HDF error, torch's "unexpected
    pos") raises OSError ENOSPC naming ``path`` instead, which the walks treat as an item's failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    _remove(tmp)
    try:
        try:
            yield tmp
        except Exception as err:
            if not isinstance(err, OSError) and _disk_full(path.parent):  # netCDF/HDF5 and torch say it otherwise
                raise OSError(errno.ENOSPC, f"{path}: no space left on device ({type(err).__name__}: "
                                            f"{str(err)[:80]})") from err
            raise
        if path.exists() and not replace:
            raise FileExistsError(f"{path}: already written")
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        elif tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError as err:
            if not replace and path.exists():  # another process renamed its own first
                raise FileExistsError(f"{path}: already written") from None
            if tmp.is_file() and path.is_dir():  # never removed: it may hold anything
                raise IsADirectoryError(f"{path}: a folder is in the way of the file") from err
            raise
    finally:
        _remove(tmp)


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has under 1 MiB left (a failed write is then why)."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holding ``text``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_stale(path: str | Path) -> list[Path]:
    """Delete temporary siblings of ``path`` left by processes that no longer exist; returns them."""
    path = Path(path)
    return _remove_dead(path.parent.glob(f".{glob.escape(_stem(path.name))}.*.tmp"))


REMOVED = ".removed"  # beside files set aside: a folder no stage reads as data


def move_aside(path: Path) -> Path:
    """Move the file ``path`` into ``.removed/`` beside it, where no later stage reads it as data,
    under the first free name of ``NAME``, ``STEM.2.SUFFIX``, ``STEM.3.SUFFIX``, ... (a copy set
    aside earlier stays); where it went. A ``.removed`` that is a symbolic link is a ValueError naming
    it: nothing is moved out of the folder through it."""
    removed = path.parent / REMOVED
    if removed.is_symlink():
        raise ValueError(f"{removed}: a symbolic link where files set aside go; {path.name} stays (remove the link)")
    removed.mkdir(exist_ok=True)
    aside, n = removed / path.name, 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = removed / f"{path.stem}.{n}{path.suffix}"
    os.replace(path, aside)
    return aside


def _remove_dead(temporaries: Iterable[Path]) -> list[Path]:
    """Delete those of ``temporaries`` (``.NAME.PID.tmp``) whose process no longer exists."""
    removed = []
    for tmp in temporaries:
        try:
            pid = int(tmp.name[:-len(".tmp")].rsplit(".", 1)[1])
            os.kill(pid, 0)
        except (ValueError, IndexError):
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


def out_folder(text: str) -> Path:
    """An output folder named on a command line (argparse type): made later if missing, never a
    file that is there or a path under one."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                what = "a symbolic link to nothing" if part.is_symlink() and not part.exists() else "a file"
                raise argparse.ArgumentTypeError(f"{text}: {'' if part == path else f'{part} is '}"
                                                 f"{what}, not a folder to write into")
            break
    return path


def out_file(text: str) -> Path:
    """An output file named on a command line (argparse type): its folder is made later if missing;
    never a folder that is there, nor a path under a file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a folder; name the file to write")
    out_folder(str(path.parent))
    return path


def not_there(path: Path, folder: bool) -> str:
    """Why ``path`` is not the existing folder (``folder``) or file a command line named, for its
    one-line error: "no such folder", "a file, not a folder", ..."""
    want, other = ("folder", "file") if folder else ("file", "folder")
    return f"a {other}, not a {want}" if path.exists() else f"no such {want}"


@contextmanager
def folder_lock(folder: str | Path, doing: str, lock_name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) as its only writer while the block runs.

    An advisory ``flock`` on ``folder/.seaice.lock`` (or ``folder/lock_name``: one item of a
    folder that many write, each its own), which records the holder (pid, host, start,
    command, ``doing``). A second process gets :class:`FolderBusy` at once, naming the holder. The
    kernel releases the lock when the holder exits, however it dies (SIGKILL included), so a lock
    left by a killed process is taken over by the next writer; the file itself stays, rewritten.
    The new holder removes the temporaries (``.NAME.PID.tmp``) that dead processes left in the folder.
    A folder this call made is removed again when the block ends (or fails) having written nothing
    but the lock: a command that charted no scene leaves no empty output folder behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: a file, not a folder to write into")
    made = [p for p in (folder, *folder.parents) if not (p.exists() or p.is_symlink())]  # innermost first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name
    try:  # never through a link: a folder copied as links would hold (and rewrite) the original's lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if path.is_symlink():
            raise ValueError(f"{path}: a symbolic link where this folder's lock goes; remove it") from None
        raise ValueError(f"{path}: cannot open this folder's lock ({err.strerror or err})") from None
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
        _remove_dead(folder.glob(".*.tmp"))  # what writers killed mid-write left (kill -9)
        closed = False
        try:
            yield path
        except GeneratorExit:  # closed at exit: a notebook kernel's held folder stays (see remove_unused)
            closed = True
            raise
        finally:  # ended, failed (a usage error, an interrupt) or wrote nothing of its own
            if made and not closed and _only(folder, lock_name):
                path.unlink()  # still held: no other writer can have come in between
                for each in made:  # and the folders above it that this call made, where nothing else came
                    try:
                        each.rmdir()
                    except OSError:
                        break
    finally:
        os.close(fd)  # releases the lock


def remove_unused(folder: Path, lock_name: str = LOCK_NAME) -> bool:
    """Remove ``folder`` where it holds nothing but its lock (and folders that hold nothing but
    theirs, or nothing) and no process holds that: what a writer that ended (a notebook's kernel)
    made and left unused. Whether it was removed."""
    if folder.is_dir() and not folder.is_symlink():
        for sub in folder.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                remove_unused(sub)
        try:
            folder.rmdir()  # nothing at all: a folder on the way to the one that was held
            return True
        except OSError:
            pass
    if not _only(folder, lock_name):
        return False
    try:
        fd = os.open(folder / lock_name, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _only(folder, lock_name):
            return False
        (folder / lock_name).unlink()
        folder.rmdir()
        return True
    except OSError:  # held (BlockingIOError), or changed under us
        return False
    finally:
        os.close(fd)


def _only(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds ``name`` and nothing else."""
    try:
        return [p.name for p in folder.iterdir()] == [name]
    except OSError:
        return False
