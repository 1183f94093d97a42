"""Download the AI4Arctic dataset from the DTU Data portal (figshare): parallel, resumable with HTTP
Range, md5-verified, with a manifest and a lock per destination. ``seaice download`` is the command;
docs/download.md tells the long story (retries, resuming, SLURM, trying it offline).

An entry of the portal's listing that cannot be fetched safely is left out and named in the report
(which then fails): one that is not a file record or has a bad field, a name listed twice, or a name
that is not one plain file name or could be one of the downloader's own files under DEST (the
manifest, the lock, ``NAME.part``): :mod:`.names` has the rules.
"""

from .cli import build_parser, main, parse_size
from .client import (
    API_URL,
    ARTICLES,
    COLLECTION,
    COLLECTION_ID,
    RETRYABLE_STATUS,
    USER_AGENT,
    PortalClient,
    RemoteFile,
    list_files,
    resolve_target,
    select_files,
)
from .downloader import (
    Downloader,
    Manifest,
    Outcome,
    Report,
    Segment,
    State,
    dest_lock,
    download,
    file_md5,
    plan_segments,
    read_manifest,
)
from .errors import DownloadError
from .names import LOCK_NAME, MANIFEST_NAME, MAX_NAME_BYTES, name_problem
from .options import Options
from .progress import BarProgress, LogProgress, Progress, format_bytes, format_seconds, make_progress
from .retry import MAX_RETRY_AFTER, NETWORK_ERRORS, RetryPolicy, describe_error, parse_retry_after

__all__ = [
    "API_URL", "ARTICLES", "COLLECTION", "COLLECTION_ID", "LOCK_NAME", "MANIFEST_NAME", "MAX_NAME_BYTES",
    "MAX_RETRY_AFTER", "NETWORK_ERRORS", "RETRYABLE_STATUS", "USER_AGENT", "BarProgress", "DownloadError",
    "Downloader", "LogProgress", "Manifest", "Options", "Outcome", "PortalClient", "Progress", "RemoteFile",
    "Report", "RetryPolicy", "Segment", "State", "build_parser", "describe_error", "dest_lock", "download",
    "file_md5", "format_bytes", "format_seconds", "list_files", "main", "make_progress", "name_problem",
    "parse_retry_after", "parse_size", "plan_segments", "read_manifest", "resolve_target", "select_files",
]
