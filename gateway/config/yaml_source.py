"""YAML loading that remembers where every key came from, so errors can say `file:line: key`.

Policy files (and `gateway.yaml`) are written by people; an error that names the line saves them a hunt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class LineMap(dict):  # type: ignore[type-arg]
    """A mapping from YAML that also knows the line of each key (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}
        self.line = 0


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that builds `LineMap`s and rejects duplicate keys (YAML would silently keep the last)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMap:
    loader.flatten_mapping(node)
    mapping = LineMap()
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.MarkedYAMLError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# YAML 1.1 reads on/off/yes/no as booleans, so the documented `reload: off` (or a policy's `mode: off`) would
# arrive as False. As in YAML 1.2, only true/false are booleans here; every other word stays a string.
# Nor are there implicit timestamps (also gone in YAML 1.2): a policy's `until: 2025-07-01T00:00:00Z` stays the
# text it was written as, which the loader checks (zone required) and `policy diff` shows unchanged.
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class YamlError(ValueError):
    """A file that is not valid YAML; the message is `file:line: problem`."""


def load_yaml_text(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlError(f"{source}:{line}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: {exc}") from None


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError(f"{path}: not valid UTF-8") from None
    return load_yaml_text(text, str(path))
