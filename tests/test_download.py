"""The portal downloader against a real local HTTP server that speaks figshare and misbehaves on demand.

Each test starts a :class:`PortalServer` on 127.0.0.1 (port 0), serves small generated files, and
checks what ends up on disk and what the server saw (requests, ranges asked for, bytes served).
Backoff is 0.01 s and timeouts are short so the whole file runs in seconds. A stalled answer
stalls for :data:`STALL`, many times the client's timeout (2 s), so that it always trips it, while
an answer that is not stalled is far from tripping it even on a busy machine: the requests a test
counts are those of the faults it injected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from seaice_lib.data import download
from seaice_lib.data.download import DownloadError, Options, RetryPolicy
from seaice_lib.stopping import STOPPED_EXIT_CODE
from seaice_lib.testing.portal_server import Fault, PortalFile, PortalServer, demo_portal, generated_files
from tests.commands import usage_error

ARTICLE = download.ARTICLES["rtt-train"]
CHUNK = 16 * 1024
STALL = 30.0  # seconds a stalled answer waits: the client gave up long before (its thread sleeps on)


def fast(**changes) -> Options:
    """Options for tests: quick retries, short timeouts, small chunks, silent."""
    base = Options(workers=3, timeout=2.0, retries=4, backoff=0.01, max_backoff=0.05, chunk_size=CHUNK,
                   progress="off")
    return dataclasses.replace(base, **changes)


@pytest.fixture
def portal():
    """``portal(count, size, **server_kwargs)``: a started server with one article (rtt-train) of
    generated files, or of ``files`` when given."""
    servers: list[PortalServer] = []

    def make(count: int = 4, size: int = 100_000, *, files: list[PortalFile] | None = None,
             **kwargs) -> PortalServer:
        files = generated_files(count, size, seed=len(servers)) if files is None else files
        server = PortalServer({ARTICLE: files}, **kwargs)
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


@dataclasses.dataclass
class Listed(PortalFile):
    """A file the listing shows as ``listed(record)`` instead of its figshare record."""

    listed: Callable[[dict], object] = lambda record: record

    def record(self, base_url: str) -> object:
        return self.listed(super().record(base_url))


def files_of(server: PortalServer) -> list[PortalFile]:
    return server.articles[ARTICLE]


def file_requests(server: PortalServer) -> list:
    return [r for r in server.stats.requests if r.target != "api"]


def assert_all_verified(dest: Path, server: PortalServer) -> None:
    """Every file is on disk with the served bytes, verified in the manifest, no part file left."""
    manifest = download.read_manifest(dest)
    for f in files_of(server):
        assert (dest / f.name).read_bytes() == f.data, f.name
        assert manifest[f.name]["verified"] is True and manifest[f.name]["md5"] == f.md5
    assert not list(dest.glob("*.part*"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seaice_lib", "download", *args], capture_output=True,
                          text=True, timeout=60)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seaice_lib", "download", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def hold_bodies(server: PortalServer):
    """Pause ``server`` (each file body waits before its next piece); returns ``held()``: whether
    every body being sent waits so, none with a piece still on its way."""
    waiting: set[int] = set()
    gate = server.wait_flowing

    def counted_gate() -> None:  # what the server's handlers call before each piece
        waiting.add(threading.get_ident())
        try:
            gate()
        finally:
            waiting.discard(threading.get_ident())
    server.wait_flowing = counted_gate
    server.pause()
    return lambda: len(waiting) == server.stats.active


def on_disk(dest: Path, name: str) -> int:
    """The bytes of file ``name`` in ``dest``: its part file, or the file once finished."""
    for path in (dest / f"{name}.part", dest / name):
        try:
            return path.stat().st_size
        except FileNotFoundError:
            continue
    return 0


# --- names, sizes, backoff ----------------------------------------------------------------------
def test_known_names_ids_and_the_collection_resolve():
    assert download.resolve_target("rtt-train") == ("article", 21316608)
    assert download.resolve_target("RAW-test") == ("article", 21762848)
    assert download.resolve_target("21284967") == ("article", 21284967)
    assert download.resolve_target("all") == ("collection", 6244065)
    with pytest.raises(DownloadError, match="unknown article 'rtt'.*rtt-test.*all"):
        download.resolve_target("rtt")
    with pytest.raises(DownloadError, match="unknown article '²'"):  # a digit to str.isdigit, not to int()
        download.resolve_target("²")


def test_sizes_parse():
    assert download.parse_size("1048576") == 1 << 20
    assert download.parse_size("64k") == 65536
    assert download.parse_size("256M") == 256 << 20
    assert download.parse_size("1.5G") == 3 << 29
    with pytest.raises(Exception, match="not a size"):
        download.parse_size("lots")


def test_backoff_grows_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(retries=5, backoff=1.0, max_backoff=10.0)
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert cap / 2 <= min(delays) < max(delays) <= cap  # jittered within [cap/2, cap]
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=1e6) == download.MAX_RETRY_AFTER
    assert download.parse_retry_after("3") == 3.0
    assert download.parse_retry_after("soon") is None
    assert 100 < download.parse_retry_after(
        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))) <= 120


# --- listing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("count, requests", [(25, 3), (20, 3), (7, 1)])
def test_listing_pages_until_a_short_page(portal, count, requests):
    server = portal(count, 100)
    files = download.list_files("rtt-train", server.url, options=fast(page_size=10))
    assert [f.name for f in files] == [f.name for f in files_of(server)]
    assert [(f.size, f.md5) for f in files] == [(len(f.data), f.md5) for f in files_of(server)]
    assert len(server.stats.requests_for("api")) == requests


def test_listing_retries_transient_api_errors(portal):
    server = portal(3, 100)
    server.add_faults("api", Fault("status", 503), Fault("status", 429, retry_after="0"))
    assert len(download.list_files("rtt-train", server.url, options=fast())) == 3
    assert [r.status for r in server.stats.requests_for("api")] == [503, 429, 200]


def test_listing_an_unknown_article_fails_clearly(portal):
    server = portal(1, 100)
    with pytest.raises(DownloadError, match=r"articles/123/files.*HTTP 404"):
        download.list_files("123", server.url, options=fast())


def test_all_fetches_every_article_of_the_collection_into_its_own_folder(tmp_path):
    with demo_portal(2, 1000, rate=None) as server:
        server.collections[download.COLLECTION_ID].append(999)
        server.articles[999] = generated_files(1, 50, prefix="extra", first_id=1)
        report = download.download("all", tmp_path, api_url=server.url, options=fast())
        served = {f.name: f.data for files in server.articles.values() for f in files}
    assert report.ok
    paths = [o.file.path for o in report.outcomes]
    for path in paths:
        assert (tmp_path / path).read_bytes() == served[Path(path).name]
    assert sorted(download.read_manifest(tmp_path)) == sorted(paths)
    assert paths == ["raw-train/raw_train_000.bin", "raw-train/raw_train_001.bin",
                     "rtt-train/rtt_train_000.bin", "rtt-train/rtt_train_001.bin",
                     "raw-test/raw_test_000.bin", "raw-test/raw_test_001.bin",
                     "rtt-test/rtt_test_000.bin", "rtt-test/rtt_test_001.bin", "999/extra_000.bin"]


def test_include_globs_and_link_only_files_select_what_is_fetched(portal, tmp_path):
    server = portal(5, 1000)
    files_of(server).append(PortalFile(1, "elsewhere.bin", b"", link_only=True))
    report = download.download("rtt-train", tmp_path, api_url=server.url,
                               include=["file_001.*", "file_00[34].bin"], options=fast())
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["file_001.bin", "file_003.bin",
                                                             "file_004.bin"]
    assert report.ok and report.count("downloaded") == 3


# --- files of DEST the listing no longer has: set aside, named, dropped from the manifest ----------------
def test_a_file_the_article_no_longer_lists_is_set_aside_named_and_dropped_from_the_manifest(portal, tmp_path):
    server = portal(3, 5000)
    dest = tmp_path / "dest"
    args = ["--article", "rtt-train", "--dest", str(dest), "--api-url", server.url, "--quiet"]
    assert run_cli(*args).returncode == 0
    withdrawn = files_of(server).pop()  # withdrawn on the portal
    (dest / f"{withdrawn.name}.part").write_bytes(b"an older partial copy")
    manifest = json.loads((dest / download.MANIFEST_NAME).read_text())
    manifest["files"]["../outside.bin"] = {**manifest["files"][withdrawn.name]}  # no file under DEST: never moved
    (dest / download.MANIFEST_NAME).write_text(json.dumps(manifest))
    (tmp_path / "outside.bin").write_bytes(b"not DEST's")
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0 and f"UNLISTED {withdrawn.name}: to be moved to {dest / '.removed'}/" in dry.stdout
    assert (dest / withdrawn.name).read_bytes() == withdrawn.data  # a dry run changes nothing
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "files of" in result.stdout and "the listing no longer has (withdrawn or renamed on the portal): 1" \
        in result.stdout
    assert f"UNLISTED {withdrawn.name}: moved to {dest / '.removed' / withdrawn.name}" in result.stdout
    assert "2 files" in result.stdout and "2 already verified" in result.stdout
    assert (dest / ".removed" / withdrawn.name).read_bytes() == withdrawn.data
    assert sorted(p.name for p in dest.glob("*.bin*")) == sorted(f.name for f in files_of(server))
    assert sorted(download.read_manifest(dest)) == sorted(["../outside.bin", *(f.name for f in files_of(server))])
    assert (tmp_path / "outside.bin").read_bytes() == b"not DEST's" and "outside" not in result.stdout
    again = run_cli(*args)  # nothing more to set aside
    assert again.returncode == 0 and "UNLISTED" not in again.stdout


def test_only_the_files_this_listing_could_hold_are_set_aside(portal, tmp_path):
    """Files of another article, files --include does not select and files the listing leaves out
    by name stay; a listing that leaves out an entry without a name sets nothing aside."""
    server = portal(files=generated_files(4, 500))
    download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    other = PortalServer({ARTICLE + 1: generated_files(1, 500, prefix="other")}).start()
    try:
        download.download(str(ARTICLE + 1), tmp_path, api_url=other.url, options=fast())
    finally:
        other.stop()
    a, b, c, d = files_of(server)
    files_of(server)[:] = [Listed(a.id, a.name, a.data, listed=lambda r: {**r, "size": -1}), c]  # b, d withdrawn
    report = download.download("rtt-train", tmp_path, api_url=server.url, include=["file_00[012].bin"],
                               options=fast())
    assert report.unlisted == [f"{b.name}: moved to {tmp_path / '.removed' / b.name}"]
    assert all((tmp_path / name).is_file() for name in (a.name, c.name, d.name, "other_000.bin"))
    assert sorted(download.read_manifest(tmp_path)) == [a.name, c.name, d.name, "other_000.bin"]
    files_of(server)[:] = [Listed(c.id, c.name, c.data, listed=lambda r: "junk")]  # a gone, and an entry unnamed
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.unlisted == [] and (tmp_path / a.name).is_file() and not report.ok


def test_all_sets_aside_the_files_of_an_article_the_collection_no_longer_holds(tmp_path):
    with demo_portal(2, 100, rate=None) as server:
        download.download("all", tmp_path, api_url=server.url, options=fast())
        server.collections[download.COLLECTION_ID].remove(download.ARTICLES["raw-test"])
        server.articles[download.ARTICLES["rtt-test"]].pop(0)
        report = download.download("all", tmp_path, api_url=server.url, options=fast())
    assert report.ok and [line.split(":")[0] for line in report.unlisted] == [
        "raw-test/raw_test_000.bin", "raw-test/raw_test_001.bin", "rtt-test/rtt_test_000.bin"]
    assert sorted(p.name for p in (tmp_path / "raw-test" / ".removed").iterdir()) == ["raw_test_000.bin",
                                                                                       "raw_test_001.bin"]
    assert not list((tmp_path / "raw-test").glob("*.bin")) and (tmp_path / "rtt-test" / ".removed").is_dir()
    assert not any(p.startswith(("raw-test/", "rtt-test/rtt_test_000")) for p in download.read_manifest(tmp_path))


# --- entries of the listing that cannot be fetched safely: left out, named, the others fetched --------
def listing_of(server: PortalServer, article: int = ARTICLE) -> str:
    return f"{server.url}/articles/{article}/files"


@pytest.mark.parametrize("listed, why", [
    (lambda r: "b.bin", "not a file record (a mapping): 'b.bin'"),
    (lambda r: [r["name"]], "not a file record (a mapping): ['b.bin']"),
    (lambda r: None, "not a file record (a mapping): None"),
    (lambda r: {**r, "name": 7}, "name 7 is not a string"),
    (lambda r: {k: v for k, v in r.items() if k != "size"}, "'b.bin': size None is not a whole number >= 0"),
    (lambda r: {**r, "size": -1}, "'b.bin': size -1 is not a whole number >= 0"),
    (lambda r: {**r, "size": "4"}, "'b.bin': size '4' is not a whole number >= 0"),
    (lambda r: {**r, "id": True}, "'b.bin': id True is not a whole number >= 0"),
    (lambda r: {**r, "download_url": "file:///etc/passwd"},
     "'b.bin': download_url 'file:///etc/passwd' is not an http(s) URL"),
    (lambda r: {**r, "computed_md5": "xyz"}, "'b.bin': md5 'xyz' is not 32 hex digits"),
    (lambda r: {**r, "computed_md5": "", "supplied_md5": ""},  # RT16-R2: never verified by its size alone
     "'b.bin': the listing gives no md5 (computed_md5, supplied_md5), so the file cannot be verified"),
    (lambda r: {k: v for k, v in r.items() if not k.endswith("md5")},
     "'b.bin': the listing gives no md5 (computed_md5, supplied_md5), so the file cannot be verified"),
], ids=["str", "list", "null", "name-int", "no-size", "size-negative", "size-str", "id-bool", "url-file",
        "md5-short", "md5-empty", "md5-missing"])
def test_a_listing_entry_that_is_no_file_record_is_left_out_and_named(portal, tmp_path, listed, why):
    server = portal(files=[*generated_files(2, 5000), Listed(7, "b.bin", b"data", listed=listed)])
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert not report.ok and report.count("downloaded") == 2
    assert report.refused == [f"{listing_of(server)}[2]: {why}"]
    assert f"REFUSED {report.refused[0]}" in report.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == [download.LOCK_NAME, download.MANIFEST_NAME,
                                                          "file_000.bin", "file_001.bin"]
    assert server.stats.requests_for("b.bin") == []


@pytest.mark.parametrize("name, why", [
    ("../up.bin", "is a path, not a plain file name"),
    ("sub/../../up.bin", "is a path, not a plain file name"),
    ("sub/x.bin", "is a path, not a plain file name"),
    ("{tmp}/abs.bin", "is a path, not a plain file name"),
    ("..\\up.bin", "is a path, not a plain file name"),
    ("", "is not a file name"),
    (".", "is not a file name"),
    ("..", "is not a file name"),
    ("nul\0.bin", "has a control character"),
    ("two\nlines.bin", "has a control character"),
    ("\ud800.bin", "cannot be encoded as a file name"),
    ("n" * 300, "is 300 bytes long, more than 229"),
])
def test_an_unsafe_name_is_left_out_named_and_nothing_is_written_outside_dest(portal, tmp_path, name, why):
    dest = tmp_path / "a" / "dest"
    name = name.format(tmp=tmp_path)
    server = portal(files=[*generated_files(2, 5000), PortalFile(7, name, b"outside?")])
    report = download.download("rtt-train", dest, api_url=server.url, options=fast())
    assert not report.ok and report.count("downloaded") == 2
    [refused] = report.refused
    assert refused.startswith(f"{listing_of(server)}[2]: name ") and refused.endswith(why)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "a", "a/dest", f"a/dest/{download.LOCK_NAME}", f"a/dest/{download.MANIFEST_NAME}",
        "a/dest/file_000.bin", "a/dest/file_001.bin"]


def test_the_longest_name_allowed_fits_its_part_files(portal, tmp_path):
    name = "n" * download.MAX_NAME_BYTES
    server = portal(files=[PortalFile(1, name, os.urandom(60_000))])
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast(segment_size=25_000))
    assert report.ok
    assert_all_verified(tmp_path, server)


def test_names_of_the_downloaders_own_files_are_refused(portal, tmp_path):
    split = generated_files(1, 60_000)[0]  # fetched as ranges: file_000.bin.part, file_000.bin.part.25000, ...
    reserved = [download.MANIFEST_NAME, download.LOCK_NAME, "file_000.bin.part", "file_000.bin.part.25000",
                "Download_Manifest.JSON", f".{download.MANIFEST_NAME}.{os.getpid()}.tmp", ".removed", ".Removed"]
    keeper = "file_000.bin.part.old"  # not a name the downloader uses: a file like any other
    server = portal(files=[split, *(PortalFile(10 + i, n, b"junk") for i, n in enumerate(reserved)),
                           PortalFile(99, keeper, b"kept")])
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast(segment_size=25_000))
    assert [o.file.name for o in report.outcomes] == [split.name, keeper] and report.count("downloaded") == 2
    assert report.refused == [f"{listing_of(server)}[{i + 1}]: name {n!r} is reserved for the downloader's own "
                              f"files (download_manifest.json, .download.lock, NAME.part, .removed)"
                              for i, n in enumerate(reserved)]
    assert (tmp_path / split.name).read_bytes() == split.data and (tmp_path / keeper).read_bytes() == b"kept"
    assert sorted(download.read_manifest(tmp_path)) == [split.name, keeper]
    assert sorted(p.name for p in tmp_path.iterdir()) == [download.LOCK_NAME, download.MANIFEST_NAME,
                                                          split.name, keeper]
    again = download.download("rtt-train", tmp_path, api_url=server.url, options=fast(segment_size=25_000))
    assert again.count("present") == 2 and (tmp_path / keeper).read_bytes() == b"kept"


def test_a_name_listed_twice_is_fetched_once_and_the_other_entries_named(portal, tmp_path):
    server = portal(files=[PortalFile(1, "a.bin", b"first"), PortalFile(2, "b.bin", b"b"),
                           PortalFile(3, "a.bin", b"second"), PortalFile(4, "A.BIN", b"third")])
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert not report.ok and report.count("downloaded") == 2
    assert report.refused == [f"{listing_of(server)}[2]: 'a.bin' names the same file as [0] 'a.bin', the one fetched",
                              f"{listing_of(server)}[3]: 'A.BIN' names the same file as [0] 'a.bin', the one fetched"]
    assert (tmp_path / "a.bin").read_bytes() == b"first" and not (tmp_path / "A.BIN").exists()
    assert len(server.stats.requests_for("a.bin")) == 1


def test_an_article_listed_twice_or_not_an_article_in_the_collection_is_named(tmp_path):
    with demo_portal(1, 100, rate=None) as server:
        server.collections[download.COLLECTION_ID] += [ARTICLE, "x"]
        report = download.download("all", tmp_path, api_url=server.url, options=fast())
    listing = f"{server.url}/collections/{download.COLLECTION_ID}/articles"
    assert report.count("downloaded") == 4 and not report.ok
    again, bad = report.refused
    assert again == f"{listing}[4]: article {ARTICLE} is listed again"
    assert bad.startswith(f"{listing}[5]: not an article with a numeric id: {{'id': 'x', ")


def test_include_leaves_out_the_refused_entries_it_does_not_select(portal, tmp_path, capsys):
    server = portal(files=[*generated_files(2, 5000), PortalFile(7, "../up.bin", b"x"),
                           Listed(8, "five", b"", listed=lambda r: 5)])
    report = download.download("rtt-train", tmp_path, api_url=server.url, include=["file_*"], options=fast())
    assert report.count("downloaded") == 2 and report.refused == [f"{listing_of(server)}[3]: not a file "
                                                                  "record (a mapping): 5"]
    assert len(download.list_files("rtt-train", server.url, include=["*up*"], options=fast())) == 0
    assert f"warning: left out {listing_of(server)}[2]: name '../up.bin'" in capsys.readouterr().err


def test_cli_leaves_out_bad_entries_names_them_and_exits_1(portal, tmp_path):
    server = portal(files=[*generated_files(2, 5000), PortalFile(7, "../up.bin", b"x"),
                           Listed(8, "junk", b"", listed=lambda r: "junk")])
    args = ["--article", "rtt-train", "--dest", str(tmp_path / "dest"), "--api-url", server.url, "--quiet"]
    for dry in (["--dry-run"], []):
        result = run_cli(*args, *dry)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"REFUSED {listing_of(server)}[2]: name '../up.bin' is a path" in result.stdout
        assert f"REFUSED {listing_of(server)}[3]: not a file record (a mapping): 'junk'" in result.stdout
    assert "2 downloaded, 0 already verified, 0 failed" in result.stdout
    assert not (tmp_path / "up.bin").exists()


@pytest.mark.parametrize("manifest, named", [
    ({"format": 1, "files": {"file_000.bin": "verified", "file_001.bin": [True]}},
     ["ignoring entry 'file_000.bin' of the manifest", "ignoring entry 'file_001.bin' of the manifest"]),
    ({"format": 1, "files": ["file_000.bin"]}, ["ignoring unreadable manifest"]),
    (["file_000.bin"], ["ignoring unreadable manifest"]),
], ids=["entries", "files-a-list", "a-list"])
def test_a_manifest_entry_that_is_no_mapping_is_ignored_and_named(portal, tmp_path, capsys, manifest, named):
    server = portal(2, 10_000)
    (tmp_path / download.MANIFEST_NAME).write_text(json.dumps(manifest))
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.ok and report.count("downloaded") == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(named)
    for line, start in zip(warnings, named):
        assert line.startswith(f"warning: {start}") and str(tmp_path / download.MANIFEST_NAME) in line
    assert_all_verified(tmp_path, server)


def test_a_folder_in_the_way_of_one_file_fails_that_file_alone(portal, tmp_path):
    server = portal(3, 10_000)
    blocked = files_of(server)[1].name
    (tmp_path / blocked).mkdir()
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.count("downloaded") == 2
    [failed] = report.failed
    assert failed.file.name == blocked and failed.error == f"{blocked}: [Errno 21] Is a directory: " \
        f"'{tmp_path / blocked}'"
    assert (tmp_path / blocked).is_dir() and server.stats.requests_for(blocked) == []


def test_a_subfolder_of_dest_that_is_a_symbolic_link_is_never_written_through(tmp_path):
    """``all`` writes each article into its folder in DEST: one that is a link to a folder elsewhere
    fails its files, naming the link (nothing fetched, nothing written or removed outside DEST); the
    other articles are fetched. A dry run says the same instead of counting a file there present."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "rtt-train").symlink_to(outside, target_is_directory=True)
    with demo_portal(2, 1000, rate=None) as server:
        (outside / "rtt_train_000.bin").write_bytes(server.articles[download.ARTICLES["rtt-train"]][0].data)
        before = {p.name: p.read_bytes() for p in outside.iterdir()}
        dry = download.download("all", dest, api_url=server.url, options=fast(), dry_run=True)
        report = download.download("all", dest, api_url=server.url, options=fast())
        linked = [f.name for f in server.articles[download.ARTICLES["rtt-train"]]]
        requested = [name for name in linked if server.stats.requests_for(name)]
    why = f"{dest / 'rtt-train'} is a symbolic link: files are written only inside {dest}"
    for outcomes in (dry.outcomes, report.failed):
        assert sorted(o.file.path for o in outcomes if o.state == "failed") == [f"rtt-train/{n}" for n in linked]
        assert all(why in o.error for o in outcomes if o.state == "failed")
    assert not report.ok and report.count("downloaded") == len(report.outcomes) - len(linked)
    assert requested == [] and {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert not any(p.startswith("rtt-train/") for p in download.read_manifest(dest))


# --- downloading --------------------------------------------------------------------------------
def test_parallel_download_verifies_every_file(portal, tmp_path):
    server = portal(6, 150_000, rate=1.5e6)
    files_of(server).append(PortalFile(1, "empty.bin", b""))
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast(workers=3))
    assert report.ok and report.count("downloaded") == 7
    assert report.fetched_bytes == sum(len(f.data) for f in files_of(server)) == server.stats.total_bytes()
    assert server.stats.max_active == 3  # three bodies were being sent at once
    assert server.stats.requests_for("empty.bin") == []  # nothing to ask for
    assert_all_verified(tmp_path, server)


