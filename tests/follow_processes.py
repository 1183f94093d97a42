"""`seaice` processes in the tests: what one wrote, waiting for a file it writes, and SIGTERM while it
charts or scores a scene (stalled by :data:`STALLED`)."""

import re
import signal
import subprocess
import sys
import time

from seaice_lib.atomic import LOCK_NAME

# `seaice ARGS` in which the nth call of MODULE:FUNCTION stalls (touching the file MARKER then),
# until a signal stops it: argv MARKER MODULE:FUNCTION N ARGS...
STALLED = """
import importlib, sys, time
from pathlib import Path
from seaice_lib import cli

marker, where, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
module_name, name = where.split(":")
module = importlib.import_module(module_name)
real, calls = getattr(module, name), []


def stall(*args, **kwargs):
    calls.append(None)
    if len(calls) < nth:
        return real(*args, **kwargs)
    Path(marker).touch()
    while True:
        time.sleep(0.05)

setattr(module, name, stall)
sys.exit(cli.main(sys.argv[4:]))
"""
WRITING_CHART = "seaice_lib.charts.cf:_write_lonlat"  # called once a chart file is open under its temporary name


def written(folder):
    """What a command wrote into ``folder``: everything but the lock it held (atomic.LOCK_NAME)."""
    return [p for p in folder.iterdir() if p.name != LOCK_NAME] if folder.exists() else []


def wait_for_file(path, proc, timeout=90.0) -> None:
    """Until ``path`` exists; fails if ``proc`` ends first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} not written in {timeout} s"
        time.sleep(0.1)


def sigterm_when_stalled(argv: list, marker, where: str = WRITING_CHART, nth: int = 1,
                         before=lambda proc: None) -> subprocess.CompletedProcess:
    """Run ``seaice ARGV`` with the ``nth`` call of ``where`` stalled (:data:`STALLED`), call
    ``before(proc)`` once it stalls, send SIGTERM and wait for the exit."""
    proc = subprocess.Popen([sys.executable, "-c", STALLED, str(marker), where, str(nth), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(marker, proc)
        before(proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def sigterm_while_charting(argv: list, out, marker, nth: int = 1) -> subprocess.CompletedProcess:
    """:func:`sigterm_when_stalled` once the ``nth`` chart file of ``seaice ARGV`` (writing into
    ``out``) is open under its temporary name, checking that it is."""
    def one_temporary(proc):
        temporary = [p.name for p in written(out) if p.name.startswith(".")]
        assert len(temporary) == 1 and re.fullmatch(rf"\.\d{{8}}T\d{{6}}_(dmi|cis)_charts\.nc\."
                                                     rf"{proc.pid}\.tmp", temporary[0]), temporary

    return sigterm_when_stalled(argv, marker, WRITING_CHART, nth, one_temporary)
