"""`seaice ... --follow` processes in the tests: what one wrote, waiting for a file it writes, and
SIGTERM while it charts a scene (charting stalled by :data:`STALLED`)."""

import re
import signal
import subprocess
import sys
import time

from seaice_lib.atomic import LOCK_NAME

# `seaice ARGS` in which charting stalls once the chart file is open under its temporary name
# (touching the file argv[1] then), until a signal stops it
STALLED = """
import sys, time
from pathlib import Path
from seaice_lib import cli
from seaice_lib.charts import cf


def stall(*args):
    Path(sys.argv[1]).touch()
    while True:
        time.sleep(0.05)

cf._write_lonlat = stall
sys.exit(cli.main(sys.argv[2:]))
"""


def written(folder):
    """What a command wrote into ``folder``: everything but the lock it held (atomic.LOCK_NAME)."""
    return [p for p in folder.iterdir() if p.name != LOCK_NAME]


def wait_for_file(path, proc, timeout=90.0) -> None:
    """Until ``path`` exists; fails if ``proc`` ends first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} not written in {timeout} s"
        time.sleep(0.1)


def sigterm_while_charting(argv: list, out, marker) -> subprocess.CompletedProcess:
    """Run ``seaice ARGV`` (a ``--follow`` into ``out``) with charting stalled (:data:`STALLED`),
    send SIGTERM once the first chart file is open under its temporary name, and wait for the exit."""
    proc = subprocess.Popen([sys.executable, "-c", STALLED, str(marker), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(marker, proc)
        temporary = [p.name for p in written(out)]
        assert len(temporary) == 1 and re.fullmatch(rf"\.\d{{8}}T\d{{6}}_(dmi|cis)_charts\.nc\."
                                                     rf"{proc.pid}\.tmp", temporary[0]), temporary
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