def test_rerun_skips_verified_files_without_hashing(portal, tmp_path, monkeypatch):
    server = portal(3, 50_000)
    assert download.download("rtt-train", tmp_path, api_url=server.url, options=fast()).ok
    server.stats.reset()
    monkeypatch.setattr(download.downloader, "file_md5", lambda path: pytest.fail(f"hashed {path} again"))
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.ok and report.count("present") == 3
    assert file_requests(server) == []


def test_a_verified_file_changed_in_place_at_the_same_size_is_fetched_again(portal, tmp_path):
    server = portal(2, 50_000)
    assert download.download("rtt-train", tmp_path, api_url=server.url, options=fast()).ok
    changed, kept = files_of(server)
    path = tmp_path / changed.name
    stat = path.stat()
    path.write_bytes(bytes(255 - b for b in changed.data))  # same size, other bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later time, as any edit leaves
    server.stats.reset()
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.ok and [o.state for o in report.outcomes] == ["downloaded", "present"]
    assert [r.target for r in file_requests(server)] == [changed.name]
    assert_all_verified(tmp_path, server)


def test_a_file_under_its_name_unknown_to_the_manifest_is_checked(portal, tmp_path):
    server = portal(2, 50_000)
    good, bad = files_of(server)
    (tmp_path / good.name).write_bytes(good.data)  # e.g. copied in by hand: kept, no download
    (tmp_path / bad.name).write_bytes(b"x" * len(bad.data))  # stale: replaced
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert [o.state for o in report.outcomes] == ["present", "downloaded"]
    assert [r.target for r in file_requests(server)] == [bad.name]
    assert_all_verified(tmp_path, server)


