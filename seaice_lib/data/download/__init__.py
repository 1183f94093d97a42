"""Download the AI4Arctic dataset from the DTU Data portal (figshare): parallel, resumable with HTTP
Range, md5-verified, with a manifest and a lock per destination. ``seaice download`` is the command;
docs/download.md tells the long story (retries, resuming, SLURM, trying it offline).
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
)
from .downloader import (
    LOCK_NAME,
    MANIFEST_NAME,
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
from .options import Options
from .progress import BarProgress, LogProgress, Progress, format_bytes, format_seconds, make_progress
from .retry import MAX_RETRY_AFTER, NETWORK_ERRORS, RetryPolicy, describe_error, parse_retry_after

__all__ = [
    "API_URL", "ARTICLES", "COLLECTION", "COLLECTION_ID", "LOCK_NAME", "MANIFEST_NAME", "MAX_RETRY_AFTER",
    "NETWORK_ERRORS", "RETRYABLE_STATUS", "USER_AGENT", "BarProgress", "DownloadError", "Downloader",
    "LogProgress", "Manifest", "Options", "Outcome", "PortalClient", "Progress", "RemoteFile", "Report",
    "RetryPolicy", "Segment", "State", "build_parser", "describe_error", "dest_lock", "download",
    "file_md5", "format_bytes", "format_seconds", "list_files", "main", "make_progress", "parse_retry_after",
    "parse_size", "plan_segments", "read_manifest", "resolve_target",
]
