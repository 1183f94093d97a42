"""What a run shows while it goes: tqdm bars, plain log lines (SLURM) or nothing; byte and time formats.
The log lines are INFO lines of :mod:`logging` (stderr, ``--log-file``; ``seaice -q`` leaves them out)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from .options import Options

log = logging.getLogger(__name__)


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Counts files and bytes of a run; the base shows nothing (``progress="off"``)."""

    def __init__(self, files: int, total: int, present: int):
        self.files, self.total, self.done = files, total, present
        self.finished, self.fetched = 0, 0
        self.began = time.monotonic()
        self.lock = threading.Lock()

    def start_file(self, path: str, size: int, present: int) -> None:
        """A file's first bytes are about to be asked for."""

    def advance(self, path: str, n: int) -> None:
        """``n`` new bytes of ``path`` were written."""
        with self.lock:
            self.done += n
            self.fetched += n

    def rewind(self, path: str, n: int) -> None:
        """``n`` bytes of ``path`` written before are thrown away (the server ignored Range)."""
        with self.lock:
            self.done -= n

    def end_file(self, path: str, error: str | None) -> None:
        with self.lock:
            self.finished += 1

    def note(self, message: str) -> None:
        """A retry or another event worth a line."""

    def close(self) -> None:
        """The run is over."""


class BarProgress(Progress):
    """An overall tqdm bar (bytes, rate, ETA) and one bar per file being fetched."""

    def __init__(self, files: int, total: int, present: int):
        super().__init__(files, total, present)
        self.overall = tqdm(total=total, initial=present, unit="B", unit_scale=True, position=0,
                            desc=f"0/{files} files", dynamic_ncols=True)
        self.bars: dict[str, tqdm] = {}

    def start_file(self, path: str, size: int, present: int) -> None:
        with self.lock:
            self.bars[path] = tqdm(total=size, initial=present, unit="B", unit_scale=True, leave=False,
                                   desc=Path(path).name[-40:], dynamic_ncols=True)

    def _update(self, path: str, n: int) -> None:
        with self.lock:
            self.overall.update(n)
            if path in self.bars:
                self.bars[path].update(n)

    def advance(self, path: str, n: int) -> None:
        super().advance(path, n)
        self._update(path, n)

    def rewind(self, path: str, n: int) -> None:
        super().rewind(path, n)
        self._update(path, -n)

    def end_file(self, path: str, error: str | None) -> None:
        super().end_file(path, error)
        with self.lock:
            bar = self.bars.pop(path, None)
        if bar is not None:
            bar.close()
        self.overall.set_description(f"{self.finished}/{self.files} files")
        if error:
            log.warning("FAILED %s", error)

    def note(self, message: str) -> None:
        log.info(message)

    def close(self) -> None:
        for bar in list(self.bars.values()):
            bar.close()
        self.overall.close()


class LogProgress(Progress):
    """Plain lines for batch logs (SLURM): every file's end, retries, and a status every ``every`` s."""

    def __init__(self, files: int, total: int, present: int, every: float = 30.0):
        super().__init__(files, total, present)
        self.every = every
        self.last_time, self.last_fetched = self.began, 0

    def _print(self, line: str, level: int = logging.INFO) -> None:
        log.log(level, "[%s] %s", dt.datetime.now().strftime("%H:%M:%S"), line)

    def status(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.began)
        rate = self.fetched / elapsed
        eta = f", ETA {format_seconds((self.total - self.done) / rate)}" if rate > 0 else ""
        percent = 100 * self.done / self.total if self.total else 100.0
        return (f"{self.finished}/{self.files} files, {format_bytes(self.done)} of "
                f"{format_bytes(self.total)} ({percent:.1f} %), {format_bytes(rate)}/s{eta}")

    def advance(self, path: str, n: int) -> None:
        super().advance(path, n)
        now = time.monotonic()
        with self.lock:
            due = now - self.last_time >= self.every
            if due:
                self.last_time = now
        if due:
            self._print(self.status())

    def end_file(self, path: str, error: str | None) -> None:
        super().end_file(path, error)
        if error:
            self._print(f"FAILED {error}", logging.WARNING)
        else:
            self._print(f"verified {path}")

    def note(self, message: str) -> None:
        self._print(message)

    def close(self) -> None:
        if self.files:
            self._print(self.status())


def make_progress(options: Options, files: int, total: int, present: int) -> Progress:
    if options.progress == "bars":
        return BarProgress(files, total, present)
    if options.progress == "log":
        return LogProgress(files, total, present, options.log_every)
    return Progress(files, total, present)
