"""A value that must never leak into logs, errors or reprs (provider API keys, HMAC keys)."""

from __future__ import annotations


class Secret:
    """Wraps a sensitive string; only `reveal()` returns it, every other view is masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The raw value: call only where it leaves the process on purpose (an upstream header)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # Workers are spawned processes: the config (and its secrets) must cross that boundary.
        return (Secret, (self._value,))
