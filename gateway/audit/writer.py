"""The audit writer: records leave the request path at once and reach their backend in order, or the spool.

Handlers only `submit()` (an append to a deque, never awaited). One background task, owned by the app's
lifecycle, takes what has gathered, seals it into this instance's hash chain (in a worker thread: JSON and
sha256 for hundreds of records must not hold up the event loop), and hands the lines to the backend.

When the backend is unavailable (Redis down or slow), sealed lines go to the durable local spool instead,
and keep going there, in order, until a probe finds the backend back and the spool has been replayed into
it: so each instance's chain reaches the stream in sealing order. Records are never dropped: when even the
spool is full they wait in memory, and `accepting()` turns false so the pipeline applies
`audit.on_unavailable` (`closed`: refuse new exchanges with 503; `open`: serve them anyway, counted).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.audit.backends import AUDIT_FILE, AuditBackend, BackendUnavailable
from gateway.audit.chain import ChainState
from gateway.audit.record import AuditRecord
from gateway.audit.spool import Spool, SpoolFull, SpoolInUse
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["AUDIT_FILE", "AuditSink", "AuditWriter", "open_spool"]

# After a wake-up the writer lets records gather this long, so that under load one write (and one fsync
# or one Redis round trip) carries hundreds of records instead of one or two.
BATCH_LINGER_S = 0.02
BATCH_MAX = 1000
PROBE_INTERVAL_S = 1.0  # while the backend is unavailable, how often to ask whether it is back
REPLAY_BATCH = 500
MAX_SPOOL_SLOTS = 256


class AuditSink(Protocol):
    def submit(self, record: AuditRecord) -> None:
        """Queue one record; must not block or raise."""

    def accepting(self) -> bool:
        """False when the backlog is over its bound (the pipeline applies `on_unavailable`)."""

    def state(self) -> str:
        """`ok`, `spooling` (backend unavailable, records safe in the spool) or `backlogged` (not accepting)."""


def open_spool(directory: Path, max_bytes: int) -> Spool:
    """The first spool slot no live process holds (`slot-0`, `slot-1`...). A worker that died leaves its
    slot unlocked with its records in it: the next worker to start adopts the slot and replays them."""
    for slot in range(MAX_SPOOL_SLOTS):
        try:
            return Spool(directory / f"slot-{slot}", max_bytes=max_bytes)
        except SpoolInUse:
            continue
    raise RuntimeError(f"{directory}: all {MAX_SPOOL_SLOTS} audit spool slots are in use")


def _as_dict(record: AuditRecord | dict[str, Any]) -> dict[str, Any]:
    if isinstance(record, dict):
        return dict(record)
    return {name: getattr(record, name) for name in AuditRecord.__slots__}


class AuditWriter:
    def __init__(
        self,
        backend: AuditBackend,
        *,
        queue_size: int,
        metrics: Metrics | None = None,
        spool: Callable[[], Spool] | None = None,
        chain: ChainState | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self._queue_size = queue_size
        self._spool_factory = spool
        self._spool: Spool | None = None
        self._chain = chain or ChainState()
        self._pending: collections.deque[AuditRecord | dict[str, Any]] = collections.deque()
        self._sealed: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._down = False  # the backend failed: lines go to the spool until a probe finds it back
        self._next_probe = 0.0
        self.written = 0
        self.spooled = 0
        self.replayed = 0

    # -- the request path -------------------------------------------------------------------------------
    def submit(self, record: AuditRecord | dict[str, Any]) -> None:
        self._pending.append(record)
        self._wakeup.set()

    def accepting(self) -> bool:
        return len(self._pending) + len(self._sealed) < self._queue_size

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._sealed)

    @property
    def backend_available(self) -> bool:
        return not self._down

    def state(self) -> str:
        if not self.accepting():
            return "backlogged"
        return "spooling" if self._down else "ok"

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.backend.open()
        if self._spool_factory is not None:
            self._spool = await asyncio.to_thread(self._spool_factory)
            if not self._spool.is_empty:
                log.warning("audit: %d bytes of spooled records from an earlier run; replaying them first", self._spool.pending_bytes)
                self._down = True  # replay before anything new, so chains stay in order
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Deliver (or spool) everything submitted so far, then stop: called last on shutdown."""
        if self._task is not None:
            # Let the task finish rather than cancel it: a batch in flight must not be delivered twice.
            self._closing = True
            self._wakeup.set()
            await self._task
        await self._cycle(final=True)
        if self._sealed:
            log.error("audit: %d records could not be stored anywhere at shutdown", len(self._sealed))
        await self.backend.close()
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)

    # -- the background task ----------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing:
            timeout = PROBE_INTERVAL_S if (self._down or self._sealed) else None
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            if self._closing:
                break
            await asyncio.sleep(BATCH_LINGER_S)
            self._wakeup.clear()
            try:
                await self._cycle(final=False)
            except Exception:  # noqa: BLE001 - the writer must outlive any one failure; records stay queued
                log.exception("audit writer cycle failed; retrying")
                await asyncio.sleep(PROBE_INTERVAL_S)
            self._publish()

    async def _cycle(self, *, final: bool) -> None:
        """Replay the spool if the backend is back, then seal and store batch by batch.

        One batch is sealed and delivered before the next is sealed: under sustained load the queue never
        empties, and sealing everything first would leave sealed records waiting while new ones arrive.
        """
        if self._down and (final or time.monotonic() >= self._next_probe):
            await self._recover()
        direct: Callable[[list[bytes]], None] | None = getattr(self.backend, "write_blocking", None)
        while self._pending or self._sealed:
            if direct is not None and not self._sealed and not self._down:
                await self._seal_and_store(direct)  # the common case: one hand-off to the thread per batch
                continue
            if self._pending and len(self._sealed) < BATCH_MAX:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), BATCH_MAX))]
                self._sealed.extend(await asyncio.to_thread(self._seal, batch))
            lines = [self._sealed[index] for index in range(min(len(self._sealed), BATCH_MAX))]
            if not await self._deliver(lines, final=final):
                return  # kept, in order, in memory; retried on the next cycle
            for _ in lines:
                self._sealed.popleft()

    async def _seal_and_store(self, write: Callable[[list[bytes]], None]) -> None:
        batch = [self._pending.popleft() for _ in range(min(len(self._pending), BATCH_MAX))]

        def seal_and_write() -> tuple[list[bytes], BackendUnavailable | None]:
            lines = self._seal(batch)
            try:
                write(lines)
            except BackendUnavailable as exc:
                return lines, exc
            return lines, None

        started = time.perf_counter()
        lines, failure = await asyncio.to_thread(seal_and_write)
        if failure is not None:
            self._sealed.extend(lines)  # sealed, in order: stored by the next cycle or kept in memory
            self._mark_down(str(failure))
            return
        self.written += len(lines)
        if self.metrics is not None:
            self.metrics.audit_written(self.backend.name, len(lines), time.perf_counter() - started)

    def _seal(self, batch: list[AuditRecord | dict[str, Any]]) -> list[bytes]:
        """Runs in a worker thread; sealing order is chain order, so one batch at a time, in order."""
        seal = self._chain.seal_json
        return [seal(_as_dict(record)) for record in batch]

    async def _deliver(self, lines: list[bytes], *, final: bool) -> bool:
        """True when the lines are stored (backend or spool); False leaves them queued in memory."""
        spool = self._spool
        if not self._down and (spool is None or spool.is_empty):
            started = time.perf_counter()
            try:
                await self.backend.write(lines)
            except BackendUnavailable as exc:
                self._mark_down(str(exc))
            else:
                self.written += len(lines)
                if self.metrics is not None:
                    self.metrics.audit_written(self.backend.name, len(lines), time.perf_counter() - started)
                return True
        if spool is None:
            return False  # the local file failed (disk full?): kept in memory, retried every second
        try:
            if final:  # at shutdown the bound yields: it limits admission, never what was already accepted
                spool.max_bytes = max(spool.max_bytes, spool.stored_bytes + sum(len(line) + 1 for line in lines))
            await asyncio.to_thread(spool.append, lines)
        except SpoolFull:
            return False
        self.spooled += len(lines)
        if self.metrics is not None:
            self.metrics.audit_spooled(len(lines))
        return True

    def _mark_down(self, reason: str) -> None:
        if not self._down:
            keeping = "spooling records" if self._spool is not None else "keeping records in memory"
            log.warning("audit backend %s unavailable (%s): %s until it is back", self.backend.name, reason, keeping)
        self._down = True
        self._next_probe = time.monotonic() + PROBE_INTERVAL_S

    async def _recover(self) -> None:
        """The backend answered again: replay the spool into it, oldest first, then write directly."""
        self._next_probe = time.monotonic() + PROBE_INTERVAL_S
        if not await self.backend.available():
            return
        spool = self._spool
        while spool is not None and not spool.is_empty:
            lines = await asyncio.to_thread(spool.peek, REPLAY_BATCH)
            if not lines:
                break
            try:
                await self.backend.write(lines)
            except BackendUnavailable as exc:
                self._mark_down(str(exc))
                return
            await asyncio.to_thread(spool.ack, len(lines))
            self.replayed += len(lines)
            if self.metrics is not None:
                self.metrics.audit_replayed(len(lines))
        if self._down:
            log.info("audit backend %s is back; spool replayed (%d records so far)", self.backend.name, self.replayed)
        self._down = False

    def _publish(self) -> None:
        if self.metrics is not None:
            spool_bytes = self._spool.pending_bytes if self._spool is not None else 0
            self.metrics.audit_state(self.backlog, spool_bytes, not self._down)
