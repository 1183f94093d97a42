"""JSON documents read back (evaluations, benchmark results, explanations, job results), checked
for their shape: anything else is one ValueError naming the file and the key; the SHA-256 of a
record's content (:func:`content_sha256`) that tells it edited since it was written (:func:`edited`)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
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


def content_sha256(result: Mapping) -> str:
    """The SHA-256 of a JSON record's content (a job result, history probe or evaluation: its entries
    but ``content_sha256``, as sorted JSON with every number a float), which it records when written:
    an edit made since (by hand, a
    bad merge) is found on reading (:func:`edited`), a reformatting that spells ``1.0`` as ``1`` or with
    other digits of the same number (``jq .``, JavaScript tools) is not. A person can recompute it: it
    tells an accidental edit, not a deliberate one."""
    return sha256_of(_numbers_as_floats({k: v for k, v in result.items() if k != "content_sha256"}))


def edited(doc: Mapping) -> bool:
    """Whether ``doc``'s content is not the one its ``content_sha256`` was taken of (False where it
    records none: whether such a document is trusted is the reader's rule, e.g.
    :meth:`seaice_lib.experiments.spec.Experiment.content_problem`). A document written before
    :func:`content_sha256` read numbers as floats records the SHA-256 of its entries as parsed, which
    holds only while every number keeps its spelling."""
    if "content_sha256" not in doc:
        return False
    return doc["content_sha256"] not in (content_sha256(doc), sha256_of({k: v for k, v in doc.items()
                                                                            if k != "content_sha256"}))


def sha256_of(value) -> str:
    """The SHA-256 of ``value`` as sorted JSON (experiment keys, :func:`content_sha256`)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _numbers_as_floats(value):
    """``value`` (parsed JSON) with every number as a float (``-0`` as ``0``, NaN as null as JSON tools
    write it; an integer too large for a float kept as it is)."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return None if math.isnan(value) else float(value) + 0.0
        except OverflowError:
            return value
    return value
