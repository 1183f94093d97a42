"""``seaice download``: the command line of the downloader (exit status 0 all verified, 1 some
files failed or entries of the listing were refused, 2 nothing could be done or a usage error,
124 stopped by a signal or Ctrl-C, resumable: :data:`seaice_lib.stopping.STOPPED_EXIT_CODE`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ... import logs
from ...arguments import Parser
from ...stages import SCENES, other_stage
from ...stopping import STOPPED_EXIT_CODE, TERMINAL_STOP_SIGNALS, StopFlag
from .client import API_URL, ARTICLES, COLLECTION
from .downloader import download
from .errors import DownloadError
from .options import Options


def parse_size(text: str) -> int:
    """``"1048576"``, ``"64k"``, ``"256M"``, ``"2G"`` -> bytes (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64k, 256M, 2G)")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024 ** power)


def _interrupt(signum: int) -> None:
    raise KeyboardInterrupt  # the downloader keeps its .part files and verified ones: a rerun resumes


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    defaults = Options()
    parser = Parser(
        prog=prog,
        description="Download AI4Arctic files from the DTU Data portal (figshare): parallel, resumable, "
                    "md5-verified. Rerun the same command to resume or to retry failed files.", epilog=logs.EPILOG)
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
    """Exit status: 0 all verified (a dry run: nothing refused), 1 some files failed or entries of the
    listing were refused, 2 nothing could be done, 124 stopped (resumable)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.dest.exists() and not args.dest.is_dir():
        parser.error(f"--dest {args.dest}: not a folder")
    if other := other_stage(args.dest, own=(SCENES,)):  # the portal's files: ready-to-train scenes or raw ones
        parser.error(f"--dest {args.dest}: {other}, not a folder of downloads: give another folder")
    try:
        options = Options(workers=args.workers, timeout=args.timeout, retries=args.retries,
                          backoff=args.backoff, chunk_size=args.chunk_size, segment_size=args.segment_size,
                          progress="bars" if logs.bars() and not args.quiet else "log", log_every=args.log_every, wait=args.wait)
    except ValueError as err:
        parser.error(str(err))
    try:
        with StopFlag(TERMINAL_STOP_SIGNALS, on_signal=_interrupt):  # SLURM's time limit: stop, resume later
            report = download(args.article, args.dest, api_url=args.api_url, include=args.include,
                              dry_run=args.dry_run, options=options)
    except (DownloadError, OSError) as err:  # the listing, the lock or DEST itself: nothing could be done
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return STOPPED_EXIT_CODE
    if args.dry_run:
        print(report.table())
    print(report.summary())
    if report.interrupted:
        return STOPPED_EXIT_CODE
    return 0 if report.ok or (args.dry_run and not report.refused) else 1
