"""A local stand-in for the DTU Data portal's figshare API, with fault injection.

The real portal cannot be reached from our machines, so the tests, the benchmark and the offline demo
of :mod:`seaice_lib.data.download` run against this server. It listens on 127.0.0.1 and speaks the parts
of the figshare API the downloader uses, in figshare's shape:

* ``GET /v2/articles/{id}/files?page=N&page_size=M``: a JSON array of file records (``id``, ``name``,
  ``size``, ``is_link_only``, ``download_url``, ``supplied_md5``, ``computed_md5``, ``mimetype``);
  ``page_size`` defaults to 10, more than 1000 is refused with 400.
* ``GET /v2/collections/{id}/articles?page=N&page_size=M``: the collection's articles, paged the same way.
* ``GET /ndownloader/files/{id}``: a 302 redirect to the file's storage address, as figshare does.
* ``GET /storage/files/{id}``: the bytes, honouring a single ``Range: bytes=a-b`` with 206.

Misbehaviour is asked for with :class:`Fault` objects queued per file name (or ``"api"`` for the listing
endpoints) and consumed one per request: an HTTP status (500/503 bursts, 429 with ``Retry-After``), a
connection reset or a truncated body part-way through, a stall longer than the client's timeout. A file
may be listed with a wrong md5, the server may ignore ``Range`` altogether, and ``rate`` limits the bytes
per second of each connection, as figshare's storage does. Every request is recorded in ``stats``.

CLI (a portal of generated files to try the downloader by hand):
``seaice portal [--port 8000] [--files 12] [--size 2M] [--rate 1M]``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .. import logs
from ..arguments import Parser
from ..data.download import ARTICLES, COLLECTION_ID, parse_size

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 10
# write the body in pieces this large (or smaller under a rate limit) so faults and limits are precise
PIECE = 16 * 1024


@dataclass
class PortalFile:
    """One file of an article; ``listed_md5`` is what the API claims when it should lie."""

    id: int
    name: str
    data: bytes
    listed_md5: str | None = None
    link_only: bool = False

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()

    def record(self, base_url: str) -> dict:
        """The file as figshare lists it."""
        return {"id": self.id, "name": self.name, "size": len(self.data),
                "is_link_only": self.link_only,
                "download_url": f"{base_url}/ndownloader/files/{self.id}",
                "supplied_md5": self.md5, "computed_md5": self.listed_md5 or self.md5,
                "mimetype": "application/x-netcdf"}


@dataclass(frozen=True)
class Fault:
    """One misbehaving answer.

    ``kind``: ``"status"`` answers ``status`` (with ``Retry-After: retry_after`` when given) instead of
    the content; ``"reset"`` sends the fraction ``at`` of the body then resets the connection;
    ``"truncate"`` sends the fraction ``at`` of the body under the full ``Content-Length`` then closes;
    ``"stall"`` waits ``seconds`` before the headers (``at == 0``) or after the fraction ``at`` of the body.
    """

    kind: str
    status: int = 503
    retry_after: str | None = None
    at: float = 0.5
    seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in {"status", "reset", "truncate", "stall"}:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(frozen=True)
class Request:
    """What the server saw: the target (file name or ``"api"``), when, the first byte asked for."""

    target: str
    time: float
    range_start: int | None
    status: int


@dataclass
class Stats:
    """Requests seen and body bytes served per target, and how many file bodies were being sent at
    once (``active`` now, ``max_active`` at most); thread-safe through ``lock``."""

    requests: list[Request] = field(default_factory=list)
    bytes_served: Counter = field(default_factory=Counter)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def total_bytes(self) -> int:
        with self.lock:
            return sum(self.bytes_served.values())

    def requests_for(self, target: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.target == target]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes_served.clear()
            self.max_active = self.active


class PortalServer:
    """A figshare-API-shaped server on 127.0.0.1 (port 0: any free port), run in a daemon thread.

    ``articles`` maps article id to its files; ``collections`` maps collection id to article ids;
    ``titles`` names articles. Use as a context manager, or ``start()`` and ``stop()``.
    """

    def __init__(self, articles: dict[int, list[PortalFile]],
                 collections: dict[int, list[int]] | None = None,
                 titles: dict[int, str] | None = None, *, rate: float | None = None,
                 honour_range: bool = True, port: int = 0):
        self.articles = articles
        self.collections = collections or {}
        self.titles = titles or {}
        self.rate = rate
        self.honour_range = honour_range
        self.stats = Stats()
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._faults_lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.portal = self  # type: ignore[attr-defined]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """The API base to give the downloader (``--api-url``)."""
        return f"{self.base_url}/v2"

    def start(self) -> PortalServer:
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="portal-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._flowing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> PortalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pause(self) -> None:
        """Hold every file body before its next piece (until ``resume``), so that a client can be
        stopped with nothing in flight."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def wait_flowing(self) -> None:
        self._flowing.wait()

    def add_faults(self, target: str, *faults: Fault) -> None:
        """Queue faults for a file name (or ``"api"``), consumed one per request in order."""
        with self._faults_lock:
            self._faults[target].extend(faults)

    def take_fault(self, target: str) -> Fault | None:
        with self._faults_lock:
            queue = self._faults.get(target)
            return queue.popleft() if queue else None

    def file(self, file_id: int) -> PortalFile | None:
        """The file with this id in any article (looked up each time: tests add files on the fly)."""
        return next((f for files in self.articles.values() for f in files if f.id == file_id), None)


