"""The review queue in Redis, shared by every worker and gateway instance on one server.

Redis: why one state machine per item rather than a stream with a consumer group. A consumer group hands
entries out in arrival order to whoever reads next, and XAUTOCLAIM re-delivers idle ones. But reviewers
pick items by id from a console (`/admin/reviews/{id}/claim`), decisions are made by id, listings filter
by queue and state, and deadlines need their own index anyway. A stream would therefore still need a
record per item, and two sources of truth (the pending-entries list and the record) to keep in step. Here
each item is one hash, and every transition is one Lua script that checks and changes the hash and its
indexes together, so two gateways never both claim, both decide or both expire an item. Keys under
`<prefix>`:

    review:<id>                       hash: `meta` (the fields that never change, JSON), `content` (JSON)
                                      and the fields the scripts use: state, queue, created, deadline,
                                      claimed_by, claim_expires, deliveries, decision (JSON)
    reviews:all, reviews:queue:<q>,   sorted sets of ids scored by `created` (newest-first listings)
    reviews:state:<s>, reviews:state:<s>:queue:<q>
    reviews:queues                    set of every queue seen (for `depth`)
    reviews:deadlines                 sorted set of undecided ids scored by deadline (for `expire_due`)
    reviews:decided                   pub/sub channel: the id of each item that reaches a final state

The scripts build index key names from the prefix instead of declaring every key in KEYS. With Redis
Cluster the prefix must therefore carry a hash tag (`{gw}:`) so that all of these keys share one slot.
Numbers the scripts store are the strings Python sent, because Lua prints doubles with 14 digits. Content
is never decoded in Lua, because cjson would turn empty lists into objects.

Waiting: each RedisReviewStore runs one subscriber to the decided channel (started by its first
`wait_decided`) and wakes its own waiters by id. A waiter re-reads the item when woken, and every few
seconds regardless, because pub/sub drops messages while disconnected (each resubscription wakes all).
While Redis is away a waiter keeps waiting (its review is not lost: Redis keeps it, with AOF), re-reading
every half second until Redis answers or its time is up.

Retention: a final item's hash expires `retention_s` after it became final. The sorted-set indexes are
trimmed by score (creation time) once the oldest possible live item is younger than what they drop:
every review's deadline is at most `MAX_DEADLINE_S` after its creation, so an id created before
`now - MAX_DEADLINE_S - retention_s` is final and gone. Listings skip ids whose hash has expired already.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import orjson

from gateway.review.store import (
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_RETENTION_S,
    FINAL,
    MAX_DEADLINE_S,
    STATES,
    MUTABLE,
    Clock,
    ReviewConflict,
    ReviewItem,
    ReviewNotFound,
    Waiters,
    check_claim,
    check_state,
    conflict,
    decision_record,
    without_content,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

RESYNC_S = 5.0  # a waiter re-reads its item this often even without a wake-up
SUBSCRIBE_WAIT_S = 2.0  # how long a waiter waits for the subscriber before relying on re-reads
RETRY_S = 0.5  # pause before resubscribing after a Redis error
EXPIRE_BATCH = 500  # items one expire script handles, so that a backlog never blocks Redis for long
TRIM_EVERY_S = 60.0  # index trimming, at most this often per store


# Shared by every script: ARGV[1] is the key prefix; `reindex` moves an id between state indexes.
_PRELUDE = """
local prefix = ARGV[1]
local final = {approved = true, rejected = true, edited = true, expired = true}
local function reindex(id, queue, created, from, to)
  if from == to then return end
  if from then
    redis.call('ZREM', prefix .. 'reviews:state:' .. from, id)
    redis.call('ZREM', prefix .. 'reviews:state:' .. from .. ':queue:' .. queue, id)
  end
  redis.call('ZADD', prefix .. 'reviews:state:' .. to, created, id)
  redis.call('ZADD', prefix .. 'reviews:state:' .. to .. ':queue:' .. queue, created, id)