@pytest.mark.parametrize("fault", [
    Fault("reset", at=0.5),
    Fault("truncate", at=0.5),
    Fault("stall", at=0.5, seconds=STALL),
], ids=lambda f: f.kind)
def test_a_broken_transfer_resumes_where_it_stopped(portal, tmp_path, fault):
    server = portal(2, 200_000, rate=4e6)
    target = files_of(server)[0]
    server.add_faults(target.name, fault)
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.ok
    first, second = server.stats.requests_for(target.name)
    assert first.range_start is None and 0 < second.range_start <= len(target.data) // 2
    # bytes fetched twice: at most those not yet written when the connection broke
    assert server.stats.bytes_served[target.name] - len(target.data) < CHUNK + 16 * 1024
    assert_all_verified(tmp_path, server)


def test_server_errors_and_slow_answers_are_retried(portal, tmp_path):
    server = portal(3, 50_000)
    a, b, c = files_of(server)
    server.add_faults(a.name, Fault("status", 500), Fault("status", 503), Fault("status", 502))
    server.add_faults(b.name, Fault("stall", at=0.0, seconds=STALL))
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert report.ok
    assert [r.status for r in server.stats.requests_for(a.name)] == [500, 503, 502, 200]
    assert len(server.stats.requests_for(b.name)) == 2
    assert_all_verified(tmp_path, server)


