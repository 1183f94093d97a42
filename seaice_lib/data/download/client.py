"""The figshare API of the DTU Data portal: the AI4Arctic article ids, paged file listings, the
HTTP session and status checks the downloader shares."""

from __future__ import annotations

import fnmatch
import logging
import re
import reprlib
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests

from ... import __version__
from .errors import DownloadError
from .names import name_problem
from .options import Options
from .retry import RetryPolicy, _Retryable, parse_retry_after

log = logging.getLogger(__name__)

API_URL = "https://api.figshare.com/v2"
ARTICLES = {"raw-train": 21284967, "rtt-train": 21316608, "raw-test": 21762848, "rtt-test": 21762830}
COLLECTION = "all"
COLLECTION_ID = 6244065
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"seaice_lib-download/{__version__} python-requests/{requests.__version__}"

Refused = tuple[str | None, str]  # an entry of a listing left out: its name (None if it has none), why


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
    if text.isascii() and text.isdigit():
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
            log.info(message)

    def _paged(self, path: str) -> Iterator[dict]:
        """Every item of a paged listing: ask page after page until one comes back short."""
        page, size = 1, self.options.page_size
        while True:
            items = self._get_json(path, {"page": page, "page_size": size})
            yield from items
            if len(items) < size:
                return
            page += 1

    def article_files(self, article_id: int, subdir: str = "") -> tuple[list[RemoteFile], list[Refused]]:
        """The downloadable files of one article (link-only entries point elsewhere and are left out),
        and the entries refused, each named ``LISTING_URL[index]``: not a mapping, a bad field, a name not
        safe under DEST (:func:`.names.name_problem`) or a name listed before (ignoring case and Unicode
        normalisation, as some file systems do)."""
        listing = f"{self.api_url}/articles/{article_id}/files"
        files: list[RemoteFile] = []
        refused: list[Refused] = []
        seen: dict[str, tuple[int, str]] = {}
        for index, item in enumerate(self._paged(f"/articles/{article_id}/files")):
            if isinstance(item, dict) and item.get("is_link_only"):
                continue
            name = item.get("name") if isinstance(item, dict) else None
            name = name if isinstance(name, str) else None
            try:
                file = _remote_file(item, article_id, subdir)
            except ValueError as err:
                refused.append((name, f"{listing}[{index}]: {err}"))
                continue
            key = unicodedata.normalize("NFC", file.name).casefold()
            if key in seen:
                first, earlier = seen[key]
                refused.append((name, f"{listing}[{index}]: {name!r} names the same file as [{first}] "
                                      f"{earlier!r}, the one fetched"))
                continue
            seen[key] = index, file.name
            files.append(file)
        return files, refused

    def collection_articles(self, collection_id: int) -> list[dict]:
        return list(self._paged(f"/collections/{collection_id}/articles"))

    def files_for(self, target: str | int) -> tuple[list[RemoteFile], list[Refused]]:
        """Files of an article, or of every article of the collection (each under its own folder,
        named like the CLI names them, e.g. ``rtt-train/``), and the entries refused."""
        kind, ident = resolve_target(target)
        if kind == "article":
            return self.article_files(ident)
        names = {v: k for k, v in ARTICLES.items()}
        listing = f"{self.api_url}/collections/{ident}/articles"
        files: list[RemoteFile] = []
        refused: list[Refused] = []
        seen: set[int] = set()
        for index, article in enumerate(self.collection_articles(ident)):
            article_id = article.get("id") if isinstance(article, dict) else None
            if type(article_id) is not int or article_id < 0:  # a bool is an int, and is no id
                refused.append((None, f"{listing}[{index}]: not an article with a numeric id: "
                                      f"{reprlib.repr(article)}"))
            elif article_id in seen:
                refused.append((None, f"{listing}[{index}]: article {article_id} is listed again"))
            else:
                seen.add(article_id)
                more, bad = self.article_files(article_id, names.get(article_id, str(article_id)))
                files += more
                refused += bad
        return files, refused


def _remote_file(item: object, article_id: int, subdir: str) -> RemoteFile:
    """One entry of an article's file list; ValueError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError(f"not a file record (a mapping): {reprlib.repr(item)}")
    name = item.get("name")
    if not isinstance(name, str):
        raise ValueError(f"name {reprlib.repr(name)} is not a string")
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    for key in ("id", "size"):
        if type(item.get(key)) is not int or item[key] < 0:
            raise ValueError(f"{name!r}: {key} {reprlib.repr(item.get(key))} is not a whole number >= 0")
    url = item.get("download_url")
    if not isinstance(url, str) or not re.match(r"https?://", url):
        raise ValueError(f"{name!r}: download_url {reprlib.repr(url)} is not an http(s) URL")
    md5 = item.get("computed_md5") or item.get("supplied_md5")
    if not md5:  # a file that could not be verified would be taken on its size alone
        raise ValueError(f"{name!r}: the listing gives no md5 (computed_md5, supplied_md5), so the file cannot be verified")
    if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise ValueError(f"{name!r}: md5 {reprlib.repr(md5)} is not 32 hex digits")
    return RemoteFile(article_id, item["id"], name, item["size"], md5.lower(), url,
                      f"{subdir}/{name}" if subdir else name)


def list_files(target: str | int, api_url: str = API_URL, include: Iterable[str] = (),
               options: Options = Options()) -> list[RemoteFile]:
    """The files of an article (or ``all``) whose names match any ``include`` glob (all if none);
    a glob that matches no file is a :class:`DownloadError` naming it (a mistyped pattern would
    otherwise fetch nothing and report success). An entry of the listing that cannot be fetched
    safely is left out with a warning naming it."""
    files, refused = select_files(target, api_url, include, options)
    for _, why in refused:
        log.warning("warning: left out %s", why)
    return files


def selected(name: str, include: Iterable[str]) -> bool:
    """Whether the ``include`` globs select the file name ``name`` (any may match; all when none)."""
    patterns = [p for p in include if p]
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_files(target: str | int, api_url: str = API_URL, include: Iterable[str] = (),
                 options: Options = Options()) -> tuple[list[RemoteFile], list[Refused]]:
    """:func:`list_files`, and apart the entries it leaves out, each its name (None without one) and
    a line naming the listing, the entry and why (those ``include`` selects, and those without a name)."""
    patterns = [p for p in include if p]
    files, refused = PortalClient(api_url, options).files_for(target)
    names = [f.name for f in files] + [name for name, _ in refused if name is not None]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise DownloadError(f"include {' '.join(unmatched)}: matches none of the {len(files)} files of {target}")
    return ([f for f in files if selected(f.name, patterns)],
            [(name, why) for name, why in refused if name is None or selected(name, patterns)])
