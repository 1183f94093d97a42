"""Streaming charts: watch a folder and chart each scene file once it has landed whole (torch-free).

A file counts as landed when its size and modification time are the same at two polls in a row
and it opens as a valid scene (:class:`~seaice_lib.data.scene.Scene`; a truncated netCDF-4/HDF5 file
does not open). A file that is stable but does not open, or that fails while charted, is reported
and skipped; it is tried again only if it changes (a writer that paused, a file replaced). Used by
``seaice predict --follow`` (docs/charts.md).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..data.scene import Scene, SceneError

Stamp = tuple[int, int]  # (size in bytes, mtime in ns)


@dataclass(frozen=True)
class Charted:
    """What charting one scene gave: the chart file and the model's tiles and seconds."""

    path: Path
    n_tiles: int
    predict_s: float


class SceneWatcher:
    """New scene files of ``folder`` matching ``pattern``, each returned by :meth:`poll` once it is
    complete (see the module docstring). ``done(path)`` says a file needs no charting (its chart
    exists)."""

    def __init__(self, folder: str | Path, pattern: str = "*_prep.nc",
                 done: Callable[[Path], bool] = lambda path: False):
        self.folder, self.pattern, self.done = Path(folder), pattern, done
        self._last: dict[Path, Stamp] = {}  # stamp at the previous poll
        self._handled: dict[Path, Stamp] = {}  # stamp when returned or refused
        self.changed = False  # whether the last poll saw a file appear or change

    def _stamps(self) -> dict[Path, Stamp]:
        stamps = {}
        for path in sorted(self.folder.glob(self.pattern)):
            if path.name.startswith("."):  # temporary names of atomic writers
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # renamed or deleted since the listing
                continue
            stamps[path] = (st.st_size, st.st_mtime_ns)
        return stamps

    def poll(self) -> tuple[list[Path], list[SceneError]]:
        """(complete files to chart, files stable but unreadable), each once per version."""
        stamps = self._stamps()
        ready, bad = [], []
        for path, stamp in stamps.items():
            stable = self._last.get(path) == stamp
            if not stable or self._handled.get(path) == stamp:
                continue
            self._handled[path] = stamp
            if self.done(path):
                continue
            try:
                Scene(path).close()
            except SceneError as err:
                bad.append(err)
                continue
            ready.append(path)
        self.changed = stamps != self._last
        self._last = stamps
        return ready, bad


class _Stop(BaseException):
    """Raised by the signal handler to abandon the scene being charted."""


class StopSignals:
    """SIGINT and SIGTERM ask :func:`follow` to stop: at once, abandoning the scene being charted
    (its chart is written under a temporary name, so nothing half-written is left looking whole),
    or at the next poll. The previous handlers come back on exit."""

    def __init__(self):
        self.signal: int | None = None  # the signal received
        self.charting = False

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        if self.charting:
            raise _Stop

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested."""
        end = time.monotonic() + seconds
        while not self.requested and time.monotonic() < end:
            time.sleep(min(0.05, max(end - time.monotonic(), 0)))

    @contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def follow(folder: str | Path, chart_scene: Callable[[Path], Charted],
           done: Callable[[Path], bool], pattern: str = "*_prep.nc", poll_s: float = 2.0,
           max_scenes: int | None = None, idle_exit_s: float | None = None,
           report: Callable[[str], None] = print) -> dict:
    """Chart each complete scene file that lands in ``folder`` with ``chart_scene`` until stopped.

    Stops on SIGINT/SIGTERM, after ``max_scenes`` scenes charted, or after ``idle_exit_s`` seconds
    without a new or changed file. ``report`` gets one line per scene: its tiles, seconds, ms per
    tile and the seconds from landing to chart, or why it was skipped. Scenes for which ``done``
    is true (their chart exists) are passed over, so a restart charts only what is missing.
    Returns ``{"charted": n, "skipped": n, "stopped_by": what}``.
    """
    watcher = SceneWatcher(folder, pattern, done)
    signals = StopSignals()
    charted, skipped, stopped_by = 0, 0, None
    last_activity = time.monotonic()
    with signals.installed():
        while stopped_by is None:
            ready, bad = watcher.poll()
            landed = time.monotonic()
            for err in bad:
                skipped += 1
                report(f"skipped {err} (not a complete scene; retried if it changes)")
            if watcher.changed:
                last_activity = time.monotonic()
            for path in ready:
                if signals.requested:
                    break
                try:
                    signals.charting = True
                    result = chart_scene(path)
                except _Stop:
                    break
                except (ValueError, OSError) as err:  # SceneError is a ValueError
                    skipped += 1
                    report(f"skipped {path.name}: {' '.join(str(err).split())}")
                    continue
                finally:
                    signals.charting = False
                    last_activity = time.monotonic()
                charted += 1
                seconds = time.monotonic() - landed
                per_tile = 1000 * result.predict_s / max(result.n_tiles, 1)
                report(f"charted {path.name}: {result.n_tiles} tiles in {result.predict_s:.2f} s "
                       f"({per_tile:.1f} ms/tile); {result.path.name} written {seconds:.2f} s after "
                       "the scene landed")
                if max_scenes is not None and charted >= max_scenes:
                    stopped_by = f"--max-scenes {max_scenes}"
                    break
            if signals.requested:
                stopped_by = signal.Signals(signals.signal).name
            elif stopped_by is None and idle_exit_s is not None \
                    and time.monotonic() - last_activity >= idle_exit_s:
                stopped_by = f"--idle-exit {idle_exit_s:g}"
            elif stopped_by is None:
                signals.sleep(poll_s)
    return {"charted": charted, "skipped": skipped, "stopped_by": stopped_by}
