"""Command-line parsing shared by every stage: a parser that refuses an option given twice (the
last value would otherwise win unseen), and the same rule for repeated KEY VALUE options."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class UsageError(ValueError):
    """A problem of the command line or of a config it names that a stage finds only once it runs (a
    config entry the model refuses): ``seaice`` reports it as it reports usage errors, one line and
    exit status 2 (with ``--debug``, the traceback)."""


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class _StoreOnce(argparse._StoreAction):
    """argparse's ``store``, refusing an option given a second time (the last value would win unseen)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        assert isinstance(parser, Parser)  # the only parser that registers this action
        given = parser.given
        if option_string is not None and self in given:
            raise argparse.ArgumentError(self, f"given twice ({given[self]}, then {_shown(values)}): give it once")
        given[self] = _shown(values)
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """The parser of every stage (and of their sub-commands): an option that takes a value, given
    twice, is a usage error naming it and both values, whatever its spelling (``-p``/``--parameter``).
    Options made to be repeated (``action="append"`` or ``"extend"``) add up; a stage that reads
    them as KEY VALUE pairs refuses a key given twice itself (:func:`once_each`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)  # argument groups share the registry
        self.register("action", "store", _StoreOnce)
        self.given: dict[argparse.Action, str] = {}  # option -> its value, while parsing

    def parse_known_args(self, args=None, namespace=None):
        self.given = {}
        return super().parse_known_args(args, namespace)


def once_each(option: str, pairs: Iterable[tuple[str, T]]) -> dict[str, T]:
    """``pairs`` (KEY, VALUE) of a repeated ``option`` (``-p NAME VALUE``, ``--set KEY=VALUE``) as a
    mapping; ValueError naming the option, the key and both values when a key is given twice."""
    out: dict[str, T] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{option} {key} given twice ({out[key]}, then {value}): give it once")
        out[key] = value
    return out