def test_429_waits_as_long_as_retry_after_says(portal, tmp_path):
    server = portal(1, 20_000)
    name = files_of(server)[0].name
    server.add_faults(name, Fault("status", 429, retry_after="1"))
    assert download.download("rtt-train", tmp_path, api_url=server.url, options=fast()).ok
    refused, served = server.stats.requests_for(name)
    assert refused.status == 429 and served.status == 200
    assert served.time - refused.time >= 0.95  # the backoff alone would have been 0.01 s


def test_a_file_that_keeps_failing_gets_a_clear_error_and_the_others_go_on(portal, tmp_path):
    server = portal(3, 50_000)
    bad = files_of(server)[1]
    server.add_faults(bad.name, *[Fault("status", 503)] * 10)
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast(retries=2))
    assert not report.ok and report.count("downloaded") == 2
    [failed] = report.failed
    assert failed.error == f"{bad.name}: HTTP 503 Service Unavailable (gave up after 2 retries)"
    assert len(server.stats.requests_for(bad.name)) == 3
    assert not (tmp_path / bad.name).exists()
    entry = download.read_manifest(tmp_path)[bad.name]
    assert entry["verified"] is False and "HTTP 503" in entry["error"]
    assert f"FAILED {failed.error}" in report.summary()


def test_a_client_error_is_not_retried(portal, tmp_path):
    server = portal(1, 10_000)
    name = files_of(server)[0].name
    server.add_faults(name, Fault("status", 404))
    [outcome] = download.download("rtt-train", tmp_path, api_url=server.url, options=fast()).outcomes
    assert outcome.state == "failed" and outcome.error == f"{name}: HTTP 404 Not Found"
    assert len(server.stats.requests_for(name)) == 1


