"""The local backend's review queue: one SQLite file in `store.local_dir`, shared by every worker.

Why a file and not a dict in the process: `gateway serve --workers N` runs N processes behind one port, and
the request waiting for a review, the reviewer's decision and the app's later fetch may each land on a
different worker. One file, with every change made inside one `BEGIN IMMEDIATE` transaction, gives all
workers the same queue with the same guarantees as the Redis store (two workers never both claim, decide
or expire an item), and a queue that survives a restart. SQLite is in the standard library and is built
for exactly this: several processes of one host sharing small, transactional state.

Calls run in worker threads (SQLite is blocking I/O), each thread with its own connection. Reviews are
human-paced, so the cost per call (a thread hand-off and a small transaction) is irrelevant next to the
request they hold. A request waiting for a decision re-reads its item every `poll_s` (decisions made by
another worker cannot wake it otherwise) and at once when a decision is made in its own process.

The file holds one row per item: the whole item as JSON, plus the columns listings, deadlines and
retention are indexed by.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.review.store import (
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_RETENTION_S,
    LIVE,
    Clock,
    ReviewItem,
    ReviewNotFound,
    Waiters,
    begin_resume_item,
    check_claim,
    check_state,
    claim_item,
    conflict,
    decide_item,
    decision_record,
    forget_item,
    result_item,
)

T = TypeVar("T")

REVIEWS_FILE = "reviews.sqlite3"
POLL_S = 0.25  # how often a waiting request re-reads its item (decisions made by other workers)
BUSY_TIMEOUT_S = 10.0  # how long a transaction waits for another worker's to finish

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    deadline REAL NOT NULL,
    finished REAL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_state ON reviews (state, queue, created);
CREATE INDEX IF NOT EXISTS reviews_by_deadline ON reviews (state, deadline);
CREATE INDEX IF NOT EXISTS reviews_by_finish ON reviews (finished);
"""
_LIVE = tuple(sorted(LIVE))
_LIVE_SQL = ", ".join("?" for _ in _LIVE)


