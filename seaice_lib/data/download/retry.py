"""Retrying network failures: exponential backoff with jitter (seconds), honouring ``Retry-After``.

``_Retryable`` marks a failure worth another try; ``_Interrupted`` a run being stopped.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import urllib3

from .errors import DownloadError

MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is cut to this
NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                  ConnectionError, TimeoutError)

T = TypeVar("T")


class _Retryable(Exception):
    """A failure worth another try (5xx, 429, a short body), with the server's ``Retry-After``."""

    def __init__(self, cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.retry_after = retry_after


class _Interrupted(Exception):
    """The run is being stopped (Ctrl-C, SIGTERM): leave the ``.part`` files for the next run."""


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