def test_a_file_with_the_wrong_md5_is_never_left_under_its_name(portal, tmp_path):
    server = portal(3, 50_000)
    bad = files_of(server)[0]
    bad.listed_md5 = "0" * 32
    report = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    [failed] = report.failed
    assert failed.file.name == bad.name
    assert failed.error.startswith(f"{bad.name}: verification failed (md5 {bad.md5}, expected {'0' * 32})")
    assert not (tmp_path / bad.name).exists()
    assert not list(tmp_path.glob("*.part*"))
    assert download.read_manifest(tmp_path)[bad.name]["verified"] is False
    assert report.count("downloaded") == 2
    assert failed.error.endswith("run again to fetch it anew")
    # RT16-R13: the same bytes again is no transfer fault: the listed md5 may be wrong, and fetching again won't help
    second = download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    [again] = second.failed
    assert again.error.endswith("and the same bytes arrived in an earlier run: the portal's listed md5 may be wrong "
                                "(ask the data portal; fetching again will not help)")
    assert "run the same command again" not in second.summary()  # RT17-R3: no advice that cannot work
    bad.listed_md5 = None  # the portal's md5 mended: fetched and verified
    assert download.download("rtt-train", tmp_path, api_url=server.url, options=fast()).ok
    assert "rejected_md5" not in download.read_manifest(tmp_path)[bad.name]


