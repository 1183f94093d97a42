"""How to download: the knobs every part reads (sizes in bytes, times in seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DAY = 86400.0  # seconds: the longest timeout, backoff or log interval (longer ones overflow the clocks)


@dataclass(frozen=True)
class Options:
    """How to download; sizes in bytes, times in seconds. ``progress``: "bars", "log" or "off"."""

    workers: int = 4
    timeout: float = 60.0
    retries: int = 8
    backoff: float = 1.0
    max_backoff: float = 60.0
    chunk_size: int = 1 << 20
    segment_size: int = 256 << 20
    page_size: int = 100
    progress: Literal["bars", "log", "off"] = "bars"
    log_every: float = 30.0
    wait: bool = False

    def __post_init__(self) -> None:
        def seconds(value: float, zero: bool = False) -> bool:
            return (0 <= value if zero else 0 < value) and value <= DAY  # NaN fails both

        rules = [("workers", self.workers >= 1, "at least 1"), ("retries", self.retries >= 0, "at least 0"),
                 ("timeout", seconds(self.timeout), "more than 0 and at most a day (86400 s)"),
                 ("backoff", seconds(self.backoff, zero=True), "0 to a day (86400 s)"),
                 ("max backoff", seconds(self.max_backoff, zero=True), "0 to a day (86400 s)"),
                 ("log every", seconds(self.log_every), "more than 0 and at most a day (86400 s)"),
                 ("chunk size", self.chunk_size >= 1, "positive"),
                 ("segment size", self.segment_size >= 0, "at least 0 (0: never split)"),
                 ("page size", 1 <= self.page_size <= 1000, "1 to 1000"),
                 ("progress", self.progress in {"bars", "log", "off"}, "'bars', 'log' or 'off'")]
        problems = [f"{name} must be {rule}" for name, ok, rule in rules if not ok]
        if problems:
            raise ValueError("; ".join(problems))
