"""Streaming charts: watch a folder and chart each scene file once it has landed whole (torch-free).

A file counts as landed when its size and modification time are the same at two polls in a row
and it opens as a valid scene (:class:`~seaice_lib.data.scene.Scene`; a truncated netCDF-4/HDF5 file
does not open). A file that is stable but does not open, or that fails while charted, is reported
and skipped; it is tried again only if it changes (a writer that paused, a file replaced).

Per scene, the model's latency per tile is reported from its batches (:class:`BatchTimes`): each
tile is given its batch's wall time divided by the batch's tiles (:func:`tile_latency_ms`). Used by
``seaice predict --follow`` and ``seaice edge-predict --follow`` (:func:`add_options`,
:func:`check_options`, :func:`follow_command`; docs/charts.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import schema
from ..atomic import not_there
from ..data.scene import Scene, SceneError
from ..stopping import STOPPED_EXIT_CODE, TERMINAL_STOP_SIGNALS, StopFlag, Stopped
from ..walk import Walk
from . import cf, maps

Stamp = tuple[int, int]  # (size in bytes, mtime in ns)
SCENE_PATTERN = "*_prep.nc"  # the scene files --follow charts


@dataclass(frozen=True)
class Charted:
    """What charting one scene gave: the chart file, the model's tiles and seconds (tiling,
    inference, blending), the (seconds, tiles) of each model batch (:class:`BatchTimes`), and why
    the chart is not fit for an upload package (:func:`seaice_lib.charts.cf.unusable_inputs`; ``""``:
    it is)."""

    path: Path
    n_tiles: int
    predict_s: float
    batches: tuple[tuple[float, int], ...] = ()
    unusable_inputs: str = ""


class BatchTimes:
    """The wall time of each model batch: ``start()`` before the model runs a batch, ``stop(n)``
    after it (``n`` tiles) append (seconds, n) to ``batches``. ``clock`` gives seconds."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.batches: list[tuple[float, int]] = []
        self._started = 0.0

    def start(self) -> None:
        self._started = self.clock()

    def stop(self, n_tiles: int) -> None:
        self.batches.append((self.clock() - self._started, n_tiles))


def tile_latency_ms(batches: Sequence[tuple[float, int]]) -> dict[str, float]:
    """``{"median", "p95", "max"}`` of the per-tile latency (ms) over a scene's tiles, each tile
    given its batch's seconds divided by the batch's tiles (the 95th percentile interpolated
    linearly between tiles, as ``numpy.percentile``); ``{}`` without batches."""
    if not batches:
        return {}
    per_tile = np.repeat([1000 * seconds / n for seconds, n in batches], [n for _, n in batches])
    return {"median": float(np.median(per_tile)), "p95": float(np.percentile(per_tile, 95)),
            "max": float(per_tile.max())}


