"""Kill switches: an operator takes a route's target out of service, and every gateway instance obeys.

A switch is stored where the audit trail is (`store.backend`), so it outlives restarts and reaches every
worker and instance: with the local store, a JSON file in `store.local_dir` that each worker re-reads
when it changes (checked every second); with Redis, a hash under `<key_prefix>routes:disabled`, changes
announced on the `<key_prefix>routes` channel and the hash re-read on every announcement (and every few
seconds, in case one was missed while disconnected). The router reads an immutable snapshot, replaced
whole on each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.tasks import running

log = logging.getLogger(__name__)

SWITCHES_FILE = "route-switches.json"
POLL_S = 1.0
REDIS_RESYNC_S = 5.0

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


def _encode(switches: Snapshot) -> bytes:
    return orjson.dumps([asdict(switch) for switch in sorted(switches.values(), key=lambda s: s.key)])


def _decode(data: bytes) -> dict[Key, Switch]:
    return {switch.key: switch for switch in (Switch(**item) for item in orjson.loads(data) or [])}


class SwitchStore(Protocol):
    async def load(self) -> dict[Key, Switch]: ...

    async def disable(self, switch: Switch) -> None: ...

    async def enable(self, key: Key) -> None: ...

    def watching(self, apply: Callable[[dict[Key, Switch]], None]) -> contextlib.AbstractAsyncContextManager[None]:
        """While open, calls `apply` with the whole new state whenever another worker or instance changes it."""


class LocalSwitchStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / SWITCHES_FILE
        self._lock = asyncio.Lock()

    async def load(self) -> dict[Key, Switch]:
        return await asyncio.to_thread(self._read)

    def _read(self) -> dict[Key, Switch]:
        try:
            return _decode(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError) as exc:
            log.error("%s is not a valid switch file (%s); no target is disabled", self.path, exc)
            return {}

    def _write(self, switches: Snapshot) -> None:
        """Atomically (temp file and rename): a worker reading it sees the old state or the new, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".switches-")
        with os.fdopen(descriptor, "wb") as file:
            file.write(_encode(switches))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    async def disable(self, switch: Switch) -> None:
        async with self._lock:
            switches = await self.load()
            switches[switch.key] = switch
            await asyncio.to_thread(self._write, switches)

    async def enable(self, key: Key) -> None:
        async with self._lock:
            switches = await self.load()
            if switches.pop(key, None) is not None:
                await asyncio.to_thread(self._write, switches)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    @contextlib.asynccontextmanager
    async def watching(self, apply: Callable[[dict[Key, Switch]], None]) -> AsyncIterator[None]:
        async def poll() -> None:
            seen = await asyncio.to_thread(self._stamp)
            while True:
                await asyncio.sleep(POLL_S)
                stamp = await asyncio.to_thread(self._stamp)
                if stamp != seen:
                    seen = stamp
                    apply(await self.load())

        async with running(poll(), "route-switches-watch"):
            yield


class RedisSwitchStore:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - redis loads only with the redis store

        self.key = f"{prefix}routes:disabled"
        self.channel = f"{prefix}routes"
        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    async def load(self) -> dict[Key, Switch]:
        raw = await self.client.hgetall(self.key)
        switches = (Switch(**orjson.loads(value)) for value in raw.values())
        return {switch.key: switch for switch in switches}

    async def disable(self, switch: Switch) -> None:
        await self.client.hset(self.key, f"{switch.model}#{switch.index}", orjson.dumps(asdict(switch)))
        await self.client.publish(self.channel, b"changed")

    async def enable(self, key: Key) -> None:
        await self.client.hdel(self.key, f"{key[0]}#{key[1]}")
        await self.client.publish(self.channel, b"changed")

    @contextlib.asynccontextmanager
    async def watching(self, apply: Callable[[dict[Key, Switch]], None]) -> AsyncIterator[None]:
        async def follow() -> None:
            while True:
                try:
                    async with self.client.pubsub() as pubsub:
                        await pubsub.subscribe(self.channel)
                        apply(await self.load())  # whatever changed while we were not listening
                        next_resync = time.monotonic() + REDIS_RESYNC_S
                        while True:
                            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
                            if message is not None or time.monotonic() >= next_resync:
                                apply(await self.load())
                                next_resync = time.monotonic() + REDIS_RESYNC_S
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - Redis away: keep the last state, try again
                    log.warning("route switches: %s: %s; keeping the last known state", type(exc).__name__, exc)
                    await asyncio.sleep(POLL_S)

        try:
            async with running(follow(), "route-switches-follow"):
                yield
        finally:
            await self.client.aclose()
