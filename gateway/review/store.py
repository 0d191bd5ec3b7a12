"""The review queue's storage: escalated exchanges parked for a human, in this process or in Redis.

Every item follows one state machine, the same in both stores:

    pending --claim--> claimed --decide--> approved | rejected | edited      (final)
    pending, claimed (lease lapsed) or dead --decide--> approved | rejected | edited
    claimed (lease lapsed max_deliveries times) --claim--> dead             (a dead letter)
    pending, claimed or dead, once past the deadline --expire_due--> expired (final)

- A claim is a lease: the reviewer holds the item until `claim_expires`, after which anyone may claim it
  again. Every hand-out counts in `deliveries`. An item already handed out `max_deliveries` times is not
  handed out again but parked as `dead` (`list(state="dead")`): something nobody manages to decide (a
  console that breaks on it, reviewers who keep walking away) should reach an operator instead of
  circling forever. A dead item can still be decided directly (the operator's way out), and it still
  expires at its deadline, so the exchange held behind it is never stranded.
- Deciding implies claiming: an unleased item (pending, lapsed or dead) can be decided by anyone, a leased
  one only by its holder. A decision is final; a second one is a conflict, whoever makes it.
- The deadline is the truth and `expire_due` only records it: past its deadline an item can no longer be
  claimed or decided, even before a sweeper marks it `expired`, so a late approval can never contradict
  the `on_timeout` that the waiting exchange has already applied.
- Times are unix seconds from the store's `clock` (default `time.time`). Gateway instances are expected to
  keep NTP time, as the deadlines they compute already assume.

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

Not here yet: deleting old items. They stay, without their content once `forget_content` has run, for
`gateway audit show`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

LIVE = frozenset({"pending", "claimed", "dead"})
FINAL = frozenset({"approved", "rejected", "edited", "expired"})
STATES = LIVE | FINAL
PHASES = frozenset({"request", "response"})
ON_TIMEOUT = frozenset({"block", "allow"})
DECISIONS = {"approve": "approved", "reject": "rejected", "edit": "edited"}
DEFAULT_MAX_DELIVERIES = 5
MUTABLE = ("content", "state", "claimed_by", "claim_expires", "deliveries", "decision")

RESYNC_S = 5.0  # a waiter re-reads its item this often even without a wake-up
SUBSCRIBE_WAIT_S = 2.0  # how long a waiter waits for the subscriber before relying on re-reads
RETRY_S = 0.5  # pause before resubscribing after a Redis error
EXPIRE_BATCH = 500  # items one expire script handles, so that a backlog never blocks Redis for long

Clock = Callable[[], float]


class ReviewConflict(Exception):
    """The item's state forbids this: already decided, leased to someone else, dead-lettered, overdue."""


class ReviewNotFound(Exception):
    """No review item has this id."""


def new_review_id() -> str:
    """96 bits from the OS random source. Unlike request ids this one must not be guessable: it is handed
    to the app, which polls `GET /v1/reviews/{id}`."""
    return secrets.token_hex(12)


@dataclass(slots=True)
class ReviewItem:
    """One escalated exchange awaiting (or past) a human decision."""

    id: str
    queue: str
    state: str
    phase: str  # the policy phase that escalated: request | response
    request_id: str
    principal: dict[str, str | None]  # app, tenant, sub
    policy: str
    rule: str
    policy_version: str
    reason: str  # the rule's detail: why a human has to look
    content: dict[str, Any]  # what the reviewer sees: the held request body or the held reply
    created: float
    deadline: float  # unix time at which `on_timeout` applies
    on_timeout: str  # block | allow
    claimed_by: str | None = None
    claim_expires: float | None = None
    decision: dict[str, Any] | None = None  # {decision, reviewer, comment, content?, ts}
    deliveries: int = 0

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"review state must be one of {', '.join(sorted(STATES))}, not {self.state!r}")
        if self.phase not in PHASES:
            raise ValueError(f"review phase must be request or response, not {self.phase!r}")
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be block or allow, not {self.on_timeout!r}")

    @classmethod
    def new(
        cls, *, queue: str, phase: str, request_id: str, principal: Mapping[str, str | None], policy: str,
        rule: str, policy_version: str, reason: str, content: dict[str, Any], deadline: float,
        on_timeout: str, created: float | None = None,
    ) -> ReviewItem:
        """A fresh pending item with a new id."""
        return cls(
            id=new_review_id(), queue=queue, state="pending", phase=phase, request_id=request_id,
            principal=dict(principal), policy=policy, rule=rule, policy_version=policy_version, reason=reason,
            content=content, created=time.time() if created is None else created, deadline=deadline,
            on_timeout=on_timeout,
        )

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> ReviewItem:
        return cls(**orjson.loads(data))


