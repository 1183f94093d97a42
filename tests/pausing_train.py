"""`seaice train` that pauses after one optimizer step, for preemption tests to signal it there.

As a script (what torchrun starts): ``pausing_train.py STEP GO_FILE [--no-signal] --config ...
[--set ...]``; after step STEP each rank prints ``paused RANK PID``, then ``signalled RANK SIGNAL``
once a stop signal (SIGTERM or SIGUSR1, which the trainer's handler still gets) has reached it, and
goes on once GO_FILE exists (with ``--no-signal`` it waits for GO_FILE alone); at the end it prints
``exit RANK STATUS`` and exits with `seaice train`'s status. tests/paused_trainers/sitecustomize.py
makes ``python -m seaice_lib train`` pause so too.

A test orders its steps by these lines and by :func:`signals_pending` (whether a process has yet
to take a signal sent to it), never by sleeping.
"""

import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from seaice_lib.engine import training
from seaice_lib.stopping import STOP_SIGNALS

# /proc/PID/status masks of the signals that stop a trainer, and of SIGKILL: a fatal signal becomes
# a pending SIGKILL of the process it ends
_STOPPING = sum(1 << (sig - 1) for sig in (*STOP_SIGNALS, signal.SIGINT, signal.SIGKILL))


def pause_after(step: int, pause: Callable[[], None]) -> Callable[[], None]:
    """Make ``training.train`` (what `seaice train` calls) call ``pause()`` after optimizer step
    ``step``; returns the function that undoes it."""
    def on_step(done: int, model) -> None:
        if done == step:
            pause()
    real = training.train
    training.train = functools.partial(real, on_step=on_step)
    return functools.partial(setattr, training, "train", real)


def main_paused(argv: list[str], step: int, pause: Callable[[], None]) -> int:
    """``training.main(argv)`` (the `seaice train` command) calling ``pause()`` after step ``step``."""
    undo = pause_after(step, pause)
    try:
        return training.main(argv)
    finally:
        undo()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition()`` until it is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} in {timeout:g} s")
        time.sleep(0.01)


def signalled_pause(go: Path, say: Callable[[str], None] = functools.partial(print, flush=True),
                    timeout: float = 600) -> Callable[[], None]:
    """The pause of a rank (see the module docstring): says ``paused RANK PID``, waits for a stop
    signal, says ``signalled RANK SIGNAL``, waits for ``go`` to exist (``timeout`` seconds each)."""
    rank = os.environ.get("RANK", "0")

    def pause() -> None:
        arrived: list[int] = []
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}  # the trainer's StopFlag

        def note(signum, frame) -> None:
            arrived.append(signum)
            handlers[signum](signum, frame)
        for sig in STOP_SIGNALS:
            signal.signal(sig, note)
        try:
            say(f"paused {rank} {os.getpid()}")
            wait_until(lambda: arrived, timeout, "stop signal")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        say(f"signalled {rank} {signal.Signals(arrived[0]).name}")
        wait_until(go.exists, timeout, str(go))
    return pause


def go_pause(go: Path, say: Callable[[str], None] = functools.partial(print, flush=True),
             timeout: float = 600) -> Callable[[], None]:
    """A pause that says ``paused RANK PID`` and waits for ``go`` to exist, no signal involved."""
    def pause() -> None:
        say(f"paused {os.environ.get('RANK', '0')} {os.getpid()}")
        wait_until(go.exists, timeout, str(go))
    return pause


def group_members(pgid: int) -> set[int]:
    """The processes of process group ``pgid`` (from /proc: Linux)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            group = stat.read_text().rsplit(")", 1)[1].split()[2]  # after the name: state, parent, group
        except OSError:  # ended since the listing
            continue
        if int(group) == pgid:
            members.add(int(stat.parent.name))
    return members


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has; /proc: Linux)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def signals_pending(pid: int) -> bool:
    """Whether process ``pid`` has a stop signal or SIGKILL it has yet to take (/proc: Linux). An
    ignored signal is never pending; one with a handler is until the handler runs; a fatal one
    until the process has ended (a zombie, or gone)."""
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # the thread or the process ended since the listing
            continue
        if fields["State"].split()[0] in ("Z", "X"):
            return False
        if (int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & _STOPPING:
            return True
    return False


if __name__ == "__main__":
    go_only = sys.argv[3:4] == ["--no-signal"]
    pause = (go_pause if go_only else signalled_pause)(Path(sys.argv[2]))
    status = main_paused(sys.argv[4:] if go_only else sys.argv[3:], int(sys.argv[1]), pause)
    print(f"exit {os.environ.get('RANK', '0')} {status}", flush=True)
    sys.exit(status)