@pytest.mark.parametrize("segment_size", [0, 40_000])
def test_a_server_ignoring_range_is_read_from_the_start(portal, tmp_path, segment_size):
    server = portal(1, 100_000, honour_range=False)
    file = files_of(server)[0]
    (tmp_path / f"{file.name}.part").write_bytes(b"\0" * 30_000)  # would corrupt the file if appended to
    report = download.download("rtt-train", tmp_path, api_url=server.url,
                               options=fast(segment_size=segment_size))
    assert report.ok
    assert all(r.status == 200 for r in server.stats.requests_for(file.name))
    assert_all_verified(tmp_path, server)


def test_a_large_file_is_fetched_as_parallel_ranges(portal, tmp_path):
    server = portal(1, 600_000, rate=2e6)
    file = files_of(server)[0]
    report = download.download("rtt-train", tmp_path, api_url=server.url,
                               options=fast(workers=3, segment_size=250_000))
    assert report.ok
    assert sorted(r.range_start for r in server.stats.requests_for(file.name)) == [0, 250_000, 500_000]
    assert server.stats.max_active == 3
    assert server.stats.bytes_served[file.name] == len(file.data)
    assert_all_verified(tmp_path, server)


def test_ranges_resume_from_their_part_files(portal, tmp_path):
    server = portal(2, 600_000)
    joined, partial = files_of(server)
    # every range complete, the join interrupted: the first part file has the start of the second range
    part = tmp_path / f"{joined.name}.part"
    part.write_bytes(joined.data[:260_000])
    part.with_name(f"{part.name}.250000").write_bytes(joined.data[250_000:500_000])
    part.with_name(f"{part.name}.500000").write_bytes(joined.data[500_000:])
    # ranges under way, and a part file of another split
    part = tmp_path / f"{partial.name}.part"
    part.write_bytes(partial.data[:100_000])
    part.with_name(f"{part.name}.250000").write_bytes(partial.data[250_000:500_000])
    part.with_name(f"{part.name}.500000").write_bytes(partial.data[500_000:520_000])
    part.with_name(f"{part.name}.300000").write_bytes(b"from another split")
    report = download.download("rtt-train", tmp_path, api_url=server.url,
                               options=fast(segment_size=250_000))
    assert report.ok
    assert server.stats.requests_for(joined.name) == []
    assert sorted(r.range_start for r in server.stats.requests_for(partial.name)) == [100_000, 520_000]
    assert server.stats.bytes_served[partial.name] == len(partial.data) - 100_000 - 250_000 - 20_000
    assert_all_verified(tmp_path, server)


@pytest.mark.parametrize("suffix, start", [(".part", 0), (".part.250000", 250_000)])
def test_a_part_file_that_is_a_symbolic_link_is_started_anew_never_written_through(portal, tmp_path, suffix,
                                                                                    start):
    """A link in DEST, even to the file's own first bytes, is dropped: nothing is written outside DEST."""
    server = portal(1, 600_000)
    [file] = files_of(server)
    victim = tmp_path / "outside.bin"
    victim.write_bytes(file.data[start:start + 15_000])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / f"{file.name}{suffix}").symlink_to(victim)
    report = download.download("rtt-train", dest, api_url=server.url, options=fast(segment_size=250_000))
    assert report.ok
    assert victim.read_bytes() == file.data[start:start + 15_000]
    assert not (dest / file.name).is_symlink()
    assert sorted(r.range_start or 0 for r in server.stats.requests_for(file.name)) == [0, 250_000, 500_000]
    assert_all_verified(dest, server)


def test_a_link_made_after_the_check_is_never_written_through(portal, tmp_path, monkeypatch):
    """The part files are opened without following a link (a link made once DEST was checked)."""
    from seaice_lib.data.download import downloader

    monkeypatch.setattr(downloader, "_not_plain", lambda path: False)  # as if the link came later
    server = portal(1, 50_000)
    [file] = files_of(server)
    victim = tmp_path / "outside.bin"
    victim.write_bytes(b"not DEST's")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / f"{file.name}.part").symlink_to(victim)
    [failed] = download.download("rtt-train", dest, api_url=server.url, options=fast()).failed
    assert failed.error.startswith(f"{file.name}: cannot write {dest / file.name}.part: [Errno 40]")
    assert victim.read_bytes() == b"not DEST's"