class SceneWatcher:
    """New scene files of ``folder`` matching ``pattern``, each returned by :meth:`poll` once it is
    complete (see the module docstring). ``done(path)`` says a file needs no charting (its chart
    exists). ``history``: the folder of the earlier acquisitions when not ``folder`` (``--history``),
    watched for files that land late, change or go away."""

    def __init__(self, folder: str | Path, pattern: str = SCENE_PATTERN,
                 done: Callable[[Path], bool] = lambda path: False, history: str | Path | None = None):
        self.folder, self.pattern, self.done = Path(folder), pattern, done
        self.history = None if history is None or Path(history).resolve() == self.folder.resolve() \
            else Path(history)
        self._last: dict[Path, Stamp] = {}  # stamp at the previous poll
        self._handled: dict[Path, Stamp] = {}  # stamp when returned or refused
        self._history_last: dict[Path, Stamp] = {}  # history files: stamp at the previous poll
        self._history_known: dict[Path, Stamp] = {}  # history files: stamp when last stable
        self._unusable: set[Path] = set()  # entries named like a scene file that are not one, reported
        self.changed = False  # whether the last poll saw a file appear or change
        self.not_scenes: set[Path] = set()  # those of the last poll's refused files that do not read as a scene

    def _stamps(self) -> tuple[dict[Path, Stamp], list[SceneError]]:
        """The stamps of the scene files, and the entries named like one that are not (a folder, a
        symlink loop, an entry that cannot be read), each returned once while it stays."""
        stamps, unusable = _scene_stamps(self.folder, self.pattern)
        new = [SceneError(path, why) for path, why in unusable.items() if path not in self._unusable]
        self._unusable = set(unusable)
        return stamps, new

    def _history_changes(self) -> list[Path]:
        """The files of ``history`` that landed, changed (each once stable) or went away since the
        previous look."""
        if self.history is None:
            return []
        stamps, _ = _scene_stamps(self.history, self.pattern)  # an unreadable one fails where it is read
        stable = {path: stamp for path, stamp in stamps.items() if self._history_last.get(path) == stamp}
        changes = [path for path, stamp in stable.items() if self._history_known.get(path) != stamp]
        changes += [path for path in self._history_known if path not in stamps]
        self._history_known = {path: stamp for path, stamp in self._history_known.items() if path in stamps}
        self._history_known.update(stable)
        self.changed = self.changed or stamps != self._history_last
        self._history_last = stamps
        return changes

    def _recheck_later(self, stamps: dict[Path, Stamp]) -> None:
        """A file new, changed since it was handled or gone, or one of ``history`` likewise,
        may be an earlier acquisition of scenes handled before: those acquired after it are checked
        again (``done`` hashes their history), so no chart stands on an old or missing earlier scene."""
        fresh = [path for path, stamp in stamps.items()
                 if self._last.get(path) == stamp and self._handled.get(path) != stamp]
        gone = [path for path in self._last if path not in stamps]
        earlier = fresh + gone + self._history_changes()
        if not earlier:
            return
        first = min(path.name[:15] for path in earlier)  # acquisition time, from the name
        for path in list(self._handled):
            if path not in fresh and path.name[:15] > first:
                del self._handled[path]

    def poll(self) -> tuple[list[Path], list[SceneError]]:
        """(complete files to chart, files stable but refused), each once per version: refused as no
        scene (also in :attr:`not_scenes`), or by ``done`` (another maker's chart in the way, say)."""
        stamps, bad = self._stamps()
        self.not_scenes = {Path(err.path) for err in bad}
        ready = []
        self.changed = False
        self._recheck_later(stamps)
        for path, stamp in stamps.items():
            stable = self._last.get(path) == stamp
            if not stable or self._handled.get(path) == stamp:
                continue
            self._handled[path] = stamp
            try:
                Scene(path).close()
            except SceneError as err:
                bad.append(SceneError(path, f"{err.problem} (not a complete scene; retried if it changes)", err.variable))
                self.not_scenes.add(path)
                continue
            try:
                if self.done(path):
                    continue
            except ValueError as err:  # a chart file of another maker in the way, a damaged earlier scene
                bad.append(SceneError(path, f"{err} (retried if the scene changes)"))
                continue
            ready.append(path)
        self.changed = self.changed or stamps != self._last
        self._last = stamps
        return ready, bad


def _scene_stamps(folder: Path, pattern: str) -> tuple[dict[Path, Stamp], dict[Path, str]]:
    """``({file: stamp}, {entry named like a scene file that is not one: why})`` in ``folder``,
    leaving out the hidden temporary names of atomic writers."""
    stamps, unusable = {}, {}
    for path in sorted(folder.glob(pattern)):
        if path.name.startswith("."):
            continue
        try:
            st = path.stat()
        except FileNotFoundError:  # renamed or deleted since the listing (or a dangling link)
            continue
        except OSError as err:  # a symlink loop, no permission
            unusable[path] = f"cannot be read ({err.strerror or err})"
            continue
        if not stat.S_ISREG(st.st_mode):
            unusable[path] = "a folder or other entry named like a scene file, not a file"
            continue
        stamps[path] = (st.st_size, st.st_mtime_ns)
    return stamps, unusable


