"""The names under DEST: each listed file gets one plain name of its own, and the downloader's own
files have names no listed file may take.

The downloader keeps its bookkeeping beside the data: ``download_manifest.json`` (rewritten through a
temporary ``.download_manifest.json.*``), ``.download.lock``, ``NAME.part`` / ``NAME.part.<offset>`` for
the file ``NAME`` being fetched, and ``.removed/`` for the files the listing no longer has. Rather than
move these into a folder of their own (which would reserve that folder's name all the same, and strand
the partial downloads of earlier runs), a listed name that could be one of them is refused, as is any
name that is not one plain path component: empty, ``.`` or ``..``, with a path separator (``/`` or
``\\``) or a control character, or too long for ``NAME.part.<offset>`` to fit in a file system's 255
bytes. Reserved names are compared ignoring case, as some file systems do. A refused entry is left out
of the run and named in its report.
"""

from __future__ import annotations

import os
import re
import unicodedata

from ...atomic import REMOVED

MANIFEST_NAME = "download_manifest.json"
LOCK_NAME = ".download.lock"
MAX_NAME_BYTES = 255 - len(".part.") - 20  # room for NAME.part.<offset>, any 64-bit offset

_RESERVED = re.compile(rf"{re.escape(MANIFEST_NAME)}|\.{re.escape(MANIFEST_NAME)}\..*|{re.escape(LOCK_NAME)}"
                       rf"|{re.escape(REMOVED)}|.*\.part(\.[0-9]+)?", re.IGNORECASE | re.DOTALL)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the name of a listed file under DEST, or None when it can."""
    if name in {"", ".", ".."}:
        return f"name {name!r} is not a file name"
    if "/" in name or "\\" in name:
        return f"name {name!r} is a path, not a plain file name"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return f"name {name!r} has a control character"
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:
        return f"name {name!r} cannot be encoded as a file name"
    if size > MAX_NAME_BYTES:
        return f"name {name[:40]!r}... is {size} bytes long, more than {MAX_NAME_BYTES}"
    if _RESERVED.fullmatch(name):
        return (f"name {name!r} is reserved for the downloader's own files ({MANIFEST_NAME}, {LOCK_NAME}, "
                f"NAME.part, {REMOVED})")
    return None