class LocalReviewStore:
    """The review queue of one gateway instance (see the module docstring)."""

    def __init__(
        self, directory: Path, max_deliveries: int = DEFAULT_MAX_DELIVERIES, *, retention_s: float = DEFAULT_RETENTION_S,
        clock: Clock = time.time, poll_s: float = POLL_S,
    ) -> None:
        self.path = directory / REVIEWS_FILE
        self.max_deliveries = max_deliveries
        self.retention_s = retention_s
        self._clock = clock
        self._poll_s = poll_s
        self._waiters = Waiters()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        # Calls still running in a thread (a cancelled task's call runs on): `close` waits for them, since
        # closing a connection under a running statement crashes the process.
        self._calls = threading.Condition()
        self._running = 0
        self._closed = False

    # -- the file ---------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: transactions are explicit), made on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")  # durable across a crashed process; WAL keeps it consistent
            with self._lock:
                if not self._ready:
                    _use_wal(connection)  # a property of the file: once, before any other connection writes
                    connection.executescript(_SCHEMA)
                    self._ready = True
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on this thread's connection, counted, so that `close` can wait for it."""
        with self._calls:
            if self._closed:
                raise RuntimeError("the review store is closed")
            self._running += 1
        try:
            return work(self._connection())
        finally:
            with self._calls:
                self._running -= 1
                self._calls.notify_all()

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call, work)

    async def _change(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` inside one write transaction: what it read cannot change under it before it commits."""

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return await asyncio.to_thread(self._call, transaction)

    def _load(self, connection: sqlite3.Connection, id: str) -> ReviewItem:
        row = connection.execute("SELECT item FROM reviews WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise ReviewNotFound(id)
        return ReviewItem.from_json(row[0])

    def _save(self, connection: sqlite3.Connection, item: ReviewItem) -> None:
        connection.execute(
            "UPDATE reviews SET state = ?, finished = ?, item = ? WHERE id = ?",
            (item.state, item.finished_at if item.final else None, item.to_json().decode(), item.id),
        )

    # -- the store interface ------------------------------------------------------------------------------
    async def create(self, item: ReviewItem) -> None:
        def insert(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(
                    "INSERT INTO reviews (id, queue, state, created, deadline, finished, item) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item.id, item.queue, item.state, item.created, item.deadline, item.finished_at if item.final else None, item.to_json().decode()),
                )
            except sqlite3.IntegrityError:
                raise conflict(item.id, "exists") from None

        await self._change(insert)

    async def get(self, id: str) -> ReviewItem | None:
        def select(connection: sqlite3.Connection) -> ReviewItem | None:
            row = connection.execute("SELECT item FROM reviews WHERE id = ?", (id,)).fetchone()
            return None if row is None else ReviewItem.from_json(row[0])

        return await self._read(select)

    async def list(self, *, queue: str | None = None, state: str | None = None, limit: int = 100) -> builtins.list[ReviewItem]:
        check_state(state)
        if limit <= 0:
            return []
        where, args = [], []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        sql = "SELECT item FROM reviews" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created DESC LIMIT ?"

        def select(connection: sqlite3.Connection) -> builtins.list[ReviewItem]:
            return [ReviewItem.from_json(row[0]) for row in connection.execute(sql, (*args, limit))]

        return await self._read(select)

    async def claim(self, id: str, reviewer: str, lease_s: float) -> ReviewItem:
        check_claim(reviewer, lease_s)

        def change(connection: sqlite3.Connection) -> ReviewItem | Exception:
            item = self._load(connection, id)
            try:
                claim_item(item, reviewer, lease_s, self._clock(), self.max_deliveries)
            except Exception as refused:  # noqa: BLE001 - a refusal may still have changed the item (dead-lettered)
                self._save(connection, item)
                return refused
            self._save(connection, item)
            return item

        return _raised(await self._change(change))

    async def decide(self, id: str, reviewer: str, decision: str, comment: str = "", content: Any = None) -> ReviewItem:
        now = self._clock()
        state, record = decision_record(decision, reviewer, comment, content, now)

        def change(connection: sqlite3.Connection) -> ReviewItem:
            item = self._load(connection, id)
            decide_item(item, reviewer, state, record, now)
            self._save(connection, item)
            return item

        item = await self._change(change)
        self._waiters.wake(id)
        return item

    async def expire_due(self, now: float) -> builtins.list[ReviewItem]:
        def change(connection: sqlite3.Connection) -> builtins.list[ReviewItem]:
            rows = connection.execute(
                f"SELECT item FROM reviews WHERE state IN ({_LIVE_SQL}) AND deadline <= ? ORDER BY deadline", (*_LIVE, now),
            ).fetchall()
            expired = []
            for (data,) in rows:
                item = ReviewItem.from_json(data)
                item.state, item.claim_expires = "expired", None
                self._save(connection, item)
                expired.append(item)
            connection.execute("DELETE FROM reviews WHERE finished IS NOT NULL AND finished <= ?", (now - self.retention_s,))
            return expired

        expired = await self._change(change)
        for item in expired:
            self._waiters.wake(item.id)
        return expired

    async def wait_decided(self, id: str, timeout_s: float) -> ReviewItem | None:
        until = time.monotonic() + max(timeout_s, 0.0)
        with self._waiters.watch(id) as event:
            while True:
                event.clear()  # before reading: a wake-up that comes after the read is not lost
                item = await self.get(id)
                if item is None:
                    raise ReviewNotFound(id)
                if item.final:
                    return item
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self._poll_s))

    async def forget_content(self, id: str) -> None:
        def change(connection: sqlite3.Connection) -> None:
            item = self._load(connection, id)
            forget_item(item)
            self._save(connection, item)

        await self._change(change)

    async def begin_resume(self, id: str, holder: str, lease_s: float) -> ReviewItem | None:
        def change(connection: sqlite3.Connection) -> ReviewItem | None:
            item = self._load(connection, id)
            if not begin_resume_item(item, holder, lease_s, self._clock()):
                return None
            self._save(connection, item)
            return item

        return await self._change(change)

    async def save_result(self, id: str, result: dict[str, Any]) -> None:
        def change(connection: sqlite3.Connection) -> None:
            item = self._load(connection, id)
            result_item(item, result)
            self._save(connection, item)

        await self._change(change)

    async def depth(self) -> dict[str, dict[str, float]]:
        def select(connection: sqlite3.Connection) -> list[tuple[str, str | None, int, float | None]]:
            return connection.execute(
                f"SELECT queue, CASE WHEN state IN ({_LIVE_SQL}) THEN state END, COUNT(*), MIN(created) FROM reviews GROUP BY 1, 2",
                _LIVE,
            ).fetchall()

        now = self._clock()
        depths: dict[str, dict[str, float]] = {}
        for queue, state, count, oldest in await self._read(select):
            depth = depths.setdefault(queue, {"pending": 0.0, "claimed": 0.0, "dead": 0.0, "oldest_pending_s": 0.0})
            if state is not None:
                depth[state] = float(count)
            if state == "pending" and oldest is not None:
                depth["oldest_pending_s"] = max(now - oldest, 0.0)
        return depths

    async def close(self) -> None:
        self._waiters.wake_all()

        def shut() -> None:
            with self._calls:
                self._closed = True
                self._calls.wait_for(lambda: self._running == 0, timeout=BUSY_TIMEOUT_S * 2)
            with self._lock:
                connections, self._connections = self._connections, []
            for connection in connections:
                connection.close()

        await asyncio.to_thread(shut)


def _use_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (readers never wait for the writer).

    The switch needs the file to itself, and SQLite answers "database is locked" at once, without its
    busy wait, when another connection is using it: so each store switches once, before its threads
    write, and retries while another worker process is doing the same at startup."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _raised(outcome: ReviewItem | Exception) -> ReviewItem:
    """A claim's outcome: the item, or the refusal raised now that the transaction has committed."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
