"""One failure policy for the commands that walk many items (scenes, runs, landed files).

A bad item is named with its error in one line and skipped, the rest go on, and the command ends
non-zero with a summary. An item is bad when its work raises ``ValueError`` (``SceneError`` is
one) or ``OSError``: bad or unreadable data. Anything else is a defect of ours and stops the walk
with its traceback. Used by ``predict``, ``edge-predict``, ``evaluate``, ``patches``, ``figures``
and both ``--follow`` modes (docs/data.md, "Bad items: one failure policy").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from . import logs

T = TypeVar("T")
Item = TypeVar("Item")
ITEM_ERRORS = (ValueError, OSError)
log = logging.getLogger(__name__)


def one_line(err: BaseException) -> str:
    """``err``'s message with its whitespace (newlines included) folded to single spaces."""
    return " ".join(str(err).split()) or type(err).__name__


@dataclass
class Walk:
    """The items done and failed so far; ``report`` gets one line per failure as it happens (a warning
    in the log by default)."""

    noun: str = "items"  # what the items are, plural ("scenes"), for the summary
    report: Callable[[str], None] = log.warning
    label: str = "failed"  # what a failure line starts with ("skipped" where the item is retried later)
    stop_on_failure: bool = False  # raise the first failure instead (library callers without a walk)
    done: list = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "NAME: why", one per failed item
    kept: int = 0  # items done by keeping an output already there (counted in ``done`` too)

    def attempt(self, name: str, work: Callable[[], T]) -> T | None:
        """``work()``; its result is kept in ``done``, or the failure is named, reported and None returned."""
        try:
            result = work()
        except ITEM_ERRORS as err:
            if self.stop_on_failure:
                raise
            self.fail(name, err)
            return None
        self.done.append(result)
        return result

    def fail(self, name: str, err: BaseException | str) -> None:
        """Record that item ``name`` failed with ``err`` (its message names the item unless it already does)."""
        why = one_line(err) if isinstance(err, BaseException) else err
        self.failed.append(why if why.startswith(name) else f"{name}: {why}")
        self.report(f"{self.label}: {self.failed[-1]}")

    def each(self, items: Iterable[Item], work: Callable[[Item], T], name: Callable[[Item], str] = str,
             progress: bool = False, desc: str | None = None) -> list[T]:
        """:meth:`attempt` ``work(item)`` for each item in order; the results of those that worked."""
        before = len(self.done)
        for item in logs.progress_bar(items, desc=desc or self.noun, unit=self.noun.rstrip("s"),
                                      disable=not progress):
            self.attempt(name(item), lambda: work(item))
        return self.done[before:]

    def summary(self, verb: str = "done") -> str:
        """``"2 scenes charted, 1 already there (kept), 1 failed"`` (``done`` holds the kept ones too) and
        one indented line per failure."""
        kept = f", {self.kept} already there (kept)" if self.kept else ""
        lines = [f"{len(self.done) - self.kept} {self.noun} {verb}{kept}, {len(self.failed)} failed"]
        return "\n".join(lines + [f"  {self.label}: {line}" for line in self.failed])

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0