end
-- f: state, claimed_by, claim_expires, deliveries, queue, created, deadline
local function refused(f, now)
  if not f[1] then return {'missing'} end
  if final[f[1]] then return {'final', f[1]} end
  if now >= tonumber(f[7]) then return {'overdue'} end
  return nil
end
local FIELDS = {'state', 'claimed_by', 'claim_expires', 'deliveries', 'queue', 'created', 'deadline'}
"""

# KEYS: item, deadlines. ARGV: prefix, id, queue, state, created, deadline, meta, content, claimed_by,
# claim_expires, deliveries, decision.
_CREATE = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[7], 'content', ARGV[8], 'state', ARGV[4], 'queue', ARGV[3],
  'created', ARGV[5], 'deadline', ARGV[6], 'claimed_by', ARGV[9], 'claim_expires', ARGV[10],
  'deliveries', ARGV[11], 'decision', ARGV[12])
redis.call('ZADD', prefix .. 'reviews:all', ARGV[5], ARGV[2])
redis.call('ZADD', prefix .. 'reviews:queue:' .. ARGV[3], ARGV[5], ARGV[2])
redis.call('SADD', prefix .. 'reviews:queues', ARGV[3])
reindex(ARGV[2], ARGV[3], ARGV[5], nil, ARGV[4])
if not final[ARGV[4]] then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2]) end
return 1
"""

