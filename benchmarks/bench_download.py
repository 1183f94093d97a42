"""Portal downloads: parallel connections vs one, ranges of one large file, and what a resume costs.

Runs against the local figshare-like server (:mod:`seaice_lib.testing.portal_server`) with a per-connection
rate limit, the way figshare's storage limits single connections (users report about 8 hours for the
60 GB ready-to-train set over one connection). Measured:

* throughput of ``workers=1`` vs ``workers=4`` on many files;
* one large file as one connection vs split into 4 parallel ranges;
* the CLI killed (SIGKILL) half-way and run again: bytes fetched again vs the bytes that were on disk,
  which a downloader without Range resume would fetch again.

Sizes are set by SEAICE_BENCH_DL_FILES (8), SEAICE_BENCH_DL_SIZE (bytes per file, 2000000) and
SEAICE_BENCH_DL_RATE (bytes/s per connection, 2000000).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seaice_lib.data import download
from seaice_lib.testing.portal_server import PortalServer, generated_files

N_FILES = int(os.environ.get("SEAICE_BENCH_DL_FILES", "8"))
SIZE = int(os.environ.get("SEAICE_BENCH_DL_SIZE", "2000000"))
RATE = float(os.environ.get("SEAICE_BENCH_DL_RATE", "2000000"))
ARTICLE = download.ARTICLES["rtt-train"]
CHUNK = 64 * 1024


def _timed_download(server: PortalServer, dest: Path, **options) -> float:
    """MB/s of one in-process download of every file of the server into an empty ``dest``."""
    report = download.download("rtt-train", dest, api_url=server.url,
                               options=download.Options(progress="off", **options))
    assert report.ok, report.summary()
    return report.fetched_bytes / report.seconds / 1e6


def _throughput(work: Path) -> dict:
    with PortalServer({ARTICLE: generated_files(N_FILES, SIZE)}, rate=RATE) as server:
        one = _timed_download(server, work / "w1", workers=1)
        four = _timed_download(server, work / "w4", workers=4)
    return {"workers_1_mb_s": one, "workers_4_mb_s": four, "speedup": four / one}


def _ranges(work: Path) -> dict:
    big = generated_files(1, 4 * SIZE, prefix="large")
    with PortalServer({ARTICLE: big}, rate=RATE) as server:
        whole = _timed_download(server, work / "r1", workers=4, segment_size=0)
        split = _timed_download(server, work / "r4", workers=4, segment_size=-(-len(big[0].data) // 4))
    return {"file_mb": len(big[0].data) / 1e6, "one_connection_mb_s": whole, "four_ranges_mb_s": split,
            "speedup": split / whole}


def _resume(work: Path) -> dict:
    """Kill the CLI once half the bytes are served, rerun it, count what was fetched twice."""
    files = generated_files(N_FILES, SIZE, seed=1)
    total = sum(len(f.data) for f in files)
    dest = work / "resume"
    args = [sys.executable, "-m", "seaice_lib", "download", "--article", "rtt-train", "--dest", str(dest),
            "--workers", "4", "--chunk-size", str(CHUNK), "--quiet"]
    with PortalServer({ARTICLE: files}, rate=RATE) as server:
        process = subprocess.Popen([*args, "--api-url", server.url], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while server.stats.total_bytes() < total / 2 and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        served_before = server.stats.total_bytes()
    parts = list(dest.glob("*.part"))
    on_disk = sum(p.stat().st_size for p in parts)
    with PortalServer({ARTICLE: files}, rate=RATE) as server:
        t0 = time.perf_counter()
        subprocess.run([*args, "--api-url", server.url], check=True, stdout=subprocess.DEVNULL)
        rerun_seconds = time.perf_counter() - t0
        served_after = server.stats.total_bytes()
    refetched = served_before + served_after - total
    return {"total_mb": total / 1e6, "served_before_kill_mb": served_before / 1e6,
            "interrupted_files": len(parts), "partial_bytes_kept": on_disk, "refetched_bytes": refetched,
            "refetched_per_interrupted_file": refetched / max(1, len(parts)), "chunk_bytes": CHUNK,
            "rerun_seconds": rerun_seconds}


def main(out_dir: Path) -> dict:
    from seaice_lib.figures.throughput import write_benchmark

    with tempfile.TemporaryDirectory(prefix="bench_download_") as tmp:
        work = Path(tmp)
        results = {"files": N_FILES, "file_bytes": SIZE, "rate_per_connection_mb_s": RATE / 1e6,
                   "throughput": _throughput(work), "ranges": _ranges(work), "resume": _resume(work)}
    t, r, s = results["throughput"], results["ranges"], results["resume"]
    print(f"{N_FILES} files of {SIZE / 1e6:.1f} MB, server limit {RATE / 1e6:.1f} MB/s per connection")
    print(f"  1 worker  {t['workers_1_mb_s']:6.2f} MB/s")
    print(f"  4 workers {t['workers_4_mb_s']:6.2f} MB/s   x{t['speedup']:.2f}")
    print(f"one {r['file_mb']:.1f} MB file: 1 connection {r['one_connection_mb_s']:.2f} MB/s, "
          f"4 ranges {r['four_ranges_mb_s']:.2f} MB/s   x{r['speedup']:.2f}")
    print(f"killed at {s['served_before_kill_mb']:.1f} of {s['total_mb']:.1f} MB, rerun: "
          f"{s['refetched_bytes'] / 1e3:.1f} kB fetched again over {s['interrupted_files']} "
          f"interrupted files ({s['refetched_per_interrupted_file'] / 1e3:.1f} kB each, chunk "
          f"{CHUNK / 1e3:.1f} kB); {s['partial_bytes_kept'] / 1e6:.2f} MB of partial files kept "
          "instead of fetched again")
    write_benchmark(out_dir / "download.json", results)
    return results