class _Handler(BaseHTTPRequestHandler):
    """Routes the figshare endpoints; one instance per request."""

    protocol_version = "HTTP/1.1"
    server_version = "seaice-portal/1"
    routes = [
        (re.compile(r"/v2/articles/(\d+)/files"), "_list_files"),
        (re.compile(r"/v2/collections/(\d+)/articles"), "_list_articles"),
        (re.compile(r"/ndownloader/files/(\d+)"), "_redirect"),
        (re.compile(r"/storage/files/(\d+)"), "_serve_file"),
    ]

    @property
    def portal(self) -> PortalServer:
        return self.server.portal  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the notebook read ``stats`` instead."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        for pattern, method in self.routes:
            match = pattern.fullmatch(parts.path)
            if match:
                try:
                    getattr(self, method)(int(match.group(1)), parse_qs(parts.query))
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True  # the client went away; nothing to answer
                return
        self._send_json(404, {"message": f"no such endpoint {parts.path}"})

    # --- responses -------------------------------------------------------------------------------
    def _record(self, target: str, status: int, range_start: int | None = None) -> None:
        with self.portal.stats.lock:
            self.portal.stats.requests.append(Request(target, time.monotonic(), range_start, status))

    def _send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_fault_status(self, fault: Fault) -> None:
        body = json.dumps({"message": f"injected HTTP {fault.status}"}).encode()
        self.send_response(fault.status)
        if fault.retry_after is not None:
            self.send_header("Retry-After", fault.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _paged(self, items: list, query: dict[str, list[str]]) -> None:
        """Answer one page of ``items`` the figshare way, or the queued API fault."""
        fault = self.portal.take_fault("api")
        if fault is not None and fault.kind == "status":
            self._record("api", fault.status)
            self._send_fault_status(fault)
            return
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
        try:
            page = int(query.get("page", ["1"])[0])
            page_size = int(query.get("page_size", [str(DEFAULT_PAGE_SIZE)])[0])
        except ValueError:
            page, page_size = 0, 0
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            self._record("api", 400)
            self._send_json(400, {"message": f"page must be >= 1 and page_size 1..{MAX_PAGE_SIZE}"})
            return
        self._record("api", 200)
        self._send_json(200, items[(page - 1) * page_size: page * page_size])

    def _list_files(self, article_id: int, query: dict[str, list[str]]) -> None:
        files = self.portal.articles.get(article_id)
        if files is None:
            self._record("api", 404)
            self._send_json(404, {"message": "Entity not found: article"})
            return
        self._paged([f.record(self.portal.base_url) for f in files], query)

    def _list_articles(self, collection_id: int, query: dict[str, list[str]]) -> None:
        ids = self.portal.collections.get(collection_id)
        if ids is None:
            self._record("api", 404)
            self._send_json(404, {"message": "Entity not found: collection"})
            return
        self._paged([{"id": i, "title": self.portal.titles.get(i, f"article {i}"),
                      "url": f"{self.portal.url}/articles/{i}"} for i in ids], query)

    def _redirect(self, file_id: int, query: dict[str, list[str]]) -> None:
        self.send_response(302)
        self.send_header("Location", f"{self.portal.base_url}/storage/files/{file_id}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve_file(self, file_id: int, query: dict[str, list[str]]) -> None:
        file = self.portal.file(file_id)
        if file is None or file.link_only:
            self._send_json(404, {"message": "file not found"})
            return
        size = len(file.data)
        try:
            asked = _parse_range(self.headers.get("Range"), size) if self.portal.honour_range else None
        except ValueError:
            self._record(file.name, 416)
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = self.portal.take_fault(file.name)
        if fault is not None and fault.kind == "status":
            self._record(file.name, fault.status, asked[0] if asked else None)
            self._send_fault_status(fault)
            return
        start, end = asked or (0, size)
        self._record(file.name, 206 if asked else 200, start if asked else None)
        if fault is not None and fault.kind == "stall" and fault.at == 0:
            time.sleep(fault.seconds)
            fault = None
        self.send_response(206 if asked else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if self.portal.honour_range:
            self.send_header("Accept-Ranges", "bytes")
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        with self.portal.stats.lock:
            self.portal.stats.active += 1
            self.portal.stats.max_active = max(self.portal.stats.max_active, self.portal.stats.active)
        try:
            self._send_body(file, start, end, fault)
        finally:
            with self.portal.stats.lock:
                self.portal.stats.active -= 1

    def _send_body(self, file: PortalFile, start: int, end: int, fault: Fault | None) -> None:
        """The body, or the part of it a mid-body fault lets through."""
        if fault is None:
            self._write_body(file, start, end)
            return
        cut = start + int((end - start) * fault.at)
        self._write_body(file, start, cut)
        if fault.kind == "stall":
            time.sleep(fault.seconds)
            self._write_body(file, cut, end)
            return
        self.close_connection = True
        if fault.kind == "reset":  # RST instead of FIN: the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _write_body(self, file: PortalFile, start: int, end: int) -> None:
        """Send ``file.data[start:end]`` in pieces, at most ``rate`` bytes/s, counting what went out."""
        rate = self.portal.rate
        piece = PIECE if rate is None else max(1024, min(PIECE, int(rate / 50)))
        began, sent = time.monotonic(), 0
        for offset in range(start, end, piece):
            chunk = file.data[offset: min(end, offset + piece)]
            self.portal.wait_flowing()
            if rate is not None:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            self.wfile.write(chunk)
            sent += len(chunk)
            with self.portal.stats.lock:
                self.portal.stats.bytes_served[file.name] += len(chunk)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a single ``bytes=`` range, or None to serve it all (no header, a
    malformed or multi-part one: allowed by RFC 9110); ValueError when it cannot be satisfied."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if not start < end:
        raise ValueError(f"range {header!r} outside 0..{size}")
    return start, end


def generated_files(count: int, size: int, *, prefix: str = "file", first_id: int = 1000,
                    seed: int = 0) -> list[PortalFile]:
    """``count`` files of random bytes, sizes within +-10 % of ``size`` (so not round), deterministic."""
    rng = random.Random(seed)
    files = []
    for i in range(count):
        n = max(0, size + rng.randint(-size // 10, size // 10))
        files.append(PortalFile(first_id + i, f"{prefix}_{i:03d}.bin", rng.randbytes(n)))
    return files


def demo_portal(files_per_article: int = 6, size: int = 1_000_000, *, rate: float | None = 4e6,
                seed: int = 0, port: int = 0) -> PortalServer:
    """A portal holding the AI4Arctic collection's four articles (same ids and names as the real
    portal) with a few small generated files each; not started."""
    articles, titles = {}, {}
    for k, (name, article_id) in enumerate(ARTICLES.items()):
        articles[article_id] = generated_files(files_per_article, size, prefix=name.replace("-", "_"),
                                               first_id=10_000 * (k + 1), seed=seed + k)
        titles[article_id] = f"AI4Arctic demo: {name}"
    return PortalServer(articles, {COLLECTION_ID: list(articles)}, titles, rate=rate, port=port)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description="Serve a local figshare-like portal of generated files.",
                    epilog=logs.EPILOG)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--files", type=int, default=12, help="files per article")
    parser.add_argument("--size", type=parse_size, default="2M", help="typical file size, e.g. 2M")
    parser.add_argument("--rate", type=parse_size, default=None,
                        help="bytes per second per connection, e.g. 1M (default: unlimited)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    if args.files < 1:
        parser.error(f"--files must be at least 1, not {args.files}")
    if args.rate is not None and args.rate < 1:
        parser.error(f"--rate must be at least 1 byte per second, not {args.rate}")
    try:
        server = demo_portal(args.files, args.size, rate=args.rate, port=args.port)
    except OSError as err:  # the port is taken, or not ours to bind
        parser.error(f"--port {args.port}: {err}")
    print(f"serving on {server.url}; try: seaice download --api-url {server.url} "
          f"--article rtt-train --dest runs/portal_demo   (Ctrl-C stops)")
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0