# KEYS: item. ARGV: prefix, id, reviewer, now, claim_expires, max_deliveries.
_CLAIM = _PRELUDE + """
local f = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local now = tonumber(ARGV[4])
local no = refused(f, now)
if no then return no end
local state = f[1]
if state == 'dead' then return {'dead'} end
if state == 'claimed' and tonumber(f[3]) > now then return {'leased', f[2]} end
if tonumber(f[4]) >= tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[1], 'state', 'dead', 'claimed_by', '', 'claim_expires', '')
  reindex(ARGV[2], f[5], f[6], state, 'dead')
  return {'exhausted', f[4]}
end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'claimed_by', ARGV[3], 'claim_expires', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
reindex(ARGV[2], f[5], f[6], state, 'claimed')
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: item, deadlines. ARGV: prefix, id, reviewer, now, new state, decision, channel, retention_s.
_DECIDE = _PRELUDE + """
local f = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local now = tonumber(ARGV[4])
local no = refused(f, now)
if no then return no end
local state = f[1]
local leased = state == 'claimed' and tonumber(f[3]) > now
if leased and f[2] ~= ARGV[3] then return {'leased', f[2]} end
if not leased then redis.call('HINCRBY', KEYS[1], 'deliveries', 1) end
redis.call('HSET', KEYS[1], 'state', ARGV[5], 'claimed_by', ARGV[3], 'claim_expires', '', 'decision', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZREM', KEYS[2], ARGV[2])
reindex(ARGV[2], f[5], f[6], state, ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: deadlines. ARGV: prefix, now, batch size, channel, retention_s. Returns {ids looked at, {expired items}}.
_EXPIRE = _PRELUDE + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local expired = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = prefix .. 'review:' .. id
  local f = redis.call('HMGET', key, 'state', 'queue', 'created')
  if f[1] and not final[f[1]] then
    redis.call('HSET', key, 'state', 'expired', 'claim_expires', '')
    redis.call('EXPIRE', key, ARGV[5])
    reindex(id, f[2], f[3], f[1], 'expired')
    redis.call('PUBLISH', ARGV[4], id)
    expired[#expired + 1] = redis.call('HGETALL', key)
  end
end
return {#ids, expired}
"""

# KEYS: item. ARGV: prefix, decision without its content ('' for none).
_FORGET = _PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if not final[state] then return {'open'} end
redis.call('HSET', KEYS[1], 'content', '{}', 'decision', ARGV[2])
return {'ok'}
"""


# KEYS: item. ARGV: prefix, holder, now, lease expiry. The caller checked that the item is allowed.
_BEGIN_RESUME = _PRELUDE + """
local f = redis.call('HMGET', KEYS[1], 'state', 'result', 'resume_expires')
if not f[1] then return {'missing'} end
if not final[f[1]] or f[1] == 'rejected' then return {'unresumable', f[1]} end
if f[2] and f[2] ~= '' then return {'done'} end
if f[3] and f[3] ~= '' and tonumber(f[3]) > tonumber(ARGV[3]) then return {'busy'} end
redis.call('HSET', KEYS[1], 'resumed_by', ARGV[2], 'resume_expires', ARGV[4])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: item. ARGV: prefix, result, decision without its content ('' for none).
_SAVE_RESULT = _PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if not final[state] or state == 'rejected' then return {'unresumable', state} end
redis.call('HSET', KEYS[1], 'result', ARGV[2], 'content', '{}', 'decision', ARGV[3], 'resume_expires', '')
return {'ok'}
"""


def _number(value: float) -> str:
    """A float as Redis and Lua parse it back exactly (repr round-trips)."""
    return repr(float(value))


def _from_hash(fields: Mapping[bytes, bytes]) -> ReviewItem:
    data = orjson.loads(fields[b"meta"])
    data["content"] = orjson.loads(fields[b"content"])
    data["state"] = fields[b"state"].decode()
    data["claimed_by"] = fields[b"claimed_by"].decode() or None
    data["claim_expires"] = float(fields[b"claim_expires"]) if fields[b"claim_expires"] else None
    data["deliveries"] = int(fields[b"deliveries"])
    data["decision"] = orjson.loads(fields[b"decision"]) if fields[b"decision"] else None
    data["result"] = orjson.loads(fields[b"result"]) if fields.get(b"result") else None
    data["resumed_by"] = fields[b"resumed_by"].decode() if fields.get(b"resumed_by") else None
    data["resume_expires"] = float(fields[b"resume_expires"]) if fields.get(b"resume_expires") else None
    return ReviewItem(**data)


def _from_flat(flat: Sequence[bytes]) -> ReviewItem:
    """An item from a script's HGETALL reply (a flat field, value, field, value list)."""
    return _from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


class RedisReviewStore:
    """The queue shared by every worker and instance on one Redis (see the module docstring)."""

    def __init__(
        self, url: str, prefix: str, max_deliveries: int = DEFAULT_MAX_DELIVERIES, *,
        retention_s: float = DEFAULT_RETENTION_S, clock: Clock = time.time,
    ) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - redis loads only with the redis store

        self.prefix = prefix
        self.max_deliveries = max_deliveries
        self.retention_s = retention_s
        self._trimmed = 0.0
        self.channel = f"{prefix}reviews:decided"
        self.deadlines = f"{prefix}reviews:deadlines"
        self._clock = clock
        from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._stale_errors: tuple[type[Exception], ...] = (RedisConnectionError,)
        self._create = self.client.register_script(_CREATE)
        self._claim = self.client.register_script(_CLAIM)
        self._decide = self.client.register_script(_DECIDE)
        self._expire = self.client.register_script(_EXPIRE)
        self._forget = self.client.register_script(_FORGET)
        self._begin_resume = self.client.register_script(_BEGIN_RESUME)
        self._save_result = self.client.register_script(_SAVE_RESULT)
        self._waiters = Waiters()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Redis call, made again once if its connection turns out dead.

        A pooled connection that Redis closed while idle (a restart) fails the first command sent on it, and
        redis-py passes that on rather than reconnecting; the second try gets a fresh connection. Running a
        script twice is safe: a repeat finds its change made and answers a conflict, never applies it twice.
        """
        try:
            return await make()
        except self._stale_errors:
            return await make()

    def _key(self, id: str) -> str:
        return f"{self.prefix}review:{id}"

    def _index(self, queue: str | None, state: str | None) -> str:
        if state is not None:
            return f"{self.prefix}reviews:state:{state}" + ("" if queue is None else f":queue:{queue}")
        return f"{self.prefix}reviews:all" if queue is None else f"{self.prefix}reviews:queue:{queue}"

    def _outcome(self, id: str, reply: Sequence[Any]) -> ReviewItem:
        code = reply[0].decode()
        if code == "ok":
            return _from_flat(reply[1])
        if code == "missing":
            raise ReviewNotFound(id)
        raise conflict(id, code, *(part.decode() if isinstance(part, bytes) else str(part) for part in reply[1:]))

    async def create(self, item: ReviewItem) -> None:
        data = asdict(item)
        meta = orjson.dumps({key: value for key, value in data.items() if key not in MUTABLE})
        args: list[str | bytes | int] = [
            self.prefix, item.id, item.queue, item.state, _number(item.created), _number(item.deadline), meta,
            orjson.dumps(item.content), item.claimed_by or "",
            "" if item.claim_expires is None else _number(item.claim_expires), item.deliveries,
            b"" if item.decision is None else orjson.dumps(item.decision),
        ]
        if not await self._call(lambda: self._create(keys=[self._key(item.id), self.deadlines], args=args)):
            raise conflict(item.id, "exists")

    async def get(self, id: str) -> ReviewItem | None:
        fields = await self._call(lambda: self.client.hgetall(self._key(id)))
        return _from_hash(fields) if fields else None

    async def list(self, *, queue: str | None = None, state: str | None = None, limit: int = 100) -> builtins.list[ReviewItem]:
        check_state(state)
        if limit <= 0:
            return []
        ids = await self._call(lambda: self.client.zrevrange(self._index(queue, state), 0, limit - 1))
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for id in ids:
                pipe.hgetall(self._key(id.decode()))
            rows = await pipe.execute()
        return [_from_hash(fields) for fields in rows if fields]  # an empty row: expired past retention

    async def claim(self, id: str, reviewer: str, lease_s: float) -> ReviewItem:
        check_claim(reviewer, lease_s)
        now = self._clock()
        args: list[str | int] = [self.prefix, id, reviewer, _number(now), _number(now + lease_s), self.max_deliveries]
        return self._outcome(id, await self._call(lambda: self._claim(keys=[self._key(id)], args=args)))

    async def decide(self, id: str, reviewer: str, decision: str, comment: str = "", content: Any = None) -> ReviewItem:
        now = self._clock()
        state, record = decision_record(decision, reviewer, comment, content, now)
        args: list[str | bytes | int] = [self.prefix, id, reviewer, _number(now), state, record, self.channel, self._ttl()]
        return self._outcome(id, await self._call(lambda: self._decide(keys=[self._key(id), self.deadlines], args=args)))

    async def expire_due(self, now: float) -> builtins.list[ReviewItem]:
        expired: builtins.list[ReviewItem] = []
        while True:
            args: list[str | int] = [self.prefix, _number(now), EXPIRE_BATCH, self.channel, self._ttl()]
            seen, items = await self._call(lambda: self._expire(keys=[self.deadlines], args=args))
            expired.extend(_from_flat(flat) for flat in items)
            if int(seen) < EXPIRE_BATCH:
                break
        if now - self._trimmed >= TRIM_EVERY_S:
            self._trimmed = now
            await self._trim_indexes(now - MAX_DEADLINE_S - self.retention_s)
        return expired

    def _ttl(self) -> int:
        return max(int(self.retention_s), 1)

    async def _trim_indexes(self, before: float) -> None:
        """Drop index entries of items created before `before`: final and past retention by then."""
        queues = [queue.decode() for queue in await self._call(lambda: self.client.smembers(f"{self.prefix}reviews:queues"))]
        keys = [self._index(None, None)] + [self._index(queue, None) for queue in queues]
        for state in STATES:
            keys.append(self._index(None, state))
            keys.extend(self._index(queue, state) for queue in queues)
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zremrangebyscore(key, "-inf", f"({_number(before)}")
            await pipe.execute()

    async def wait_decided(self, id: str, timeout_s: float) -> ReviewItem | None:
        until = time.monotonic() + max(timeout_s, 0.0)
        with self._waiters.watch(id) as event:
            await self._listening(min(SUBSCRIBE_WAIT_S, max(timeout_s, 0.0)))
            while True:
                event.clear()  # before reading: a wake-up that comes after the read is not lost
                pause = RESYNC_S
                try:
                    item = await self.get(id)
                except Exception as exc:  # noqa: BLE001 - Redis away: the review is not lost, keep waiting
                    log.debug("review %s: cannot read it (%s: %s); waiting on", id, type(exc).__name__, exc)
                    pause = RETRY_S
                else:
                    if item is None:
                        raise ReviewNotFound(id)
                    if item.state in FINAL:
                        return item
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, pause))

    async def _listening(self, wait_s: float) -> None:
        """Start the subscriber if needed, and give it up to `wait_s` to be subscribed: a decision
        published after that is seen; one made earlier is found by the waiter's first read."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="review-decided-listen")
        if not self._subscribed.is_set() and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), wait_s)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    while True:  # subscribed only once Redis confirms it
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "subscribe":
                            break
                    self._subscribed.set()
                    self._waiters.wake_all()  # anything decided while we were not listening
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._waiters.wake(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: waiters fall back to re-reading
                self._subscribed.clear()
                log.warning("review queue: %s: %s; resubscribing", type(exc).__name__, exc)
                await asyncio.sleep(RETRY_S)

    async def forget_content(self, id: str) -> None:
        item = await self.get(id)
        if item is None:
            raise ReviewNotFound(id)
        if item.state not in FINAL:
            raise conflict(id, "open")
        # A final item's decision never changes again, so this read-then-write cannot lose anything.
        decision = without_content(item.decision)
        args: list[str | bytes] = [self.prefix, b"" if decision is None else orjson.dumps(decision)]
        reply = await self._call(lambda: self._forget(keys=[self._key(id)], args=args))
        code = reply[0].decode()
        if code == "missing":
            raise ReviewNotFound(id)
        if code != "ok":
            raise conflict(id, code)

    async def begin_resume(self, id: str, holder: str, lease_s: float) -> ReviewItem | None:
        now = self._clock()
        args = [self.prefix, holder, _number(now), _number(now + lease_s)]
        reply = await self._call(lambda: self._begin_resume(keys=[self._key(id)], args=args))
        if reply[0] in (b"done", b"busy"):
            return None
        item = self._outcome(id, reply)
        if not item.allowed:  # expired with on_timeout block: the script cannot read on_timeout
            raise conflict(id, "unresumable", item.state)
        return item

    async def save_result(self, id: str, result: dict[str, Any]) -> None:
        item = await self.get(id)
        if item is None:
            raise ReviewNotFound(id)
        if not item.allowed:
            raise conflict(id, "unresumable", item.state)
        decision = without_content(item.decision)
        args: list[str | bytes] = [self.prefix, orjson.dumps(result), b"" if decision is None else orjson.dumps(decision)]
        reply = await self._call(lambda: self._save_result(keys=[self._key(id)], args=args))
        if reply[0] != b"ok":
            self._outcome(id, reply)

    async def depth(self) -> dict[str, dict[str, float]]:
        queues = sorted(queue.decode() for queue in await self._call(lambda: self.client.smembers(f"{self.prefix}reviews:queues")))
        if not queues:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for state in ("pending", "claimed", "dead"):
                    pipe.zcard(self._index(queue, state))
                pipe.zrange(self._index(queue, "pending"), 0, 0, withscores=True)
            rows = await pipe.execute()
        now = self._clock()
        depths: dict[str, dict[str, float]] = {}
        for position, queue in enumerate(queues):
            pending, claimed, dead, oldest = rows[4 * position:4 * position + 4]
            depths[queue] = {
                "pending": float(pending), "claimed": float(claimed), "dead": float(dead),
                "oldest_pending_s": max(now - float(oldest[0][1]), 0.0) if oldest else 0.0,
            }
        return depths

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._subscribed.clear()
        await self.client.aclose()
