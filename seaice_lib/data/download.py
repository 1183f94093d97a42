"""Download the AI4Arctic dataset from the DTU Data portal (a figshare service), robustly.

Files are listed through the figshare API (``GET /articles/{id}/files``, paged until a short page; the
``files`` of ``GET /articles/{id}`` may be truncated and is not used), then fetched by ``workers``
parallel connections. Each file is streamed to ``NAME.part`` and resumed with HTTP ``Range`` after any
interruption or on a rerun; files larger than ``segment_size`` are fetched as several ranges at once
(``NAME.part`` plus ``NAME.part.<offset>``, joined at the end). A finished file is checked against the
portal's size and ``computed_md5`` and only then renamed to its final name: a file that fails the check
is removed, never left under its name. A server that ignores ``Range`` (answers 200) is handled by
starting that part again from zero.

``DEST/download_manifest.json`` records each file's state (size, md5, verified), rewritten atomically
after every file, so a rerun skips verified files without hashing them again. ``DEST/.download.lock``
keeps a second run off the same DEST (it stops with a message, or waits with ``wait``).

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter, honouring
``Retry-After``; the retry count restarts whenever a file makes progress. A file that still fails gets
one clear error naming it and the cause while the other files go on.

CLI: ``python -m seaice_lib.download --article NAME_OR_ID --dest DIR [--workers N] [--include GLOB]
[--api-url URL] [--dry-run] [--quiet] [--wait] [--timeout S] [--retries N]``; see ``docs/download.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import fcntl
import fnmatch
import glob
import hashlib
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, TypeVar

import requests
import urllib3
from tqdm.auto import tqdm

from .. import __version__
from ..atomic import write_text

API_URL = "https://api.figshare.com/v2"
ARTICLES = {"raw-train": 21284967, "rtt-train": 21316608, "raw-test": 21762848, "rtt-test": 21762830}
COLLECTION = "all"
COLLECTION_ID = 6244065
MANIFEST_NAME = "download_manifest.json"
LOCK_NAME = ".download.lock"
MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is cut to this
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                  ConnectionError, TimeoutError)
USER_AGENT = f"seaice_lib-download/{__version__} python-requests/{requests.__version__}"

T = TypeVar("T")
State = Literal["present", "downloaded", "failed", "pending"]


class DownloadError(RuntimeError):
    """A listing, a file or the destination could not be handled; the message names it and the cause."""


class _Retryable(Exception):
    """A failure worth another try (5xx, 429, a short body), with the server's ``Retry-After``."""

    def __init__(self, cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.retry_after = retry_after


class _Interrupted(Exception):
    """The run is being stopped (Ctrl-C, SIGTERM): leave the ``.part`` files for the next run."""


# --- what to fetch ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One file of an article as the portal lists it; ``path`` is where it goes under DEST."""

    article_id: int
    id: int
    name: str
    size: int
    md5: str
    url: str
    path: str


@dataclass(frozen=True)
class Options:
    """How to download; sizes in bytes, times in seconds. ``progress``: "bars", "log" or "off"."""

    workers: int = 4
    timeout: float = 60.0
    retries: int = 8
    backoff: float = 1.0
    max_backoff: float = 60.0
    chunk_size: int = 1 << 20
    segment_size: int = 256 << 20
    page_size: int = 100
    progress: Literal["bars", "log", "off"] = "bars"
    log_every: float = 30.0
    wait: bool = False

    def __post_init__(self) -> None:
        rules = [("workers", self.workers >= 1, "at least 1"), ("retries", self.retries >= 0, "at least 0"),
                 ("timeout", self.timeout > 0, "positive"), ("chunk size", self.chunk_size >= 1, "positive"),
                 ("segment size", self.segment_size >= 0, "at least 0 (0: never split)"),
                 ("page size", 1 <= self.page_size <= 1000, "1 to 1000"),
                 ("progress", self.progress in {"bars", "log", "off"}, "'bars', 'log' or 'off'")]
        problems = [f"{name} must be {rule}" for name, ok, rule in rules if not ok]
        if problems:
            raise ValueError("; ".join(problems))


def resolve_target(name_or_id: str | int) -> tuple[str, int]:
    """``("article", id)`` or ``("collection", id)`` for a known name, ``all`` or a numeric article id."""
    text = str(name_or_id).strip().lower()
    if text == COLLECTION:
        return "collection", COLLECTION_ID
    if text in ARTICLES:
        return "article", ARTICLES[text]
    if text.isdigit():
        return "article", int(text)
    known = ", ".join([*ARTICLES, COLLECTION])
    raise DownloadError(f"unknown article {name_or_id!r}: use one of {known} or a numeric article id")


# --- retries ------------------------------------------------------------------------------------
def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def describe_error(err: BaseException) -> str:
    """A short cause for a network error, without the connection-pool boilerplate."""
    if isinstance(err, _Retryable):
        return str(err)
    text = str(err)
    if isinstance(err, requests.Timeout) or "timed out" in text.lower():
        return "timed out"
    if "reset" in text.lower():
        return "connection reset"
    if isinstance(err, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return "connection broken mid-transfer"
    if isinstance(err, requests.ConnectionError):
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return f"connection failed: {reason.group(1)}" if reason else "connection failed"
    return f"{type(err).__name__}: {text}"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry ``n`` waits ``backoff * 2**(n-1)`` seconds (at most
    ``max_backoff``) times a random factor in [0.5, 1], or the server's ``Retry-After`` if longer."""

    retries: int = 8
    backoff: float = 1.0
    max_backoff: float = 60.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        wait = min(self.max_backoff, self.backoff * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait

    def run(self, attempt: Callable[[], T], what: str, *, stop: threading.Event | None = None,
            progress: Callable[[], int] | None = None,
            on_retry: Callable[[str], None] | None = None) -> T:
        """``attempt()`` until it succeeds; after ``retries`` failures in a row without ``progress()``
        growing, a DownloadError naming ``what`` and the last cause."""
        failures, mark = 0, progress() if progress else 0
        while True:
            try:
                return attempt()
            except (_Retryable, *NETWORK_ERRORS) as err:
                cause = describe_error(err)
                retry_after = err.retry_after if isinstance(err, _Retryable) else None
                error = err
            now = progress() if progress else 0
            if now > mark:
                failures, mark = 0, now
            failures += 1
            if failures > self.retries:
                raise DownloadError(f"{what}: {cause} (gave up after {self.retries} retries)") from error
            wait = self.delay(failures, retry_after)
            if on_retry:
                on_retry(f"{what}: {cause}; retry {failures}/{self.retries} in {wait:.1f} s")
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):
                raise _Interrupted()


def _check_status(response: requests.Response) -> None:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code in RETRYABLE_STATUS:
        raise _Retryable(status, parse_retry_after(response.headers.get("Retry-After")))
    if response.status_code >= 400:
        raise DownloadError(status)


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


# --- listing ------------------------------------------------------------------------------------
class PortalClient:
    """The figshare API: paged listings of an article's files and of a collection's articles."""

    def __init__(self, api_url: str = API_URL, options: Options = Options()):
        if not re.match(r"https?://", api_url):
            raise DownloadError(f"--api-url must be an http(s) URL, not {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self.options = options
        self.policy = RetryPolicy(options.retries, options.backoff, options.max_backoff)
        self.session = _session()

    def _get_json(self, path: str, params: dict[str, int]) -> list:
        url = f"{self.api_url}{path}"

        def attempt() -> list:
            response = self.session.get(url, params=params, timeout=self.options.timeout)
            try:
                _check_status(response)
            except DownloadError as err:
                raise DownloadError(f"GET {url}: {err}") from None
            try:
                payload = response.json()
            except ValueError:
                raise _Retryable("the answer is not valid JSON") from None
            if not isinstance(payload, list):
                raise DownloadError(f"GET {url}: expected a JSON list, got {type(payload).__name__}")
            return payload

        return self.policy.run(attempt, f"GET {url} page {params['page']}", on_retry=self._note)

    def _note(self, message: str) -> None:
        if self.options.progress != "off":
            print(message, file=sys.stderr)

    def _paged(self, path: str) -> Iterator[dict]:
        """Every item of a paged listing: ask page after page until one comes back short."""
        page, size = 1, self.options.page_size
        while True:
            items = self._get_json(path, {"page": page, "page_size": size})
            yield from items
            if len(items) < size:
                return
            page += 1

    def article_files(self, article_id: int, subdir: str = "") -> list[RemoteFile]:
        """The downloadable files of one article (link-only entries point elsewhere and are left out)."""
        files = []
        for item in self._paged(f"/articles/{article_id}/files"):
            if item.get("is_link_only"):
                continue
            name = Path(item["name"]).name  # never let a listed name climb out of DEST
            files.append(RemoteFile(article_id, int(item["id"]), name, int(item["size"]),
                                    item.get("computed_md5") or item.get("supplied_md5") or "",
                                    item["download_url"], f"{subdir}/{name}" if subdir else name))
        return files

    def collection_articles(self, collection_id: int) -> list[dict]:
        return list(self._paged(f"/collections/{collection_id}/articles"))

    def files_for(self, target: str | int) -> list[RemoteFile]:
        """Files of an article, or of every article of the collection (each under its own folder,
        named like the CLI names them, e.g. ``rtt-train/``)."""
        kind, ident = resolve_target(target)
        if kind == "article":
            return self.article_files(ident)
        names = {v: k for k, v in ARTICLES.items()}
        return [f for article in self.collection_articles(ident)
                for f in self.article_files(article["id"], names.get(article["id"], str(article["id"])))]


def list_files(target: str | int, api_url: str = API_URL, include: Iterable[str] = (),
               options: Options = Options()) -> list[RemoteFile]:
    """The files of an article (or ``all``) whose names match any ``include`` glob (all if none)."""
    patterns = [p for p in include if p]
    files = PortalClient(api_url, options).files_for(target)
    return [f for f in files if not patterns or any(fnmatch.fnmatchcase(f.name, p) for p in patterns)]


# --- the destination: lock, manifest, parts -----------------------------------------------------
@contextmanager
def dest_lock(dest: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``DEST/.download.lock`` (fcntl) for one run; another holder makes this fail or wait."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            if not wait:
                raise DownloadError(f"another download is using {dest} (lock {dest / LOCK_NAME} held "
                                    f"by pid {holder}); let it finish, or pass --wait") from None
            print(f"waiting for the download of pid {holder} to release {dest}", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(dest: str | Path) -> dict[str, dict]:
    """The manifest of DEST: path -> {article, file_id, size, md5, verified, ...}; {} if none."""
    path = Path(dest) / MANIFEST_NAME
    try:
        files = json.loads(path.read_text()).get("files", {})
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError) as err:
        print(f"warning: ignoring unreadable manifest {path} ({err}); files will be checked again",
              file=sys.stderr)
        return {}
    return files if isinstance(files, dict) else {}


class Manifest:
    """DEST's record of files, updated by the workers and rewritten atomically (temp + os.replace)."""

    def __init__(self, dest: Path):
        self.path = dest / MANIFEST_NAME
        self.entries = read_manifest(dest)
        self._lock = threading.Lock()

    def is_verified(self, file: RemoteFile, final: Path) -> bool:
        """Verified before with this size and md5, and still there with that size: skip it, unhashed."""
        entry = self.entries.get(file.path, {})
        return (entry.get("verified") is True and entry.get("size") == file.size
                and entry.get("md5") == file.md5 and final.is_file() and final.stat().st_size == file.size)

    def record(self, file: RemoteFile, verified: bool, error: str | None = None,
               save: bool = True) -> None:
        entry = {"article": file.article_id, "file_id": file.id, "size": file.size, "md5": file.md5,
                 "verified": verified}
        if verified:
            entry["verified_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if error:
            entry["error"] = error
        with self._lock:
            self.entries[file.path] = entry
            if save:
                self._save()

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        write_text(self.path, json.dumps({"format": 1, "files": dict(sorted(self.entries.items()))},
                                         indent=1))


def file_md5(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Segment:
    """Bytes ``[start, end)`` of a file, streamed to ``path``; its size there is the progress made."""

    start: int
    end: int
    path: Path

    @property
    def length(self) -> int:
        return self.end - self.start

    def present(self) -> int:
        try:
            return min(self.path.stat().st_size, self.length)
        except FileNotFoundError:
            return 0


def plan_segments(file: RemoteFile, dest: Path, segment_size: int) -> list[Segment]:
    """``NAME.part`` for the whole file, or for its first ``segment_size`` bytes followed by
    ``NAME.part.<offset>`` for each further range when the file is larger (0: never split)."""
    part = dest / f"{file.path}.part"
    if not segment_size or file.size <= segment_size:
        return [Segment(0, file.size, part)]
    starts = range(0, file.size, segment_size)
    return [Segment(s, min(file.size, s + segment_size), part.with_name(f"{part.name}.{s}") if s else part)
            for s in starts]


def _part_files(dest: Path, file: RemoteFile) -> list[Path]:
    """``NAME.part`` and any ``NAME.part.<offset>`` of a file, existing or not."""
    final = dest / file.path
    return [final.with_name(f"{final.name}.part"),
            *final.parent.glob(f"{glob.escape(final.name)}.part.*")]


# --- progress -----------------------------------------------------------------------------------
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
            tqdm.write(f"FAILED {error}")

    def note(self, message: str) -> None:
        tqdm.write(message)

    def close(self) -> None:
        for bar in list(self.bars.values()):
            bar.close()
        self.overall.close()


class LogProgress(Progress):
    """Plain lines for batch logs (SLURM): every file's end, retries, and a status every ``every`` s."""

    def __init__(self, files: int, total: int, present: int, every: float = 30.0,
                 stream: IO[str] | None = None):
        super().__init__(files, total, present)
        self.every, self.stream = every, stream or sys.stdout
        self.last_time, self.last_fetched = self.began, 0

    def _print(self, line: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        print(f"[{stamp}] {line}", file=self.stream, flush=True)

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
        self._print(f"FAILED {error}" if error else f"verified {path}")

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


# --- the run ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one file: ``present`` (verified before), ``downloaded``, ``failed``, ``pending``
    (dry run, or an interrupted run), with the error and the bytes already on disk before the run."""

    file: RemoteFile
    state: State
    present_bytes: int = 0
    error: str | None = None


@dataclass
class Report:
    """The outcome of a run, per file, with the bytes fetched and the time it took."""

    dest: Path
    outcomes: list[Outcome]
    fetched_bytes: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    dry_run: bool = False

    def count(self, state: State) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.state in {"present", "downloaded"} for o in self.outcomes)

    def table(self) -> str:
        """One line per file: state, size, bytes already there, path."""
        lines = [f"{'state':<10} {'size':>10} {'on disk':>10}  path"]
        for o in self.outcomes:
            lines.append(f"{o.state:<10} {format_bytes(o.file.size):>10} "
                         f"{format_bytes(o.present_bytes):>10}  {o.file.path}")
        return "\n".join(lines)

    def summary(self) -> str:
        total = sum(o.file.size for o in self.outcomes)
        if self.dry_run:
            todo = [o for o in self.outcomes if o.state != "present"]
            left = sum(o.file.size - o.present_bytes for o in todo)
            return (f"{len(self.outcomes)} files, {format_bytes(total)} in all: {len(todo)} to fetch "
                    f"({format_bytes(left)} still to download) into {self.dest}")
        rate = self.fetched_bytes / self.seconds if self.seconds else 0.0
        lines = [f"{len(self.outcomes)} files ({format_bytes(total)}) in {self.dest}: "
                 f"{self.count('downloaded')} downloaded, {self.count('present')} already verified, "
                 f"{self.count('failed')} failed, {self.count('pending')} not done; fetched "
                 f"{format_bytes(self.fetched_bytes)} in {format_seconds(self.seconds)} "
                 f"({format_bytes(rate)}/s)"]
        lines += [f"FAILED {o.error}" for o in self.failed]
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        elif self.failed:
            lines.append("run the same command again to retry the failed files (verified ones are kept)")
        return "\n".join(lines)


@dataclass
class _Job:
    """A file being fetched: its segments, how many are still running, and its first error."""

    file: RemoteFile
    segments: list[Segment]
    outcome: Outcome
    remaining: int = 0
    started: bool = False
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Downloader:
    """Fetches files into DEST with ``workers`` connections, each taking the next segment in turn."""

    def __init__(self, dest: Path, manifest: Manifest, options: Options):
        self.dest, self.manifest, self.options = dest, manifest, options
        self.policy = RetryPolicy(options.retries, options.backoff, options.max_backoff)
        self.stop = threading.Event()
        self.progress = Progress(0, 0, 0)
        self._queue: queue.SimpleQueue[tuple[_Job, Segment]] = queue.SimpleQueue()
        self._local = threading.local()

    # planning
    def inspect(self, file: RemoteFile) -> Outcome:
        """What DEST holds of a file, changing nothing: ``present`` when the manifest has it verified,
        or when a file under its final name that the manifest does not know has the right md5;
        otherwise ``pending`` with the bytes of its part files."""
        final = self.dest / file.path
        if self.manifest.is_verified(file, final) or (
                final.is_file() and final.stat().st_size == file.size
                and (not file.md5 or file_md5(final) == file.md5)):
            return Outcome(file, "present", file.size)
        present = sum(s.present() for s in plan_segments(file, self.dest, self.options.segment_size))
        return Outcome(file, "pending", present)

    def _job(self, outcome: Outcome) -> _Job:
        """Segments of a file to fetch; part files of another split are dropped."""
        file = outcome.file
        segments = plan_segments(file, self.dest, self.options.segment_size)
        for stale in set(_part_files(self.dest, file)) - {s.path for s in segments}:
            stale.unlink(missing_ok=True)
        (self.dest / file.path).parent.mkdir(parents=True, exist_ok=True)
        return _Job(file, segments, outcome, remaining=len(segments))

    def run(self, files: list[RemoteFile]) -> Report:
        began = time.monotonic()
        outcomes = [self.inspect(f) for f in files]
        for o in outcomes:
            final = self.dest / o.file.path
            if o.state == "present":
                if not self.manifest.is_verified(o.file, final):
                    self.manifest.record(o.file, verified=True, save=False)
                for leftover in _part_files(self.dest, o.file):
                    leftover.unlink(missing_ok=True)
                continue
            final.unlink(missing_ok=True)  # another file under this name failed the check above
            self.manifest.record(o.file, verified=False, save=False)
        self.manifest.save()
        jobs = [self._job(o) for o in outcomes if o.state == "pending"]
        total = sum(j.file.size for j in jobs)
        present = sum(j.outcome.present_bytes for j in jobs)
        free = shutil.disk_usage(self.dest).free
        if total - present > free:
            raise DownloadError(f"not enough space in {self.dest}: {format_bytes(total - present)} to "
                                f"fetch, {format_bytes(free)} free")
        self.progress = make_progress(self.options, len(jobs), total, present) if jobs else Progress(0, 0, 0)
        for job in jobs:
            for segment in job.segments:
                self._queue.put((job, segment))
        count = min(self.options.workers, sum(len(j.segments) for j in jobs))
        workers = [threading.Thread(target=self._work, name=f"download-{i}", daemon=True)
                   for i in range(count)]
        interrupted = False
        try:
            for w in workers:
                w.start()
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
            for w in workers:
                w.join(self.options.timeout + 1)
        finally:
            self.progress.close()
            self.manifest.save()
        return Report(self.dest, outcomes, self.progress.fetched, time.monotonic() - began, interrupted)

    # the workers
    def _work(self) -> None:
        self._local.session = _session()
        try:
            while not self.stop.is_set():
                try:
                    job, segment = self._queue.get_nowait()
                except queue.Empty:
                    return
                if job.error is not None:
                    continue
                self._start(job)
                try:
                    self._fetch(job, segment)
                except _Interrupted:
                    return
                except DownloadError as err:
                    self._fail(job, str(err))
                    continue
                except OSError as err:  # the disk, not the network: those are retried inside
                    self._fail(job, f"{job.file.path}: cannot write {segment.path}: {err}")
                    continue
                with job.lock:
                    job.remaining -= 1
                    last = job.remaining == 0 and job.error is None
                if last:
                    self._finish(job)
        finally:
            self._local.session.close()

    def _start(self, job: _Job) -> None:
        with job.lock:
            first, job.started = not job.started, True
        if first:
            self.progress.start_file(job.file.path, job.file.size, job.outcome.present_bytes)

    def _fail(self, job: _Job, error: str) -> None:
        with job.lock:
            if job.error is not None:
                return
            job.error = error
        job.outcome.state, job.outcome.error = "failed", error
        self.manifest.record(job.file, verified=False, error=error)
        self.progress.end_file(job.file.path, error)

    def _fetch(self, job: _Job, segment: Segment) -> None:
        """One segment, resumed from what is on disk, retried by the policy."""
        self.policy.run(lambda: self._stream(job, segment), job.file.path, stop=self.stop,
                        progress=segment.present, on_retry=self.progress.note)

    def _stream(self, job: _Job, segment: Segment) -> None:
        """One request for the rest of ``segment``, appended to its part file as it arrives."""
        file = job.file
        with open(segment.path, "ab") as out:
            done = out.seek(0, os.SEEK_END)
            if done > segment.length:  # the tail of a first segment is from an interrupted join
                done = out.truncate(segment.length)
            if done == segment.length:
                return
            first, asked = segment.start + done, segment.length - done
            headers = {"Accept-Encoding": "identity"}
            if first > 0 or segment.end < file.size:
                headers["Range"] = f"bytes={first}-{segment.end - 1}"
            with self._local.session.get(file.url, headers=headers, stream=True,
                                         timeout=self.options.timeout) as response:
                if response.status_code == 416:
                    out.truncate(0)
                    self.progress.rewind(file.path, done)
                    raise _Retryable("HTTP 416: the partial data does not fit the file on the server; "
                                     "starting it again")
                try:
                    _check_status(response)
                except DownloadError as err:
                    raise DownloadError(f"{file.path}: {err}") from None
                skip = 0
                if response.status_code == 206:
                    served = _content_range_start(response.headers.get("Content-Range", ""))
                    if served != first:
                        raise _Retryable(f"asked for bytes from {first}, got a range from {served}")
                elif "Range" in headers:  # 200: the server ignored Range; take it from the top
                    out.truncate(0)
                    self.progress.rewind(file.path, done)
                    done, skip, asked = 0, segment.start, segment.length
                got = 0
                for chunk in response.iter_content(self.options.chunk_size):
                    if self.stop.is_set():
                        raise _Interrupted()
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    chunk = chunk[: asked - got]
                    out.write(chunk)
                    out.flush()
                    got += len(chunk)
                    self.progress.advance(file.path, len(chunk))
                    if got == asked:
                        return
        raise _Retryable(f"the connection closed after {format_bytes(got)} of the "
                         f"{format_bytes(asked)} asked for")

    def _finish(self, job: _Job) -> None:
        """Join the segments, check size and md5, rename to the final name and record it."""
        file, final = job.file, self.dest / job.file.path
        part = job.segments[0].path
        try:
            if len(job.segments) > 1:
                with open(part, "ab") as out:
                    out.truncate(job.segments[0].length)
                    for segment in job.segments[1:]:
                        with open(segment.path, "rb") as piece:
                            shutil.copyfileobj(piece, out, 1 << 20)
            size = part.stat().st_size
            digest = file_md5(part)
            if size != file.size or (file.md5 and digest != file.md5):
                for leftover in _part_files(self.dest, file):
                    leftover.unlink(missing_ok=True)
                what = (f"size {size} bytes, expected {file.size}" if size != file.size
                        else f"md5 {digest}, expected {file.md5}")
                self._fail(job, f"{file.path}: verification failed ({what}); the data was removed, "
                                "run again to fetch it anew")
                return
            with open(part, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(part, final)
        except OSError as err:
            self._fail(job, f"{file.path}: cannot finish {part}: {err}")
            return
        for segment in job.segments[1:]:
            segment.path.unlink(missing_ok=True)
        job.outcome.state = "downloaded"
        self.manifest.record(file, verified=True)
        self.progress.end_file(file.path, None)


def _content_range_start(header: str) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    return int(match.group(1)) if match else None


def download(target: str | int, dest: str | Path, *, api_url: str = API_URL,
             include: Iterable[str] = (), dry_run: bool = False,
             options: Options = Options()) -> Report:
    """Fetch an article's files (or the whole collection, ``"all"``) into ``dest``, verified.

    ``include``: globs on file names (any may match; all files when empty). ``dry_run``: list what would
    be fetched and what is there already, download nothing. Raises DownloadError when the listing fails,
    DEST is locked by another run or lacks the space; per-file failures are in the report.
    """
    dest = Path(dest)
    files = list_files(target, api_url, include, options)
    if dry_run:
        downloader = Downloader(dest, Manifest(dest), options)
        return Report(dest, [downloader.inspect(f) for f in files], dry_run=True)
    with dest_lock(dest, options.wait):
        return Downloader(dest, Manifest(dest), options).run(files)


# --- CLI ----------------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``"1048576"``, ``"64k"``, ``"256M"``, ``"2G"`` -> bytes (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64k, 256M, 2G)")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024 ** power)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Download AI4Arctic files from the DTU Data portal (figshare): parallel, resumable, "
                    "md5-verified. Rerun the same command to resume or to retry failed files.")
    parser.add_argument("--article", required=True,
                        help=f"{', '.join(ARTICLES)}, {COLLECTION} (the whole collection, one folder "
                             "per article) or a numeric article id")
    parser.add_argument("--dest", required=True, type=Path, help="destination directory")
    parser.add_argument("--workers", type=int, default=defaults.workers, metavar="N",
                        help="parallel connections (default %(default)s)")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="only files whose name matches (repeatable), e.g. '2019*_prep.nc'")
    parser.add_argument("--api-url", default=API_URL, help="figshare API base (default %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the files, their sizes and what is already there; fetch nothing")
    parser.add_argument("--quiet", action="store_true",
                        help="plain log lines instead of progress bars (the default without a terminal)")
    parser.add_argument("--log-every", type=float, default=defaults.log_every, metavar="S",
                        help="seconds between status lines in quiet mode (default %(default)s)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for another download into DEST to finish instead of stopping")
    parser.add_argument("--timeout", type=float, default=defaults.timeout, metavar="S",
                        help="seconds without data before a connection is dropped (default %(default)s)")
    parser.add_argument("--retries", type=int, default=defaults.retries, metavar="N",
                        help="retries of a failing file before it is given up; counted again from zero "
                             "whenever it makes progress (default %(default)s)")
    parser.add_argument("--backoff", type=float, default=defaults.backoff, metavar="S",
                        help="first retry delay, doubled each time (default %(default)s)")
    parser.add_argument("--segment-size", type=parse_size, default=defaults.segment_size, metavar="SIZE",
                        help="files larger than this are fetched as parallel ranges of this size "
                             "(default 256M; 0: never)")
    parser.add_argument("--chunk-size", type=parse_size, default=defaults.chunk_size, metavar="SIZE",
                        help="bytes read and written at a time (default 1M)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Exit status: 0 all verified, 1 some files failed, 2 nothing could be done, 130 interrupted."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    quiet = args.quiet or not sys.stderr.isatty()
    try:
        options = Options(workers=args.workers, timeout=args.timeout, retries=args.retries,
                          backoff=args.backoff, chunk_size=args.chunk_size, segment_size=args.segment_size,
                          progress="log" if quiet else "bars", log_every=args.log_every, wait=args.wait)
    except ValueError as err:
        parser.error(str(err))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SLURM's time limit: stop, resume later
    try:
        report = download(args.article, args.dest, api_url=args.api_url, include=args.include,
                          dry_run=args.dry_run, options=options)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.dry_run:
        print(report.table())
    print(report.summary())
    if report.interrupted:
        return 130
    return 0 if report.ok or args.dry_run else 1
