"""Kill switches: an operator takes a route's target out of service, and every gateway instance obeys.

A switch is stored where the audit trail is (`store.backend`), so it outlives restarts and reaches every
worker and instance (see `shared_table`): with the local store, `store.local_dir/route-switches.json`;
with Redis, a hash under `<key_prefix>routes:disabled` (field `model#index`), changes announced on the
`<key_prefix>routes` channel. The router reads an immutable snapshot, replaced whole on each change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.routing.shared_table import Codec, LocalTable, RedisTable, Table

SWITCHES_FILE = "route-switches.json"

Key = tuple[str, int]  # (public model, target index)


@dataclass(frozen=True, slots=True)
class Switch:
    """A target taken out of service: why, by whom, since when."""

    model: str
    index: int
    target: str
    reason: str
    actor: str
    since: float

    @property
    def key(self) -> Key:
        return (self.model, self.index)


Snapshot = Mapping[Key, Switch]


def _load(item: dict[str, Any]) -> Switch:
    return Switch(**item)


CODEC: Codec[Key, Switch] = Codec(key=lambda switch: switch.key, field=lambda key: f"{key[0]}#{key[1]}", dump=asdict, load=_load)


class SwitchStore:
    """The kill switches in their shared table: `disable` adds one, `enable` lifts it."""

    def __init__(self, table: Table[Key, Switch]) -> None:
        self.table = table

    async def load(self) -> dict[Key, Switch]:
        return await self.table.load()

    async def disable(self, switch: Switch) -> None:
        await self.table.put(switch)

    async def enable(self, key: Key) -> None:
        await self.table.remove(key)

    def watching(self, apply: Callable[[dict[Key, Switch]], None]) -> contextlib.AbstractAsyncContextManager[None]:
        """While open, calls `apply` with the whole new state whenever another worker or instance changes it."""
        return self.table.watching(apply)


class LocalSwitchStore(SwitchStore):
    def __init__(self, directory: Path) -> None:
        self.path = directory / SWITCHES_FILE
        super().__init__(LocalTable(self.path, CODEC, "route-switches"))


class RedisSwitchStore(SwitchStore):
    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(RedisTable(url, f"{prefix}routes:disabled", f"{prefix}routes", CODEC, "route-switches"))
