"""YAML documents a person writes (training configs, experiment files, batch grids, notebook
parameters), read safely and strictly: a key given twice in one mapping is an error naming the key
and its lines, not a silent "the last one wins"."""

from __future__ import annotations

import yaml


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a repeated key."""


class RepeatedKey(ValueError):
    """A mapping of the document gives one key twice."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise RepeatedKey(f"the key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def loads(text: str) -> object:
    """The YAML document in ``text`` (safe types only); ValueError, in one line, for bad YAML (where
    it is and what the parser expected there: ``line 2, column 6: expected ',' or ']', but got ':'``)
    or a repeated key."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        said = "; ".join(part for part in (err.problem, err.context) if part) or str(err).splitlines()[0]
        raise ValueError(f"{where}{said}") from None
    except yaml.YAMLError as err:
        raise ValueError(str(err).splitlines()[0]) from None
