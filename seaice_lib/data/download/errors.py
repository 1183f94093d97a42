"""The one error the package raises to its callers: a listing, a file or DEST could not be handled."""

from __future__ import annotations


class DownloadError(RuntimeError):
    """A listing, a file or the destination could not be handled; the message names it and the cause."""
