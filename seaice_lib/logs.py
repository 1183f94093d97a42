"""What the commands say while they run: log lines through :mod:`logging`, progress bars only on a terminal.

Every module logs to ``logging.getLogger(__name__)`` (under ``seaice_lib``); results (tables, JSON,
summaries) go to stdout, log lines to stderr. ``seaice -q`` shows warnings and errors only and no
bars, ``-v`` debug lines too, ``--log-file PATH`` also writes the lines, timestamped, to PATH (info
lines even with ``-q``). Without a terminal on stderr (a SLURM log, a pipe, a file) no bar is drawn,
so a log never holds a carriage return (README, "What a command says").
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from tqdm import tqdm  # not tqdm.auto: bars() is False in a notebook, where tqdm.auto warns without ipywidgets

LOGGER = "seaice_lib"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger(__name__)
LOG_EVERY_S = 60.0  # seconds between the info lines of a progress bar without a terminal
EPILOG = ("Before the stage, `seaice -q` logs warnings and errors only, `seaice -v` debug lines too and "
          "`seaice --log-file PATH` every line to PATH as well; progress bars are drawn only on a terminal.")


class _Stderr(logging.Handler):
    """Lines to whatever ``sys.stderr`` is when they come (tests swap it), above any progress bar.
    ``unless_host_prints``: the handler set up on import, for library use; it stays silent where the
    host program set up a root handler that prints on the terminal (``logging.basicConfig``): the
    host's handler shows the line, never twice."""

    def __init__(self, unless_host_prints: bool = False) -> None:
        super().__init__()
        self.unless_host_prints = unless_host_prints

    def emit(self, record: logging.LogRecord) -> None:
        if self.unless_host_prints and _host_prints():
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's rule: a line that cannot be written never stops the run
            self.handleError(record)


def _host_prints() -> bool:
    """Whether the root logger has a handler that prints on the terminal (a plain StreamHandler on
    stderr or stdout, as ``logging.basicConfig`` makes): the host program set up logging itself."""
    terminal = {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)}
    return any(type(h) is logging.StreamHandler and id(h.stream) in terminal for h in logging.getLogger().handlers)


_quiet = False  # set by configure() and quiet(); read by bars()


def configure(quiet: bool = False, verbose: bool = False, log_file: Path | None = None,
              on_import: bool = False) -> None:
    """Log lines of ``seaice_lib`` to stderr (warnings only when ``quiet``, debug when ``verbose``)
    and, with ``log_file``, appended to that file; replaces what an earlier call set up.
    ``on_import``: the package's own set-up for library use, silent where the host program's root
    logger prints on the terminal (it shows the lines)."""
    global _quiet
    _quiet = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    package = logging.getLogger(LOGGER)
    for handler in package.handlers[:]:
        package.removeHandler(handler)
        handler.close()
    stderr = _Stderr(unless_host_prints=on_import)
    stderr.setLevel(level)
    stderr.setFormatter(logging.Formatter("%(message)s"))
    package.addHandler(stderr)
    if log_file is not None:
        file = logging.FileHandler(log_file, encoding="utf-8")
        file.setLevel(min(level, logging.INFO))
        file.setFormatter(logging.Formatter(FILE_FORMAT))
        package.addHandler(file)
    package.setLevel(min(h.level for h in package.handlers))


# the first line of a --log-file that configure() wrote: FILE_FORMAT's time stamp and level
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def is_log(path: Path) -> bool:
    """Whether lines may be appended to the file ``path``: it is missing, empty or a log this module
    wrote (its first line a log line); False for any other file (a scene, a JSON record), which
    appending would change. (What is not a file is left to opening it to refuse.)"""
    if not path.is_file():
        return True
    with open(path, "rb") as f:
        head = f.read(64)
    return not head or bool(LOG_LINE.match(head))


def quiet() -> None:
    """Warnings and errors only, no bars, from now on (a stage's own ``--quiet``)."""
    global _quiet
    _quiet = True
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, _Stderr):
            handler.setLevel(max(handler.level, logging.WARNING))


class _Quiet(argparse.Action):
    """``--quiet``: True, and :func:`quiet` at once."""

    def __init__(self, option_strings: list[str], dest: str, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False,
                         help="warnings and errors only, no progress bars (the same as `seaice -q`)")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, True)
        quiet()


def first_few(items: list[str], n: int = 3) -> str:
    """``items`` for a message: the first ``n``, then how many more."""
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """A stage's own ``--quiet``: :func:`quiet` as soon as it is parsed; ``args.quiet`` is True."""
    parser.add_argument("--quiet", action=_Quiet)


def bars() -> bool:
    """Whether progress bars are drawn: stderr is a terminal and the run is not quiet."""
    return not _quiet and sys.stderr.isatty()


def progress_bar(iterable=None, disable: bool = False, **kw) -> tqdm:
    """``tqdm(iterable, **kw)`` as a bar where :func:`bars` allows; otherwise an info line at its start,
    every :data:`LOG_EVERY_S` and at its end (none for a ``leave=False`` bar), which ``-q`` keeps
    off stderr but not out of ``--log-file``; nothing at all when ``disable``."""
    if bars():
        return tqdm(iterable, disable=disable, **kw)
    if disable or not kw.get("leave", True):
        return tqdm(iterable, disable=True, **kw)
    kw.pop("dynamic_ncols", None)
    return tqdm(iterable, file=_LogLines(), mininterval=LOG_EVERY_S, maxinterval=LOG_EVERY_S,
                    bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]", **kw)


class _LogLines:
    """Where a bar draws without a terminal: each state it draws becomes one info line, no carriage return."""

    def write(self, text: str) -> None:
        if text := text.strip("\r\n "):
            log.info(text)

    def flush(self) -> None:
        pass