def test_not_enough_space_stops_before_downloading(portal, tmp_path, monkeypatch):
    server = portal(2, 10_000)
    monkeypatch.setattr(download.downloader.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(DownloadError, match=f"not enough space in {tmp_path}"):
        download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
    assert file_requests(server) == []


# --- one DEST, one run --------------------------------------------------------------------------
def test_a_second_run_on_the_same_dest_refuses_or_waits(portal, tmp_path, capsys):
    server = portal(2, 10_000)
    with download.dest_lock(tmp_path):
        with pytest.raises(DownloadError, match=f"another download is using {tmp_path}.*pid {os.getpid()}"):
            download.download("rtt-train", tmp_path, api_url=server.url, options=fast())
        result = run_cli("--article", "rtt-train", "--dest", str(tmp_path), "--api-url", server.url)
        assert result.returncode == 2 and "another download is using" in result.stderr
    assert file_requests(server) == []

    reports, said = [], []
    waiting = threading.Thread(target=lambda: reports.append(
        download.download("rtt-train", tmp_path, api_url=server.url, options=fast(wait=True))))

    def says_it_waits() -> bool:
        said.append(capsys.readouterr().err)
        return f"waiting for the download of pid {os.getpid()} to release {tmp_path}" in "".join(said)

    with download.dest_lock(tmp_path):
        waiting.start()
        wait_for(says_it_waits)
        assert waiting.is_alive() and file_requests(server) == []  # it waits, and fetches nothing meanwhile
    waiting.join(60)  # released: it goes on
    assert reports and reports[0].ok and reports[0].count("downloaded") == 2


def test_all_and_one_article_into_its_folder_never_write_one_file_at_once(tmp_path):
    """RT16-R1: `all` into DEST writes DEST/<article>/, where a run of that article alone may write
    too: each holds the other's folder, so the second ends at once naming the first, fetching nothing."""
    with demo_portal(1, 100, rate=None) as server:
        with download.dest_lock(tmp_path / "rtt-train"):  # a run of rtt-train alone into its folder of DEST
            with pytest.raises(DownloadError, match=f"another download is using {tmp_path / 'rtt-train'}.*pid "
                                                    f"{os.getpid()}"):
                download.download("all", tmp_path, api_url=server.url, options=fast())
            assert not download.read_manifest(tmp_path) and not list(tmp_path.rglob("*.bin*"))
            report = download.download("all", tmp_path, api_url=server.url, include=["raw_*"], options=fast())
            assert report.ok and report.count("downloaded") == 2  # the articles it does not write stay free
        fetching, release, runs = threading.Event(), threading.Event(), []
        run = download.downloader.Downloader.run

        def held_run(self, files):  # `all` paused while it fetches, holding its locks
            fetching.set()
            release.wait(60)
            return run(self, files)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(download.downloader.Downloader, "run", held_run)
            everything = threading.Thread(target=lambda: runs.append(
                download.download("all", tmp_path, api_url=server.url, options=fast())))
            everything.start()
            try:
                assert fetching.wait(60)
                with pytest.raises(DownloadError, match=f"another download is using {tmp_path / 'rtt-test'}"):
                    download.download("rtt-test", tmp_path / "rtt-test", api_url=server.url, options=fast())
            finally:
                release.set()
                everything.join(60)
    assert runs and runs[0].ok and runs[0].count("downloaded") == 2  # rtt-train's were still there
    assert not download.read_manifest(tmp_path / "rtt-test")


def test_a_lock_or_removed_folder_that_is_a_link_is_never_written_through(portal, tmp_path):
    """RT16-R16: the lock was opened through a link (emptying the file it pointed to) and a file
    set aside went through a linked .removed out of DEST."""
    server = portal(2, 1000)
    outside = tmp_path / "notes.txt"
    outside.write_text("important notes")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / download.LOCK_NAME).symlink_to(outside)
    with pytest.raises(DownloadError, match=f"{dest / download.LOCK_NAME}: a symbolic link where the download's lock"):
        download.download("rtt-train", dest, api_url=server.url, options=fast())
    assert outside.read_text() == "important notes"
    (dest / download.LOCK_NAME).unlink()
    assert download.download("rtt-train", dest, api_url=server.url, options=fast()).ok
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / ".removed").symlink_to(elsewhere)
    files_of(server).pop(0)  # withdrawn from the listing: set aside, but not through the link
    report = download.download("rtt-train", dest, api_url=server.url, options=fast())
    assert report.unlisted == [f"file_000.bin: left where it is ({dest / '.removed'} is a symbolic link: files are "
                               f"moved only inside {dest})"]
    assert not report.ok and "0 set aside, 1 left where they are (named below)" in report.summary()  # RT17-R7
    assert not list(elsewhere.iterdir()) and (dest / "file_000.bin").is_file()


# --- the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, named", [
    (["--workers", "0"], "workers must be at least 1"),
    (["--workers", "-1"], "workers must be at least 1"),
    (["--retries", "-1"], "retries must be at least 0"),
    (["--timeout", "0"], "timeout must be"),
    (["--timeout", "inf"], "timeout must be"),
    (["--timeout", "nan"], "timeout must be"),
    (["--backoff", "-1"], "backoff must be"),
    (["--backoff", "nan"], "backoff must be"),
    (["--log-every", "0"], "log every must be"),
    (["--log-every", "-5"], "log every must be"),
    (["--chunk-size", "0"], "chunk size must be"),
    (["--segment-size", "-1"], "--segment-size"),
    (["--files", "-1"], "--files"),
])
def test_cli_bad_counts_and_times_are_usage_errors(args, named, capsys, tmp_path):
    no_portal = ["--api-url", "http://127.0.0.1:9/v2"]  # were it not refused: fail fast
    no_portal += [] if "--retries" in args else ["--retries", "0"]  # an option given twice is its own usage error
    line = usage_error(["download", "--article", "rtt-train", "--dest", str(tmp_path), *no_portal, *args], capsys)
    assert named in line


