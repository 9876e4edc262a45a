"""YAML that remembers where things were written, so an error can name the line.

Mappings load as `LineDict`: a dict that also knows the line of itself and of each key. Call
`plain()` before handing the data to anything that should not see the subclass.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class LineDict(dict):
    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python objects from YAML tags) that records line numbers, and reads
    booleans as YAML 1.2 does: only true and false. YAML 1.1 also reads on, off, yes and no
    as booleans, which would turn a rule's `on:` key into True and `mode: off` into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            )
        data.key_lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node, deep=True)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Any:
    data = LineList()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class YamlError(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _hint(problem: str) -> str:
    """What the parser's words usually mean in a rule file."""
    if "'\\t'" in problem or "\\t" in problem:
        return " (a tab: indent with spaces only)"
    if "expected <block end>" in problem or "mapping values are not allowed" in problem or "could not find expected ':'" in problem:
        return " (check this line's indentation against the lines above: keys of one mapping, and items of one list, line up)"
    if "expected ',' or '}'" in problem or "expected ',' or ']'" in problem:
        return " (inside { } or [ ], entries are separated by commas and the brackets must close)"
    return ""


def load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlError(line, f"not valid YAML: {exc.problem or exc}{_hint(str(exc.problem or exc))}") from None
    except yaml.YAMLError as exc:
        raise YamlError(0, f"not valid YAML: {exc}") from None


def line_of(value: Any, default: int = 0) -> int:
    return getattr(value, "line", default) or default


def plain(value: Any) -> Any:
    """The same data as built-in dicts and lists."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def with_lines(items: Any) -> list[dict[str, Any]]:
    """Plain copies of a list of mappings, each with the line it was written on as "line"."""
    if not isinstance(items, list):
        return []
    return [{**plain(item), "line": line_of(item)} for item in items if isinstance(item, dict)]
