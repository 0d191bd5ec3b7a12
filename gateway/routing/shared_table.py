"""A small table of operator switches, shared by every worker and instance through the store.

Route kill switches and incident switches are both a handful of entries that operators change rarely and
every request reads. They are kept where the audit trail is (`store.backend`), so they outlive restarts
and reach every worker and instance:

* with the local store, a JSON file (a list of entries) in `store.local_dir`, replaced atomically on each
  change and re-read by every worker when it changes (checked every second);
* with Redis, a hash with one field per entry; every change is announced on a channel, and the hash is
  re-read on every announcement (and every few seconds, in case one was missed while disconnected).

Readers get the whole new state each time and replace their snapshot whole, so a request never sees half
a change. What an entry is, and how it is keyed and serialised, is the `Codec`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import orjson

from gateway.tasks import running

log = logging.getLogger(__name__)

POLL_S = 1.0
REDIS_RESYNC_S = 5.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Codec(Generic[K, V]):
    """How one kind of entry is keyed and stored."""

    key: Callable[[V], K]  # the entry's key in the table (one entry per key)
    field: Callable[[K], str]  # the key as a Redis hash field (and the file's sort order)
    dump: Callable[[V], dict[str, Any]]
    load: Callable[[dict[str, Any]], V]


class Table(Protocol[K, V]):
    async def load(self) -> dict[K, V]: ...

    async def put(self, entry: V) -> None:
        """Add the entry, replacing the one with the same key."""

    async def remove(self, key: K) -> None: ...

    def watching(self, apply: Callable[[dict[K, V]], None]) -> contextlib.AbstractAsyncContextManager[None]:
        """While open, calls `apply` with the whole new state whenever another worker or instance changes it."""


class LocalTable(Generic[K, V]):
    """The table as a JSON file: shared by the workers of one instance (and instances on one disk)."""

    def __init__(self, path: Path, codec: Codec[K, V], name: str) -> None:
        self.path = path
        self.codec = codec
        self.name = name  # for logs and task names, e.g. "route-switches"

    async def load(self) -> dict[K, V]:
        return await asyncio.to_thread(self._read)

    async def put(self, entry: V) -> None:
        def change(entries: dict[K, V]) -> bool:
            entries[self.codec.key(entry)] = entry
            return True

        await asyncio.to_thread(self._update, change)

    async def remove(self, key: K) -> None:
        await asyncio.to_thread(self._update, lambda entries: entries.pop(key, None) is not None)

    def _read(self) -> dict[K, V]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            entries = (self.codec.load(item) for item in orjson.loads(data) or [])
            return {self.codec.key(entry): entry for entry in entries}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("%s is not a valid %s file (%s); read as empty", self.path, self.name, exc)
            return {}

    def _update(self, change: Callable[[dict[K, V]], bool]) -> None:
        """Read, change and write under an exclusive lock on a side file, so two workers changing the table
        at the same moment both land (the atomic rename alone would keep only the last writer's view)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            entries = self._read()
            if change(entries):
                self._write(entries)

    def _write(self, entries: dict[K, V]) -> None:
        """Atomically (temp file and rename): a worker reading it sees the old state or the new, never half."""
        codec = self.codec
        ordered = sorted(entries.items(), key=lambda item: codec.field(item[0]))
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.name}-")
        with os.fdopen(descriptor, "wb") as file:
            file.write(orjson.dumps([codec.dump(entry) for _, entry in ordered]))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def _stamp(self) -> tuple[int, int, int] | None:
        """Changes with every write: each one renames a new file (inode) into place."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @contextlib.asynccontextmanager
    async def watching(self, apply: Callable[[dict[K, V]], None]) -> AsyncIterator[None]:
        async def poll() -> None:
            seen = await asyncio.to_thread(self._stamp)
            while True:
                await asyncio.sleep(POLL_S)
                stamp = await asyncio.to_thread(self._stamp)
                if stamp != seen:
                    seen = stamp
                    apply(await self.load())

        async with running(poll(), f"{self.name}-watch"):
            yield


class RedisTable(Generic[K, V]):
    """The table as a Redis hash with a change channel: shared by every instance on that Redis."""

    def __init__(self, url: str, key: str, channel: str, codec: Codec[K, V], name: str) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - redis loads only with the redis store

        self.key = key
        self.channel = channel
        self.codec = codec
        self.name = name
        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    async def load(self) -> dict[K, V]:
        raw = await self.client.hgetall(self.key)
        entries = (self.codec.load(orjson.loads(value)) for value in raw.values())
        return {self.codec.key(entry): entry for entry in entries}

    async def put(self, entry: V) -> None:
        field = self.codec.field(self.codec.key(entry))
        await self.client.hset(self.key, field, orjson.dumps(self.codec.dump(entry)))
        await self.client.publish(self.channel, b"changed")

    async def remove(self, key: K) -> None:
        await self.client.hdel(self.key, self.codec.field(key))
        await self.client.publish(self.channel, b"changed")

    @contextlib.asynccontextmanager
    async def watching(self, apply: Callable[[dict[K, V]], None]) -> AsyncIterator[None]:
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
                    log.warning("%s: %s: %s; keeping the last known state", self.name, type(exc).__name__, exc)
                    await asyncio.sleep(POLL_S)

        try:
            async with running(follow(), f"{self.name}-follow"):
                yield
        finally:
            await self.client.aclose()
