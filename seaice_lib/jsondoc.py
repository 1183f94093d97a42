"""JSON documents read back (evaluations, benchmark results, explanations, job results), checked
for their shape: anything else is one ValueError naming the file and the key."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

MISSING = object()  # a key a JSON mapping lacks
KINDS = {None: "null", dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
         bool: "true or false"}


@dataclass(frozen=True)
class Number:
    """A shape: a finite number (``kind`` int: an integer) of at least ``least`` (above it where ``above``)."""

    kind: type = float
    least: float = 0
    above: bool = False

    def fits(self, value) -> bool:
        return (_fits(value, self.kind) and math.isfinite(value)
                and (value > self.least if self.above else value >= self.least))

    def __str__(self) -> str:
        return f"{'an integer' if self.kind is int else 'a finite number'} {'above' if self.above else 'of at least'} " \
            f"{self.least:g}"


POSITIVE, NON_NEGATIVE, COUNT = Number(above=True), Number(), Number(int, 1)


def read_json(path: str | Path, shape=dict):
    """The JSON document in ``path``, of ``shape`` (:func:`check_shape`); ValueError naming the file
    (and the key) for anything else."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON (truncated?): {err}") from None
    check_shape(doc, shape, str(path))
    return doc


def _kind(shape) -> str:
    if isinstance(shape, Number):
        return str(shape)
    return KINDS[dict if isinstance(shape, dict) else list if isinstance(shape, list) else shape]


def _fits(value, one) -> bool:
    if isinstance(one, Number):
        return one.fits(value)
    if one is None:
        return value is None or value is MISSING
    return (isinstance(one, type) and isinstance(value, (int, float) if one is float else one)
            and (one is bool or not isinstance(value, bool)))


def check_shape(value, shape, where: str, key: str = "") -> None:
    """ValueError ``WHERE: KEY must be ...`` unless ``value`` has ``shape``: a type (``float``: any
    number; a bool is no number), None (null or missing), a tuple (any of its shapes), a dict (a
    mapping with these keys, ``"*"`` every key), a one-item list (a list of such items) or a
    :class:`Number` (a number of these values)."""
    shapes = shape if isinstance(shape, tuple) else (shape,)
    for one in shapes:
        if isinstance(one, dict) and isinstance(value, dict):
            for name, inner in one.items():
                for k in value if name == "*" else (name,):
                    check_shape(value.get(k, MISSING), inner, where, f"{key}.{k}" if key else str(k))
            return
        if isinstance(one, list) and isinstance(value, list):
            for i, item in enumerate(value):
                check_shape(item, one[0], where, f"{key}[{i}]")
            return
        if _fits(value, one):
            return
    want = " or ".join(map(_kind, shapes))
    if value is MISSING:
        raise ValueError(f"{where}: no {key} (must be {want})")
    found = _kind(None if value is None else type(value))
    if any(isinstance(one, Number) for one in shapes) and _fits(value, float):
        found = repr(value)  # a number of another value: say which
    raise ValueError(f"{where}: {key} must be {want}, not {found}" if key else f"{where}: holds {found}, not {want}")