def test_dest_of_another_stage_is_a_usage_error_and_left_as_it_was(capsys, tmp_path):
    """RT18-R11: a mistyped --dest wrote the portal's files into a run folder, a store or its groups."""
    run, store = tmp_path / "run", tmp_path / "p.zarr"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    (store / "scenes").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    no_portal = ["--api-url", "http://127.0.0.1:9/v2", "--retries", "0"]
    for dest, what in ((run, "a run folder"), (run / "checkpoints", f"inside run {run}'s checkpoints"),
                       (store, "a patch store"), (store / "scenes", f"inside the patch store {store}")):
        before = sorted(p.name for p in dest.iterdir())
        line = usage_error(["download", "--article", "rtt-train", "--dest", str(dest), *no_portal], capsys)
        assert f"--dest {dest}: {what}, not a folder of downloads" in line
        assert sorted(p.name for p in dest.iterdir()) == before


@pytest.mark.parametrize("args, named", [
    (["--files", "0"], "--files must be at least 1, not 0"),
    (["--files", "-1"], "--files must be at least 1, not -1"),
    (["--rate", "0"], "--rate must be at least 1 byte per second, not 0"),
    (["--port", "-1"], "--port must be 0..65535"),
])
def test_portal_cli_bad_counts_are_usage_errors(args, named, capsys):
    assert named in usage_error(["portal", *args], capsys)


def test_cli_dry_run_lists_and_fetches_nothing(portal, tmp_path):
    server = portal(3, 10_000)
    dest = tmp_path / "dest"
    result = run_cli("--article", "rtt-train", "--dest", str(dest), "--api-url", server.url, "--dry-run")
    assert result.returncode == 0, result.stderr
    for f in files_of(server):
        assert f.name in result.stdout
    assert "3 files" in result.stdout and "3 to fetch" in result.stdout
    assert not dest.exists() and file_requests(server) == []


def test_cli_quiet_logs_lines_and_fails_with_a_summary(portal, tmp_path):
    server = portal(3, 20_000)
    bad = files_of(server)[2]
    server.add_faults(bad.name, *[Fault("status", 500)] * 5)
    result = run_cli("--article", str(ARTICLE), "--dest", str(tmp_path), "--api-url", server.url,
                     "--quiet", "--retries", "1", "--backoff", "0.01")
    assert result.returncode == 1
    assert "\r" not in result.stdout + result.stderr
    assert f"verified {files_of(server)[0].name}" in result.stderr  # log lines: stderr, the summary: stdout
    assert "retry 1/1" in result.stderr
    assert (f"FAILED {bad.name}: HTTP 500 Internal Server Error (gave up after 1 retries)"
            in result.stderr)
    assert "2 downloaded, 0 already verified, 1 failed" in result.stdout


def test_cli_killed_mid_download_resumes_and_refetches_less_than_a_chunk_per_file(portal, tmp_path):
    server = portal(4, 400_000, rate=400_000)
    total = sum(len(f.data) for f in files_of(server))
    args = ["--article", "rtt-train", "--dest", str(tmp_path), "--workers", "2", "--chunk-size", str(CHUNK),
            "--backoff", "0.01", "--quiet"]
    process = start_cli(*args, "--api-url", server.url)
    wait_for(lambda: server.stats.total_bytes() >= 0.4 * total)
    # bytes still in socket buffers at a kill are lost to any client: hold the bodies, and kill once
    # every piece sent has reached the downloader (it writes each whole chunk, so what it has not
    # written is less than a chunk a file), so that what is fetched again measures the downloader alone
    held = hold_bodies(server)
    wait_for(lambda: held() and all(server.stats.bytes_served[f.name] - on_disk(tmp_path, f.name) < CHUNK
                                    for f in files_of(server)))
    process.send_signal(signal.SIGKILL)
    process.communicate()
    first_run = server.stats.total_bytes()
    interrupted = list(tmp_path.glob("*.part"))
    assert interrupted and first_run < total
    assert json.loads((tmp_path / download.MANIFEST_NAME).read_text())["format"] == 1

    rerun = portal(files=files_of(server), rate=400_000)  # a fresh count: the first server's is spent
    result = run_cli(*args, "--api-url", rerun.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_all_verified(tmp_path, rerun)
    refetched = first_run + rerun.stats.total_bytes() - total
    assert 0 <= refetched < CHUNK * len(interrupted)
    resumed = {r.target for r in file_requests(rerun) if r.range_start}
    assert resumed and resumed <= {p.name.removesuffix(".part") for p in interrupted}


def test_cli_stops_cleanly_on_sigterm(portal, tmp_path):
    server = portal(2, 300_000, rate=300_000)
    args = ["--article", "rtt-train", "--dest", str(tmp_path), "--api-url", server.url,
            "--chunk-size", str(CHUNK), "--quiet"]
    process = start_cli(*args)
    wait_for(lambda: server.stats.total_bytes() >= 100_000)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == STOPPED_EXIT_CODE == 124, out + err
    assert "interrupted: run the same command again to resume" in out
    assert list(tmp_path.glob("*.part"))
    assert run_cli(*args).returncode == 0
    assert_all_verified(tmp_path, server)


def test_a_stop_signal_after_every_file_is_verified_ends_0_not_stopped(portal, tmp_path, monkeypatch, capsys):
    """RT22-R5: SIGTERM after the last file was verified said "interrupted: run the same command
    again to resume" and exited 124, so a scheduler would requeue finished work. The signal comes
    from the only worker as it ends, when nothing is left to fetch."""
    from seaice_lib.cli import main
    from seaice_lib.data.download.downloader import Downloader

    server = portal(2, 50_000)
    work = Downloader._work

    def work_then_stop(self):
        work(self)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Downloader, "_work", work_then_stop)
    assert main(["download", "--article", "rtt-train", "--dest", str(tmp_path), "--api-url", server.url,
                 "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 downloaded, 0 already verified, 0 failed, 0 not done" in out and "interrupted" not in out
    assert_all_verified(tmp_path, server)
