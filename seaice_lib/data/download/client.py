"""The figshare API of the DTU Data portal: the AI4Arctic article ids, paged file listings, the
HTTP session and status checks the downloader shares."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from ... import __version__
from .errors import DownloadError
from .options import Options
from .retry import RetryPolicy, _Retryable, parse_retry_after

API_URL = "https://api.figshare.com/v2"
ARTICLES = {"raw-train": 21284967, "rtt-train": 21316608, "raw-test": 21762848, "rtt-test": 21762830}
COLLECTION = "all"
COLLECTION_ID = 6244065
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"seaice_lib-download/{__version__} python-requests/{requests.__version__}"


@dataclass(frozen=True)
class RemoteFile:
    """One file of an article as the portal lists it; ``path`` is where it goes under DEST."""

    article_id: int
    id: int
    name: str
    size: int
    md5: str
    url: str
    path: str


def resolve_target(name_or_id: str | int) -> tuple[str, int]:
    """``("article", id)`` or ``("collection", id)`` for a known name, ``all`` or a numeric article id."""
    text = str(name_or_id).strip().lower()
    if text == COLLECTION:
        return "collection", COLLECTION_ID
    if text in ARTICLES:
        return "article", ARTICLES[text]
    if text.isdigit():
        return "article", int(text)
    known = ", ".join([*ARTICLES, COLLECTION])
    raise DownloadError(f"unknown article {name_or_id!r}: use one of {known} or a numeric article id")


def _check_status(response: requests.Response) -> None:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code in RETRYABLE_STATUS:
        raise _Retryable(status, parse_retry_after(response.headers.get("Retry-After")))
    if response.status_code >= 400:
        raise DownloadError(status)


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


class PortalClient:
    """The figshare API: paged listings of an article's files and of a collection's articles."""

    def __init__(self, api_url: str = API_URL, options: Options = Options()):
        if not re.match(r"https?://", api_url):
            raise DownloadError(f"--api-url must be an http(s) URL, not {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self.options = options
        self.policy = RetryPolicy(options.retries, options.backoff, options.max_backoff)
        self.session = _session()

    def _get_json(self, path: str, params: dict[str, int]) -> list:
        url = f"{self.api_url}{path}"

        def attempt() -> list:
            response = self.session.get(url, params=params, timeout=self.options.timeout)
            try:
                _check_status(response)
            except DownloadError as err:
                raise DownloadError(f"GET {url}: {err}") from None
            try:
                payload = response.json()
            except ValueError:
                raise _Retryable("the answer is not valid JSON") from None
            if not isinstance(payload, list):
                raise DownloadError(f"GET {url}: expected a JSON list, got {type(payload).__name__}")
            return payload

        return self.policy.run(attempt, f"GET {url} page {params['page']}", on_retry=self._note)

    def _note(self, message: str) -> None:
        if self.options.progress != "off":
            print(message, file=sys.stderr)

    def _paged(self, path: str) -> Iterator[dict]:
        """Every item of a paged listing: ask page after page until one comes back short."""
        page, size = 1, self.options.page_size
        while True:
            items = self._get_json(path, {"page": page, "page_size": size})
            yield from items
            if len(items) < size:
                return
            page += 1

    def article_files(self, article_id: int, subdir: str = "") -> list[RemoteFile]:
        """The downloadable files of one article (link-only entries point elsewhere and are left out)."""
        files = []
        for item in self._paged(f"/articles/{article_id}/files"):
            if item.get("is_link_only"):
                continue
            name = Path(item["name"]).name  # never let a listed name climb out of DEST
            files.append(RemoteFile(article_id, int(item["id"]), name, int(item["size"]),
                                    item.get("computed_md5") or item.get("supplied_md5") or "",
                                    item["download_url"], f"{subdir}/{name}" if subdir else name))
        return files

    def collection_articles(self, collection_id: int) -> list[dict]:
        return list(self._paged(f"/collections/{collection_id}/articles"))

    def files_for(self, target: str | int) -> list[RemoteFile]:
        """Files of an article, or of every article of the collection (each under its own folder,
        named like the CLI names them, e.g. ``rtt-train/``)."""
        kind, ident = resolve_target(target)
        if kind == "article":
            return self.article_files(ident)
        names = {v: k for k, v in ARTICLES.items()}
        return [f for article in self.collection_articles(ident)
                for f in self.article_files(article["id"], names.get(article["id"], str(article["id"])))]


def list_files(target: str | int, api_url: str = API_URL, include: Iterable[str] = (),
               options: Options = Options()) -> list[RemoteFile]:
    """The files of an article (or ``all``) whose names match any ``include`` glob (all if none);
    a glob that matches no file is a :class:`DownloadError` naming it (a mistyped pattern would
    otherwise fetch nothing and report success)."""
    patterns = [p for p in include if p]
    files = PortalClient(api_url, options).files_for(target)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(f.name, p) for f in files)]
    if unmatched:
        raise DownloadError(f"--include {' '.join(unmatched)}: matches none of the {len(files)} files of {target}")
    return [f for f in files if not patterns or any(fnmatch.fnmatchcase(f.name, p) for p in patterns)]
