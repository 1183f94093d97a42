"""The output of a child process, line by line as it comes, for tests that act on what it says."""

import queue
import threading
import time
from collections.abc import Callable


def lines_of(stream) -> queue.Queue:
    """The lines of ``stream`` as a thread reads them (None at the end)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return lines


def read_until(lines: queue.Queue, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """Lines up to the one after which ``done(lines so far)`` holds (or the end, or ``timeout`` seconds)."""
    seen, deadline = [], time.monotonic() + timeout
    while not done(seen):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
    return seen


def read_to_the_end(lines: queue.Queue, timeout: float) -> list[str]:
    """The remaining lines, up to the end of the stream (or ``timeout`` seconds)."""
    return read_until(lines, lambda seen: False, timeout)
