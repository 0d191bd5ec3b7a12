"""Reads one YAML mapping into typed values, tracking which keys were used so leftovers are errors.

Every error names the file, the line and the dotted key path, e.g.
`gateway.yaml:14: providers.openai.kind: must be one of mock, openai (got 'opneai')`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from gateway.config.yaml_source import LineMap

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_MISSING = object()


def _yaml_type(value: Any) -> str:
    """The YAML name of a value's type, for messages written to people who wrote YAML."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


class ConfigError(ValueError):
    """An invalid configuration; str() is a complete one-line explanation."""


class Section:
    """A view of one mapping at `path` in `source`; call `finish()` once every key was read."""

    interpolate = True  # `${VAR}` references in strings; policy files turn this off (see PolicySection)

    def __init__(self, data: Any, path: str, source: str, line: int = 0) -> None:
        if data is None:
            data = LineMap()
        if not isinstance(data, dict):
            self._fail_at(source, line, path, f"must be a mapping (got {_yaml_type(data)})")
        self.data = data
        self.path = path
        self.source = source
        self.line = getattr(data, "line", 0) or line
        self._used: set[str] = set()

    # -- errors -------------------------------------------------------------------------------------
    @staticmethod
    def _fail_at(source: str, line: int, path: str, problem: str) -> NoReturn:
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | None, problem: str) -> NoReturn:
        line = self.data.key_lines.get(key, self.line) if isinstance(self.data, LineMap) else self.line
        self._fail_at(self.source, line, self.key_path(key) if key else self.path, problem)

    # -- typed getters ------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.data

    def _raw(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                self.fail(key, "is required")
            return default
        value = self.data[key]
        return self._interpolate(key, value) if self.interpolate and isinstance(value, str) else value

    def _interpolate(self, key: str, value: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name, fallback = match.group(1), match.group(2)
            env = os.environ.get(name)
            if env is None or (not env and fallback is not None):  # `:-` as in the shell: unset or empty
                if fallback is None:
                    self.fail(key, f"environment variable {name} is not set")
                return fallback
            return env

        return _ENV_REF.sub(substitute, value) if "${" in value else value

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value, for keys whose type the caller checks itself (a string or a list of them)."""
        return self._raw(key, default)

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if value is not default and not isinstance(value, str):
            self.fail(key, f"must be a string (got {value!r})")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if value is not default and value not in options:
            self.fail(key, f"must be one of {', '.join(options)} (got {value!r})")
        return value

    def number(self, key: str, default: Any = _MISSING, *, minimum: float = 0, integer: bool = False) -> Any:
        value = self._raw(key, default)
        if value is default:
            return value
        if isinstance(value, str):  # `${ENV}` values arrive as strings
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                self.fail(key, f"must be a number (got {value!r})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number (got {value!r})")
        if integer and value != int(value):
            self.fail(key, f"must be a whole number (got {value!r})")
        if value < minimum:
            self.fail(key, f"must be at least {minimum} (got {value!r})")
        return int(value) if integer else float(value)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int = 0) -> Any:
        return self.number(key, default, minimum=minimum, integer=True)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if value is not default and not isinstance(value, bool):
            self.fail(key, f"must be true or false (got {value!r})")
        return value

    def string_map(self, key: str) -> dict[str, str]:
        value = self._raw(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
            self.fail(key, "must be a mapping of names to strings")
        child = type(self)(value, self.key_path(key), self.source)
        return {str(name): str(child._raw(name, "")) for name in value}

    def sequence(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if value is not default and not isinstance(value, list):
            self.fail(key, f"must be a list (got {_yaml_type(value)})")
        return value

    def section(self, key: str) -> Section:
        self._used.add(key)
        line = self.data.key_lines.get(key, self.line) if isinstance(self.data, LineMap) else self.line
        return type(self)(self.data.get(key), self.key_path(key), self.source, line)

    def sections(self, key: str) -> Iterator[tuple[str, Section]]:
        """Each entry of a mapping of named sections (providers, models)."""
        parent = self.section(key)
        for name in parent.data:
            yield str(name), parent.section(str(name))

    def items(self, key: str, read: Callable[[Section], T]) -> list[T]:
        """Each entry of a list of mappings (route targets)."""
        entries = self.sequence(key, [])
        path = self.key_path(key)
        return [read(type(self)(entry, f"{path}[{index}]", self.source, self.line)) for index, entry in enumerate(entries)]

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must never be silently ignored."""
        unknown = [str(key) for key in self.data if str(key) not in self._used]
        if unknown:
            self.fail(unknown[0], "unknown key")
