"""Stopping on a signal, one way for every long command: training, ``--follow``, ``download``, and
the one-shot ``predict``, ``edge-predict`` and ``evaluate``.

A :class:`StopFlag` turns the stop signals into a flag the command checks where it can stop
cleanly (a checkpoint, the next poll, between files), or, with ``on_signal`` (such as
:func:`abandon_on_stop`'s), into an exception that abandons the work in hand (written under a
temporary name, so nothing half-made looks whole). A command stopped this way keeps what it needs to go on and exits with
:data:`STOPPED_EXIT_CODE`: the same command line resumes (``slurm/train.sbatch`` requeues on it).
Ctrl-C elsewhere exits 130 (:mod:`seaice_lib.cli`). docs/models.md, "Training", tells the story.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
STOPPED_EXIT_CODE = 124  # stopped by a signal, its state kept: run the same command again to resume
# what schedulers send: Slurm SIGTERM at the time limit (SIGUSR1 with --signal), torchrun SIGTERM;
# the commands a person runs at a terminal take Ctrl-C (SIGINT) too
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
TERMINAL_STOP_SIGNALS = (*STOP_SIGNALS, signal.SIGINT)
# `python -c _WITH_PARENT PARENT_PID PROGRAM ARG...`: on Linux, have the kernel send this process
# SIGKILL when the thread that started it ends (prctl PR_SET_PDEATHSIG, 1), end at once if the parent
# PARENT_PID is gone already (it died before prctl), then become PROGRAM (exec: the same pid, the
# death signal kept). Elsewhere it only becomes PROGRAM.
_WITH_PARENT = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
    if os.getppid() != int(sys.argv[1]):
        sys.exit(f"not started: the process that started it (pid {sys.argv[1]}) has ended")
os.execv(sys.argv[2], sys.argv[2:])
"""


def ending_with_this_process(command: list[str]) -> list[str]:
    """``command`` (its program's path first) started so that on Linux it is killed (SIGKILL) when
    the thread of this process that starts it ends, however this process dies (SIGKILL, the OOM
    killer): a child in its own session, which the stop signals do not reach, cannot run on
    unwatched. The starting thread must wait for the child (as ``Popen.communicate`` does). Other
    systems have no such signal: there the child outlives a killed parent."""
    return [sys.executable, "-c", _WITH_PARENT, str(os.getpid()), *command]


class StopFlag:
    """Context manager: ``signals`` set :attr:`signal` (the number received) instead of ending the
    process, and call ``on_signal(signum)`` if given (which may raise to abandon the work in hand).

    Handlers can only be installed from the main thread; elsewhere the flag stays unset. The
    previous handlers come back on exit. Once ``on_signal`` has raised, the finalizers of what it
    cut short (an object whose ``__init__`` it interrupted) may fail: until exit each such error is
    one debug line, not a traceback on stderr.
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, on_signal: Callable[[int], None] | None = None):
        self.signals = tuple(signals)
        self.signal: int | None = None
        self.on_signal = on_signal
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        self._unraisable_hook: Callable[[Any], Any] | None = None  # the hook replaced once on_signal raised
        self._raised: BaseException | None = None  # what on_signal raised

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str | None:
        """The received signal's name (``"SIGTERM"``), or None."""
        return None if self.signal is None else signal.Signals(self.signal).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        if self.on_signal is not None:
            try:
                self.on_signal(signum)
            except BaseException as raised:
                if self._unraisable_hook is None:
                    self._unraisable_hook, sys.unraisablehook = sys.unraisablehook, _finalizer_cut_short
                self._raised = raised
                raise

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._unraisable_hook is not None:
            if exc is not None and exc is self._raised:  # leaving with it: the frames it cut short hold
                traceback.clear_frames(tb)  # the abandoned objects; dropped (finalized) here, quietly
            gc.collect()  # and those in reference cycles
            sys.unraisablehook, self._unraisable_hook, self._raised = self._unraisable_hook, None, None


def _finalizer_cut_short(unraisable: Any) -> None:
    """``sys.unraisablehook`` after a stop signal abandoned work: one debug line per failed finalizer."""
    log.debug("after the stop: %s %r: %s: %s", unraisable.err_msg or "exception ignored in", unraisable.object,
              type(unraisable.exc_value).__name__, unraisable.exc_value)


class Stopped(BaseException):
    """A stop signal abandoned the work in hand (:func:`abandon_on_stop`). Not an ``Exception``, so
    no handler of a bad item (:mod:`seaice_lib.walk`) takes it for one; its message is the signal's
    name (``"SIGTERM"``)."""


@contextmanager
def abandon_on_stop(signals: tuple[int, ...] = TERMINAL_STOP_SIGNALS) -> Iterator[StopFlag]:
    """A :class:`StopFlag` whose first signal raises :class:`Stopped` wherever the main thread is;
    later ones are only recorded, so the cleanup on the way out (temporary files removed, a lock
    released) is not cut short. For one-shot commands whose outputs are written under temporary
    names: the command catches :class:`Stopped`, says what was done and what was not, and exits
    :data:`STOPPED_EXIT_CODE`."""
    raised = False

    def stop(signum: int) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Stopped(signal.Signals(signum).name)

    with StopFlag(signals, on_signal=stop) as flag:
        yield flag