def _sleep(flag: StopFlag, seconds: float) -> None:
    """Sleep ``seconds``, or less if a stop is requested."""
    end = time.monotonic() + seconds
    while not flag.requested and time.monotonic() < end:
        time.sleep(min(0.05, max(end - time.monotonic(), 0)))


def follow(folder: str | Path, chart_scene: Callable[[Path], Charted],
           done: Callable[[Path], bool], pattern: str = SCENE_PATTERN, poll_s: float = 2.0,
           max_scenes: int | None = None, idle_exit_s: float | None = None,
           report: Callable[[str], None] = print, history: str | Path | None = None,
           unreadable: Callable[[Path], object] | None = None) -> dict:
    """Chart each complete scene file that lands in ``folder`` with ``chart_scene`` until stopped.

    Stops on a stop signal (SIGTERM, SIGUSR1, SIGINT: :mod:`seaice_lib.stopping`), after
    ``max_scenes`` scenes charted (once the charts the same poll made stale, of scenes whose earlier
    acquisition landed with the last one, are charted again), or after ``idle_exit_s`` seconds
    without a new or changed file.
    ``report`` gets one line per scene: its tiles and seconds, the median, 95th percentile and
    largest per-tile latency (:func:`tile_latency_ms`) and the seconds from landing to chart, or
    why it was skipped. Scenes for which ``done`` is true (their chart exists) are passed over, so
    a restart charts only what is missing. Returns ``{"charted": scenes, "again": charts made again
    (a scene's earlier acquisitions changed), "skipped": n, "stopped_by":
    what, "by_signal": bool, "unfinished": [path, ...], "scenes": [record, ...]}`` (``unfinished``:
    the files skipped and not charted since, in order), a record per scene charted: ``scene``
    (file name), ``chart`` (path), ``tiles``, ``seconds``,
    ``tile_latency_ms`` (``{"median", "p95", "max"}``), ``landed_to_chart_s`` and
    ``unusable_inputs`` (:attr:`Charted.unusable_inputs`; its line says so). ``history``: the
    folder of the earlier acquisitions when not ``folder``; a file there that lands late, changes or
    goes away has the scenes acquired after it checked with ``done`` again. ``unreadable(path)`` is
    called for each landed file that does not read as a scene (skipped, named, retried if it changes).
    """
    watcher = SceneWatcher(folder, pattern, done, history)
    walk = Walk("scenes", report=report, label="skipped")  # a scene that fails to chart: named, retried if it changes
    charting = False  # a stop signal abandons the scene being charted (its chart is written under a
    # temporary name, so nothing half-written is left looking whole), else stops at the next poll

    def abandon(signum: int) -> None:
        if charting:
            raise Stopped(signals.name)  # abandons the scene being charted

    stopped_by, records = None, []
    charted: dict[str, None] = {}  # the scenes charted, by file name (a scene may be charted again)
    unfinished: dict[Path, None] = {}  # skipped, not charted since: left without a chart when it stops
    last_activity = time.monotonic()
    with StopFlag(TERMINAL_STOP_SIGNALS, on_signal=abandon) as signals:
        while stopped_by is None:
            ready, bad = watcher.poll()
            landed = time.monotonic()
            for err in bad:
                walk.fail(str(err.path), str(err))
                unfinished[Path(err.path)] = None
                if unreadable is not None and Path(err.path) in watcher.not_scenes:
                    unreadable(Path(err.path))
            if watcher.changed:
                last_activity = time.monotonic()
            for path in ready:
                if signals.requested:
                    break
                if stopped_by is not None and path.name not in charted:
                    continue  # past --max-scenes: only the charts made stale by the files that landed are made again
                try:
                    charting = True
                    result = walk.attempt(path.name, lambda: chart_scene(path))
                except Stopped:
                    break
                finally:
                    charting = False
                    last_activity = time.monotonic()
                if result is None:
                    unfinished[path] = None
                    continue
                unfinished.pop(path, None)
                charted[path.name] = None
                latency = tile_latency_ms(result.batches)
                records.append({"scene": path.name, "chart": str(result.path), "tiles": result.n_tiles,
                                "seconds": result.predict_s, "tile_latency_ms": latency,
                                "landed_to_chart_s": time.monotonic() - landed,
                                "unusable_inputs": result.unusable_inputs})
                per_tile = (f" (per tile: {latency['median']:.1f} ms median, {latency['p95']:.1f} ms "
                            f"p95, {latency['max']:.1f} ms max)" if latency else "")
                report(f"charted {path.name}: {result.n_tiles} tiles in {result.predict_s:.2f} s"
                       f"{per_tile}; {result.path.name} written "
                       f"{records[-1]['landed_to_chart_s']:.2f} s after the scene landed"
                       + ("; its inputs unusable (named above): not for an upload package"
                          if result.unusable_inputs else ""))
                if max_scenes is not None and len(charted) >= max_scenes:
                    stopped_by = f"--max-scenes {max_scenes}"
            if signals.requested:
                stopped_by = signals.name
            elif stopped_by is None and idle_exit_s is not None \
                    and time.monotonic() - last_activity >= idle_exit_s:
                stopped_by = f"--idle-exit {idle_exit_s:g}"
            elif stopped_by is None:
                _sleep(signals, poll_s)
    return {"charted": len(charted), "again": len(records) - len(charted), "skipped": len(walk.failed),
            "stopped_by": stopped_by,
            "by_signal": signals.requested, "unfinished": list(unfinished), "scenes": records}


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``, and ``--follow DIR`` with its options ``--poll``, ``--max-scenes``, ``--idle-exit``."""
    parser.add_argument("--overwrite", action="store_true",
                        help="chart a scene again when --out holds its chart from another model or other options "
                             "(default: such a scene fails, naming the file)")
    parser.add_argument("--follow", type=Path, default=None, metavar="DIR",
                        help=f"watch DIR and chart each {SCENE_PATTERN} file once it has landed whole, "
                             "until SIGTERM, SIGUSR1 or Ctrl-C")
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                        help="--follow: seconds between looks at DIR")
    parser.add_argument("--max-scenes", type=int, default=None, metavar="N",
                        help="--follow: stop after N scenes charted")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="--follow: stop when no file has landed or changed for SECONDS")


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  scenes: Sequence[Path]) -> None:
    """Usage errors of :func:`add_options`'s options against the scenes named on the command line:
    scenes or ``--follow DIR``, not both; the follow options only with ``--follow``."""
    if args.follow is None:
        if not scenes:
            parser.error("name scene files, or a folder to watch with --follow DIR")
        for option, value in (("--max-scenes", args.max_scenes), ("--idle-exit", args.idle_exit)):
            if value is not None:
                parser.error(f"{option} needs --follow DIR")
        return
    if scenes:
        parser.error(f"--follow {args.follow} charts the scenes that land there: name no scene files")
    if not args.follow.is_dir():
        parser.error(f"--follow {args.follow}: {not_there(args.follow, folder=True)}")
    for option, value in (("--poll", args.poll), ("--max-scenes", args.max_scenes),
                          ("--idle-exit", args.idle_exit)):
        if value is not None and not 0 < value < float("inf"):
            parser.error(f"{option} must be a finite number > 0, not {value}")


def follow_command(args: argparse.Namespace, chart_scene: Callable[[Path], Charted],
                   made: Callable[[Path], str], inputs: tuple[str, ...],
                   kept: Callable[[Path, Path], object] | None = None) -> int:
    """:func:`follow` ``args.follow`` into ``args.out`` with the options of :func:`add_options`,
    printing each line and a summary; scenes whose chart file in ``args.out`` the same model,
    options and input files made (``made(path)``, :func:`seaice_lib.charts.cf.made_by`) are passed over, others charted
    again with ``--overwrite``, else reported as failing. ``kept(chart_file, scene)`` is called for
    each chart passed over (the other ``--format`` outputs made from it: a restart may ask for
    them, or an earlier follow may have stopped before them). A scene whose charting fails has its
    chart file there removed when that was made from its earlier files (:func:`maps.withdraw_outdated`).
    Each chart written or passed over is checked as ``predict`` checks its upload package
    (:func:`seaice_lib.charts.cf.unusable_inputs`, the model's SAR-grid ``inputs``): one made from
    unusable inputs is kept and marked on its line, and the scenes whose chart in ``args.out`` is so
    made are named after the summary, whatever stopped it. Returns the exit status:
    :data:`~seaice_lib.stopping.STOPPED_EXIT_CODE` when a signal stopped it (a restart goes on), else
    1 when a file that landed is left without its chart (skipped and not charted since, whatever the
    reason: nothing retries it once the command has ended) or its chart was made from unusable
    inputs (not to pass for a complete one), else 0."""
    unusable: dict[Path, str] = {}  # scene file -> why its chart in args.out is not fit for upload

    def vet(path: Path, chart: Path) -> str:
        """:func:`cf.unusable_inputs` of the scene's chart, kept in ``unusable`` (or dropped: clean)."""
        why = cf.unusable_inputs([path], [chart], inputs)
        if why:
            unusable[path] = why
        else:
            unusable.pop(path, None)
        return why

    def done(path: Path) -> bool:
        chart = cf.charts_path(args.out, schema.scene_key(path))
        if not cf.reusable(chart, made(path), args.overwrite):
            return False
        if kept is not None:
            kept(chart, path)
        vet(path, chart)  # a restart passes over a chart made from unusable inputs, never unsaid
        return True

    def chart(path: Path) -> Charted:
        cf.remove_package_of(args.out, schema.scene_key(path), "which is charted again")
        try:
            charted = chart_scene(path)
        except BaseException:  # nothing of the scene's earlier files passes for its chart
            unusable.pop(path, None)  # the scene is left unfinished: named, exit 1
            try:
                now = made(path)
            except (ValueError, OSError):  # its files cannot be hashed: the chart there cannot be vouched for
                now = "{}"
            maps.withdraw_outdated(cf.charts_path(args.out, schema.scene_key(path)), now)
            raise
        return dataclasses.replace(charted, unusable_inputs=vet(path, charted.path))

    def unreadable(path: Path) -> None:
        """A landed file that no longer reads: its earlier chart (and a package holding it) is not
        of the scene as it is now, as ``predict`` withdraws it."""
        chart_file = cf.charts_path(args.out, schema.scene_key(path))
        if chart_file.is_file():
            cf.remove_package_of(args.out, schema.scene_key(path), "whose scene file no longer reads")
            maps.withdraw_outdated(chart_file, "{}")

    counts = follow(args.follow, chart, done=done,
                    poll_s=args.poll, max_scenes=args.max_scenes, idle_exit_s=args.idle_exit,
                    report=lambda line: print(line, flush=True), history=args.history, unreadable=unreadable)
    again = f" ({counts['again']} charts made again: their earlier acquisitions changed)" if counts["again"] else ""
    charted = (f"charted {counts['charted']} scenes into {args.out}" if counts["charted"]
               else f"no scene charted (nothing written into {args.out})")
    print(f"{charted}{again}, skipped {counts['skipped']}; stopped by {counts['stopped_by']}", flush=True)
    if unusable:  # also when a signal stopped it: the usual end of a watcher
        print(f"{len(unusable)} charts in {args.out} not fit for an upload package: {'; '.join(unusable.values())}; "
              "repair or leave out those scenes", file=sys.stderr, flush=True)
    if counts["by_signal"]:
        return STOPPED_EXIT_CODE
    if unfinished := counts["unfinished"]:
        print(f"{len(unfinished)} files left without their charts (named above): "
              f"{', '.join(str(p) for p in unfinished)}", file=sys.stderr, flush=True)
        return 1
    return 1 if unusable else 0