class ReviewStore(Protocol):
    async def create(self, item: ReviewItem) -> None:
        """Store a new item; `ReviewConflict` if its id is taken."""

    async def get(self, id: str) -> ReviewItem | None: ...

    async def list(self, *, queue: str | None = None, state: str | None = None, limit: int = 100) -> builtins.list[ReviewItem]:
        """Newest first."""

    async def claim(self, id: str, reviewer: str, lease_s: float) -> ReviewItem:
        """Lease a pending item (or one whose lease lapsed) to `reviewer` for `lease_s` seconds."""

    async def decide(self, id: str, reviewer: str, decision: str, comment: str = "", content: Any = None) -> ReviewItem:
        """approve | reject | edit (with `content`), once, by the lease holder or, if unleased, anyone."""

    async def expire_due(self, now: float) -> builtins.list[ReviewItem]:
        """Mark undecided items past their deadline `expired` and return them, each once across all
        instances, for the caller to apply `on_timeout` and audit."""

    async def wait_decided(self, id: str, timeout_s: float) -> ReviewItem | None:
        """The item once it is final (decided or expired), or None after `timeout_s`."""

    async def forget_content(self, id: str) -> None:
        """Drop the held content (and an edit's content) of a finished review."""

    async def depth(self) -> dict[str, dict[str, float]]:
        """Per queue: `pending`, `claimed` and `dead` counts and `oldest_pending_s`, for metrics."""

    async def close(self) -> None: ...


def _conflict(id: str, reason: str, detail: str = "") -> ReviewConflict:
    """One wording for both stores (the Redis scripts return the reason and the detail)."""
    text = {
        "exists": "already exists",
        "final": f"is already {detail}",
        "overdue": "is past its deadline",
        "dead": "is dead-lettered: it can be decided, not claimed",
        "leased": f"is claimed by {detail}",
        "exhausted": f"was handed out {detail} times without a decision and is now dead-lettered",
        "open": "is still under review and needs its content",
    }[reason]
    return ReviewConflict(f"review {id} {text}")


def _check_claim(reviewer: str, lease_s: float) -> None:
    if not reviewer:
        raise ValueError("a claim needs a reviewer")
    if not lease_s > 0:
        raise ValueError(f"a lease must be longer than 0 s, not {lease_s}")


def _check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise ValueError(f"review state must be one of {', '.join(sorted(STATES))}, not {state!r}")


def _decision(decision: str, reviewer: str, comment: str, content: Any, now: float) -> tuple[str, bytes]:
    """The new state and the decision record as JSON. Serialised before anything changes, so content
    that cannot be stored fails the call instead of half-applying it."""
    state = DECISIONS.get(decision)
    if state is None:
        raise ValueError(f"decision must be approve, reject or edit, not {decision!r}")
    if not reviewer:
        raise ValueError("a decision needs a reviewer")
    if decision == "edit" and content is None:
        raise ValueError("an edit needs the edited content")
    if decision != "edit" and content is not None:
        raise ValueError("content goes with an edit only")
    record: dict[str, Any] = {"decision": decision, "reviewer": reviewer, "comment": comment, "ts": now}
    if content is not None:
        record["content"] = content
    return state, orjson.dumps(record)


