"""Fetching files into DEST: the manifest, the lock, segments (byte ranges) fetched by worker threads,
md5 verification, and the report of a run."""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...atomic import REMOVED, move_aside, write_text
from .client import API_URL, Refused, RemoteFile, _check_status, _session, resolve_target, select_files, selected
from .errors import DownloadError
from .names import LOCK_NAME, MANIFEST_NAME, name_problem
from .options import Options
from .progress import Progress, format_bytes, format_seconds, make_progress
from .retry import RetryPolicy, _Interrupted, _Retryable

log = logging.getLogger(__name__)

State = Literal["present", "downloaded", "failed", "pending"]


# the end of a failure where the same bytes failed the listed md5 twice: no retry can mend it
LISTED_MD5_WRONG = ("and the same bytes arrived in an earlier run: the portal's listed md5 may be wrong (ask the "
                    "data portal; fetching again will not help)")


# --- the destination: lock, manifest, parts -----------------------------------------------------
@contextmanager
def dest_lock(dest: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``DEST/.download.lock`` (fcntl) for one run; another holder makes this fail or wait."""
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / LOCK_NAME).is_symlink():  # never written through: it would empty the file it points to
        raise DownloadError(f"{dest / LOCK_NAME}: a symbolic link where the download's lock goes; remove it")
    with open(dest / LOCK_NAME, "a+", opener=_no_follow) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            if not wait:
                raise DownloadError(f"another download is using {dest} (lock {dest / LOCK_NAME} held "
                                    f"by pid {holder}); let it finish, or pass --wait") from None
            log.info("waiting for the download of pid %s to release %s", holder, dest)
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
    """The manifest of DEST: path -> {article, file_id, size, md5, verified, ...}; {} if none. An
    unreadable manifest, or an entry of it that is not a mapping, is ignored with a warning naming it
    (its files are checked again)."""
    path = Path(dest) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        doc, problem = None, str(err)
    else:
        problem = "no 'files' mapping"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        log.warning("warning: ignoring unreadable manifest %s (%s); files will be checked again", path, problem)
        return {}
    for key, entry in files.items():
        if not isinstance(entry, dict):
            log.warning("warning: ignoring entry %r of the manifest %s (not a mapping but a %s); that file "
                        "will be checked again", key, path, type(entry).__name__)
    return {key: entry for key, entry in files.items() if isinstance(entry, dict)}


class Manifest:
    """DEST's record of files, updated by the workers and rewritten atomically (temp + os.replace)."""

    def __init__(self, dest: Path):
        self.path = dest / MANIFEST_NAME
        self.entries = read_manifest(dest)
        self._lock = threading.Lock()

    def is_verified(self, file: RemoteFile, final: Path) -> bool:
        """Verified before with this size and md5, and still there with that size and modification
        time: skip it, unhashed. A file changed in place since (same size, new time) is hashed again."""
        entry = self.entries.get(file.path, {})
        if not (entry.get("verified") is True and entry.get("size") == file.size and entry.get("md5") == file.md5
                and final.is_file()):
            return False
        st = final.stat()
        return st.st_size == file.size and entry.get("mtime_ns") == str(st.st_mtime_ns)

    def record(self, file: RemoteFile, verified: bool, error: str | None = None,
               save: bool = True, final: Path | None = None, rejected_md5: str | None = None) -> None:
        """Record ``file``'s state; a verified one with the modification time of ``final`` (its copy in DEST).
        ``rejected_md5``: the md5 of whole bytes that failed the listed md5 (kept while the file stays
        unverified under the same listed md5, so that a second download of the same bytes is told apart)."""
        entry = {"article": file.article_id, "file_id": file.id, "size": file.size, "md5": file.md5,
                 "verified": verified}
        before = self.entries.get(file.path) or {}
        if not verified and (rejected_md5 := rejected_md5 or (
                before.get("rejected_md5") if before.get("md5") == file.md5 else None)):
            entry["rejected_md5"] = rejected_md5
        if verified:
            entry["verified_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            if final is not None:
                entry["mtime_ns"] = str(final.stat().st_mtime_ns)
        if error:
            entry["error"] = error
        with self._lock:
            self.entries[file.path] = entry
            if save:
                self._save()

    def drop(self, path: str) -> None:
        """Forget the file ``path`` (saved with the next record or :meth:`save`)."""
        with self._lock:
            self.entries.pop(path, None)

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
            st = self.path.lstat()
        except FileNotFoundError:
            return 0
        return min(st.st_size, self.length) if stat.S_ISREG(st.st_mode) else 0  # a link is started anew


def plan_segments(file: RemoteFile, dest: Path, segment_size: int) -> list[Segment]:
    """``NAME.part`` for the whole file, or for its first ``segment_size`` bytes followed by
    ``NAME.part.<offset>`` for each further range when the file is larger (0: never split)."""
    part = dest / f"{file.path}.part"
    if not segment_size or file.size <= segment_size:
        return [Segment(0, file.size, part)]
    starts = range(0, file.size, segment_size)
    return [Segment(s, min(file.size, s + segment_size), part.with_name(f"{part.name}.{s}") if s else part)
            for s in starts]


def _no_follow(path: str, flags: int) -> int:
    """An ``open`` opener that refuses a symbolic link (ELOOP): part files are written only in DEST."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def _not_plain(path: Path) -> bool:
    """Whether ``path`` is there but no plain file (a symbolic link, a folder, a pipe, ...)."""
    try:
        return not stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _linked_folder(dest: Path, path: str) -> Path | None:
    """The first folder between ``dest`` and a file's final name ``path`` (under DEST) that is a
    symbolic link (the opener's ``O_NOFOLLOW`` guards only a path's last part: writes through it land
    outside DEST), else None."""
    folder = dest
    for part in Path(path).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return folder
    return None


def _part_files(dest: Path, path: str) -> list[Path]:
    """``NAME.part`` and any ``NAME.part.<offset>`` of the file ``path`` (under DEST), existing or not."""
    final = dest / path
    part = final.with_name(f"{final.name}.part")
    return [part, *(p for p in final.parent.glob(f"{glob.escape(part.name)}.*")
                    if re.fullmatch(r"[0-9]+", p.name[len(part.name) + 1:]))]


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
    refused: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # files no longer listed, each a line: what became of it

    def count(self, state: State) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def ok(self) -> bool:
        return (not self.interrupted and not self.refused and not self.left_in_place
                and all(o.state in {"present", "downloaded"} for o in self.outcomes))

    @property
    def left_in_place(self) -> list[str]:
        """Of :attr:`unlisted`, the files that could not be set aside (a link on the way, not a plain file):
        still under their names in DEST, where a later stage may read them."""
        return [line for line in self.unlisted if ": left where it is" in line]

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
            return "\n".join([f"{len(self.outcomes)} files, {format_bytes(total)} in all: {len(todo)} to "
                              f"fetch ({format_bytes(left)} still to download) into {self.dest}",
                              *(f"FAILED {o.error}" for o in self.failed), *self._refused_lines(),
                              *self._unlisted_lines()])
        rate = self.fetched_bytes / self.seconds if self.seconds else 0.0
        lines = [f"{len(self.outcomes)} files ({format_bytes(total)}) in {self.dest}: "
                 f"{self.count('downloaded')} downloaded, {self.count('present')} already verified, "
                 f"{self.count('failed')} failed, {self.count('pending')} not done; fetched "
                 f"{format_bytes(self.fetched_bytes)} in {format_seconds(self.seconds)} "
                 f"({format_bytes(rate)}/s)"]
        lines += [f"FAILED {o.error}" for o in self.failed]
        lines += self._refused_lines()
        lines += self._unlisted_lines()
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        elif retry := [o for o in self.failed if not (o.error or "").endswith(LISTED_MD5_WRONG)]:
            which = "the" if len(retry) == len(self.failed) else f"the {len(retry)} other"
            lines.append(f"run the same command again to retry {which} failed files (verified ones are kept)")
        return "\n".join(lines)

    def _refused_lines(self) -> list[str]:
        if not self.refused:
            return []
        return [f"listing entries left out, never fetched: {len(self.refused)}",
                *(f"REFUSED {why}" for why in self.refused)]

    def _unlisted_lines(self) -> list[str]:
        if not self.unlisted:
            return []
        done = "would be" if self.dry_run else "were"
        left = len(self.left_in_place)
        return [f"files of {self.dest} the listing no longer has (withdrawn or renamed on the portal): "
                f"{len(self.unlisted)}; they {done} dropped from {MANIFEST_NAME}, {len(self.unlisted) - left} set "
                f"aside" + (f", {left} left where they are (named below)" if left else ""),
                *(f"UNLISTED {line}" for line in self.unlisted)]


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
        ``failed`` when a folder on its way in DEST is a symbolic link (:func:`_linked_folder`: never
        read, written or cleared through); otherwise ``pending`` with the bytes of its part files."""
        final = self.dest / file.path
        if (link := _linked_folder(self.dest, file.path)) is not None:
            return Outcome(file, "failed", error=f"{file.path}: {link} is a symbolic link: files are written only "
                                                 f"inside {self.dest}; make it a folder there")
        if self.manifest.is_verified(file, final) or (
                final.is_file() and final.stat().st_size == file.size
                and file_md5(final) == file.md5):
            return Outcome(file, "present", file.size)
        present = sum(s.present() for s in plan_segments(file, self.dest, self.options.segment_size))
        return Outcome(file, "pending", present)

    def _prepare(self, file: RemoteFile) -> Outcome:
        """:meth:`inspect`, and DEST made ready: a present file recorded and its part files dropped; for
        one to fetch, its final name cleared (another file there failed the check), part files of another
        split dropped and those that are no plain file (a symbolic link: never written through, the
        range started anew), its folder made. ``failed`` (naming the file) when DEST cannot be used for it."""
        final = self.dest / file.path
        try:
            outcome = self.inspect(file)
            if outcome.state == "failed":
                return outcome
            if outcome.state == "present":
                if not self.manifest.is_verified(file, final):
                    self.manifest.record(file, verified=True, save=False, final=final)
                for leftover in _part_files(self.dest, file.path):
                    leftover.unlink(missing_ok=True)
                return outcome
            final.unlink(missing_ok=True)
            segments = {s.path for s in plan_segments(file, self.dest, self.options.segment_size)}
            for stale in _part_files(self.dest, file.path):
                if stale not in segments or _not_plain(stale):
                    stale.unlink(missing_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            outcome = Outcome(file, "failed", error=f"{file.path}: {err}")
        self.manifest.record(file, verified=False, error=outcome.error, save=False)
        return outcome

    def set_aside(self, paths: list[str], dry_run: bool = False) -> list[str]:
        """Files of DEST the listing no longer has (:func:`unlisted`): each dropped from the manifest,
        its part files deleted and the file moved to ``.removed/`` beside it
        (:func:`~seaice_lib.atomic.move_aside`), so that no later stage reads it as part of the
        release; with ``dry_run`` nothing changes. A line for each: the file, what became of it."""
        lines = []
        for path in paths:
            final = self.dest / path
            if (link := _linked_folder(self.dest, path)) is not None:
                lines.append(f"{path}: left where it is ({link} is a symbolic link: files are moved only inside "
                             f"{self.dest})")
            elif _not_plain(final):
                lines.append(f"{path}: left where it is (not a plain file)")
            elif (final.parent / REMOVED).is_symlink():
                lines.append(f"{path}: left where it is ({final.parent / REMOVED} is a symbolic link: files are "
                             f"moved only inside {self.dest})")
            elif not final.exists():
                lines.append(f"{path}: not in {self.dest}")
            elif dry_run:
                lines.append(f"{path}: to be moved to {final.parent / REMOVED}/")
            else:
                lines.append(f"{path}: moved to {move_aside(final)}")
            if not dry_run:
                if link is None:
                    for leftover in _part_files(self.dest, path):
                        leftover.unlink(missing_ok=True)
                self.manifest.drop(path)
        if not dry_run:
            self.manifest.save()
        return lines

    def _job(self, outcome: Outcome) -> _Job:
        segments = plan_segments(outcome.file, self.dest, self.options.segment_size)
        return _Job(outcome.file, segments, outcome, remaining=len(segments))

    def run(self, files: list[RemoteFile]) -> Report:
        began = time.monotonic()
        outcomes = [self._prepare(f) for f in files]
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
            self.stop.set()
            for w in workers:
                w.join(self.options.timeout + 1)
            interrupted = any(o.state == "pending" for o in outcomes)  # a stop after the last file left nothing to resume
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

    def _fail(self, job: _Job, error: str, rejected_md5: str | None = None) -> None:
        with job.lock:
            if job.error is not None:
                return
            job.error = error
        job.outcome.state, job.outcome.error = "failed", error
        self.manifest.record(job.file, verified=False, error=error, rejected_md5=rejected_md5)
        self.progress.end_file(job.file.path, error)

    def _fetch(self, job: _Job, segment: Segment) -> None:
        """One segment, resumed from what is on disk, retried by the policy."""
        self.policy.run(lambda: self._stream(job, segment), job.file.path, stop=self.stop,
                        progress=segment.present, on_retry=self.progress.note)

    def _stream(self, job: _Job, segment: Segment) -> None:
        """One request for the rest of ``segment``, appended to its part file as it arrives."""
        file = job.file
        with open(segment.path, "ab", opener=_no_follow) as out:
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
                with open(part, "ab", opener=_no_follow) as out:
                    out.truncate(job.segments[0].length)
                    for segment in job.segments[1:]:
                        with open(segment.path, "rb", opener=_no_follow) as piece:
                            shutil.copyfileobj(piece, out, 1 << 20)
            size = part.stat().st_size
            digest = file_md5(part)
            if size != file.size or digest != file.md5:
                for leftover in _part_files(self.dest, file.path):
                    leftover.unlink(missing_ok=True)
                what = (f"size {size} bytes, expected {file.size}" if size != file.size
                        else f"md5 {digest}, expected {file.md5}")
                again = size == file.size and (self.manifest.entries.get(file.path) or {}).get("rejected_md5") == digest
                self._fail(job, f"{file.path}: verification failed ({what}); the data was removed, "
                                + (LISTED_MD5_WRONG if again else "run again to fetch it anew"),
                    rejected_md5=digest if size == file.size else None)
                return
            with open(part, "rb+", opener=_no_follow) as handle:
                os.fsync(handle.fileno())
            os.replace(part, final)
        except OSError as err:
            self._fail(job, f"{file.path}: cannot finish {part}: {err}")
            return
        for segment in job.segments[1:]:
            segment.path.unlink(missing_ok=True)
        job.outcome.state = "downloaded"
        self.manifest.record(file, verified=True, final=final)
        self.progress.end_file(file.path, None)


def _content_range_start(header: str) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    return int(match.group(1)) if match else None


def unlisted(manifest: Manifest, target: str | int, files: list[RemoteFile], refused: list[Refused],
             include: Iterable[str] = ()) -> list[str]:
    """The files of ``manifest`` that the listing of ``target`` no longer has (withdrawn, or renamed,
    on the portal): those of that article (with ``all``, those under an article's folder) whose
    names ``include`` selects that the listing neither offers (``files``) nor leaves out by name
    (``refused``). None when the listing left out an entry without a name: it may be any file. A
    path of the manifest that is no file name (or article folder and file name) under DEST is never one."""
    if any(name is None for name, _ in refused):
        return []
    kind, ident = resolve_target(target)
    listed = {f.path for f in files}
    named = {name for name, _ in refused}

    def of_target(path: str, entry: dict) -> bool:
        parts = path.split("/")  # the collection puts each article's files in a folder of its own
        if any(name_problem(part) for part in parts):
            return False
        return len(parts) == 2 if kind == "collection" else len(parts) == 1 and entry.get("article") == ident

    return sorted(path for path, entry in manifest.entries.items()
                  if of_target(path, entry) and path not in listed and Path(path).name not in named
                  and selected(Path(path).name, include))


def download(target: str | int, dest: str | Path, *, api_url: str = API_URL,
             include: Iterable[str] = (), dry_run: bool = False,
             options: Options = Options()) -> Report:
    """Fetch an article's files (or the whole collection, ``"all"``) into ``dest``, verified.

    ``include``: globs on file names (any may match; all files when empty). ``dry_run``: list what would
    be fetched and what is there already, download nothing. Raises DownloadError when the listing fails,
    DEST is locked by another run or lacks the space; per-file failures are in the report, and so are
    the entries of the listing left out (``refused``: not a file record, a name listed twice or not
    safe under DEST, see :mod:`.names`). Files of DEST the listing no longer has (:func:`unlisted`)
    are set aside first (:meth:`Downloader.set_aside`), each named in ``unlisted``.
    """
    dest = Path(dest)
    files, refused = select_files(target, api_url, include, options)
    why = [line for _, line in refused]
    if dry_run:
        downloader = Downloader(dest, Manifest(dest), options)
        gone = downloader.set_aside(unlisted(downloader.manifest, target, files, refused, include), dry_run=True)
        return Report(dest, [downloader.inspect(f) for f in files], dry_run=True, refused=why, unlisted=gone)
    # ``all`` writes each article into a folder of DEST that a run of that article alone may hold (one
    # that is a link is never written through: its files fail, naming it)
    folders = sorted({dest / Path(f.path).parent for f in files if _linked_folder(dest, f.path) is None} - {dest})
    with ExitStack() as held:
        for folder in (dest, *folders):
            held.enter_context(dest_lock(folder, options.wait))
        downloader = Downloader(dest, Manifest(dest), options)
        gone = downloader.set_aside(unlisted(downloader.manifest, target, files, refused, include))
        report = downloader.run(files)
    report.refused, report.unlisted = why, gone
    return report