def _without_content(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if decision is None else {key: value for key, value in decision.items() if key != "content"}


class _Waiters:
    """The events of the tasks waiting on each item; set when the item (may have) reached a final state."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.setdefault(id, set()).add(event)
        try:
            yield event
        finally:
            events = self._events.get(id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[id]

    def wake(self, id: str) -> None:
        for event in self._events.get(id, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()


def _copy(item: ReviewItem) -> ReviewItem:
    return ReviewItem.from_json(item.to_json())


def _leased(item: ReviewItem, now: float) -> bool:
    return item.state == "claimed" and item.claim_expires is not None and item.claim_expires > now


class LocalReviewStore:
    """One process's queue (the embedded default): items in a dict, waiters woken by asyncio events.

    Items are copied in and out through their JSON, so a caller changing a returned item changes nothing
    stored, and the local store accepts only what the Redis one can hold.
    """

    def __init__(self, max_deliveries: int = DEFAULT_MAX_DELIVERIES, *, clock: Clock = time.time) -> None:
        self.max_deliveries = max_deliveries
        self._clock = clock
        self._items: dict[str, ReviewItem] = {}
        self._undecided: set[str] = set()  # what `expire_due` looks at
        self._waiters = _Waiters()

    async def create(self, item: ReviewItem) -> None:
        if item.id in self._items:
            raise _conflict(item.id, "exists")
        self._items[item.id] = _copy(item)
        if item.state in LIVE:
            self._undecided.add(item.id)

    async def get(self, id: str) -> ReviewItem | None:
        item = self._items.get(id)
        return None if item is None else _copy(item)

    async def list(self, *, queue: str | None = None, state: str | None = None, limit: int = 100) -> builtins.list[ReviewItem]:
        _check_state(state)
        found = [
            item for item in self._items.values()
            if (queue is None or item.queue == queue) and (state is None or item.state == state)
        ]
        found.sort(key=lambda item: item.created, reverse=True)
        return [_copy(item) for item in found[:max(limit, 0)]]

    def _open(self, id: str, now: float) -> ReviewItem:
        """The item, if it can still be claimed or decided."""
        item = self._items.get(id)
        if item is None:
            raise ReviewNotFound(id)
        if item.state in FINAL:
            raise _conflict(id, "final", item.state)
        if now >= item.deadline:
            raise _conflict(id, "overdue")
        return item

    async def claim(self, id: str, reviewer: str, lease_s: float) -> ReviewItem:
        _check_claim(reviewer, lease_s)
        now = self._clock()
        item = self._open(id, now)
        if item.state == "dead":
            raise _conflict(id, "dead")
        if _leased(item, now):
            raise _conflict(id, "leased", item.claimed_by or "")
        if item.deliveries >= self.max_deliveries:
            item.state, item.claimed_by, item.claim_expires = "dead", None, None
            raise _conflict(id, "exhausted", str(item.deliveries))
        item.state, item.claimed_by, item.claim_expires = "claimed", reviewer, now + lease_s
        item.deliveries += 1
        return _copy(item)

    async def decide(self, id: str, reviewer: str, decision: str, comment: str = "", content: Any = None) -> ReviewItem:
        now = self._clock()
        state, record = _decision(decision, reviewer, comment, content, now)
        item = self._open(id, now)
        leased = _leased(item, now)
        if leased and item.claimed_by != reviewer:
            raise _conflict(id, "leased", item.claimed_by or "")
        if not leased:
            item.deliveries += 1  # deciding implies claiming
        item.state, item.claimed_by, item.claim_expires = state, reviewer, None
        item.decision = orjson.loads(record)
        self._undecided.discard(id)
        self._waiters.wake(id)
        return _copy(item)

    async def expire_due(self, now: float) -> builtins.list[ReviewItem]:
        due = sorted((self._items[id] for id in self._undecided if self._items[id].deadline <= now), key=lambda item: item.deadline)
        for item in due:
            item.state, item.claim_expires = "expired", None
            self._undecided.discard(item.id)
            self._waiters.wake(item.id)
        return [_copy(item) for item in due]

    async def wait_decided(self, id: str, timeout_s: float) -> ReviewItem | None:
        with self._waiters.watch(id) as event:
            item = self._items.get(id)
            if item is None:
                raise ReviewNotFound(id)
            if item.state not in FINAL:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), max(timeout_s, 0.0))
            return _copy(item) if item.state in FINAL else None

    async def forget_content(self, id: str) -> None:
        item = self._items.get(id)
        if item is None:
            raise ReviewNotFound(id)
        if item.state not in FINAL:
            raise _conflict(id, "open")
        item.content, item.decision = {}, _without_content(item.decision)

    async def depth(self) -> dict[str, dict[str, float]]:
        now = self._clock()
        depths: dict[str, dict[str, float]] = {}
        for item in self._items.values():
            queue = depths.setdefault(item.queue, {"pending": 0.0, "claimed": 0.0, "dead": 0.0, "oldest_pending_s": 0.0})
            if item.state in queue:
                queue[item.state] += 1
            if item.state == "pending":
                queue["oldest_pending_s"] = max(queue["oldest_pending_s"], now - item.created)
        return depths

    async def close(self) -> None:
        self._waiters.wake_all()


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

# KEYS: item, deadlines. ARGV: prefix, id, reviewer, now, new state, decision, channel.
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
redis.call('ZREM', KEYS[2], ARGV[2])
reindex(ARGV[2], f[5], f[6], state, ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: deadlines. ARGV: prefix, now, batch size, channel. Returns {ids looked at, {expired items}}.
_EXPIRE = _PRELUDE + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local expired = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = prefix .. 'review:' .. id
  local f = redis.call('HMGET', key, 'state', 'queue', 'created')
  if f[1] and not final[f[1]] then
    redis.call('HSET', key, 'state', 'expired', 'claim_expires', '')
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
    return ReviewItem(**data)


def _from_flat(flat: Sequence[bytes]) -> ReviewItem:
    """An item from a script's HGETALL reply (a flat field, value, field, value list)."""
    return _from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


class RedisReviewStore:
    """The queue shared by every worker and instance on one Redis (see the module docstring)."""

    def __init__(self, url: str, prefix: str, max_deliveries: int = DEFAULT_MAX_DELIVERIES, *, clock: Clock = time.time) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - redis loads only with the redis store

        self.prefix = prefix
        self.max_deliveries = max_deliveries
        self.channel = f"{prefix}reviews:decided"
        self.deadlines = f"{prefix}reviews:deadlines"
        self._clock = clock
        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._create = self.client.register_script(_CREATE)
        self._claim = self.client.register_script(_CLAIM)
        self._decide = self.client.register_script(_DECIDE)
        self._expire = self.client.register_script(_EXPIRE)
        self._forget = self.client.register_script(_FORGET)
        self._waiters = _Waiters()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

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
        raise _conflict(id, code, *(part.decode() if isinstance(part, bytes) else str(part) for part in reply[1:]))

    async def create(self, item: ReviewItem) -> None:
        data = asdict(item)
        meta = orjson.dumps({key: value for key, value in data.items() if key not in MUTABLE})
        args: list[str | bytes | int] = [
            self.prefix, item.id, item.queue, item.state, _number(item.created), _number(item.deadline), meta,
            orjson.dumps(item.content), item.claimed_by or "",
            "" if item.claim_expires is None else _number(item.claim_expires), item.deliveries,
            b"" if item.decision is None else orjson.dumps(item.decision),
        ]
        if not await self._create(keys=[self._key(item.id), self.deadlines], args=args):
            raise _conflict(item.id, "exists")

    async def get(self, id: str) -> ReviewItem | None:
        fields = await self.client.hgetall(self._key(id))
        return _from_hash(fields) if fields else None

    async def list(self, *, queue: str | None = None, state: str | None = None, limit: int = 100) -> builtins.list[ReviewItem]:
        _check_state(state)
        if limit <= 0:
            return []
        ids = await self.client.zrevrange(self._index(queue, state), 0, limit - 1)
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for id in ids:
                pipe.hgetall(self._key(id.decode()))
            rows = await pipe.execute()
        return [_from_hash(fields) for fields in rows if fields]

    async def claim(self, id: str, reviewer: str, lease_s: float) -> ReviewItem:
        _check_claim(reviewer, lease_s)
        now = self._clock()
        args: list[str | int] = [self.prefix, id, reviewer, _number(now), _number(now + lease_s), self.max_deliveries]
        return self._outcome(id, await self._claim(keys=[self._key(id)], args=args))

    async def decide(self, id: str, reviewer: str, decision: str, comment: str = "", content: Any = None) -> ReviewItem:
        now = self._clock()
        state, record = _decision(decision, reviewer, comment, content, now)
        args: list[str | bytes] = [self.prefix, id, reviewer, _number(now), state, record, self.channel]
        return self._outcome(id, await self._decide(keys=[self._key(id), self.deadlines], args=args))

    async def expire_due(self, now: float) -> builtins.list[ReviewItem]:
        expired: builtins.list[ReviewItem] = []
        while True:
            seen, items = await self._expire(keys=[self.deadlines], args=[self.prefix, _number(now), EXPIRE_BATCH, self.channel])
            expired.extend(_from_flat(flat) for flat in items)
            if int(seen) < EXPIRE_BATCH:
                return expired

    async def wait_decided(self, id: str, timeout_s: float) -> ReviewItem | None:
        until = time.monotonic() + max(timeout_s, 0.0)
        with self._waiters.watch(id) as event:
            await self._listening(min(SUBSCRIBE_WAIT_S, max(timeout_s, 0.0)))
            while True:
                event.clear()  # before reading: a wake-up that comes after the read is not lost
                item = await self.get(id)
                if item is None:
                    raise ReviewNotFound(id)
                if item.state in FINAL:
                    return item
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, RESYNC_S))

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
            raise _conflict(id, "open")
        # A final item's decision never changes again, so this read-then-write cannot lose anything.
        decision = _without_content(item.decision)
        args: list[str | bytes] = [self.prefix, b"" if decision is None else orjson.dumps(decision)]
        reply = await self._forget(keys=[self._key(id)], args=args)
        code = reply[0].decode()
        if code == "missing":
            raise ReviewNotFound(id)
        if code != "ok":
            raise _conflict(id, code)

    async def depth(self) -> dict[str, dict[str, float]]:
        queues = sorted(queue.decode() for queue in await self.client.smembers(f"{self.prefix}reviews:queues"))
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
