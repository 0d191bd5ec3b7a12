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

Results: an exchange held in the request phase is carried out once its review allows it (approved,
edited, or expired with `on_timeout: allow`). Whoever does that (the waiting request, or the app's poll of
`GET /v1/reviews/{id}`) first takes a resume lease (`begin_resume`), so two gateways never both call the
provider for one review, and stores what the app gets (`save_result`), which also drops the held content.
A final item lives `retention_s` more (the app can fetch its result, `gateway audit show` its decision),
then it is deleted.

Two stores implement this: `LocalReviewStore` (gateway/review/local_store.py), a SQLite file shared by
the workers of one instance (the local backend), and `RedisReviewStore` (gateway/review/redis_store.py),
shared by every worker and instance on one Redis. Both pass one contract suite.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

LIVE = frozenset({"pending", "claimed", "dead"})
FINAL = frozenset({"approved", "rejected", "edited", "expired"})
STATES = LIVE | FINAL
PHASES = frozenset({"request", "response"})
ON_TIMEOUT = frozenset({"block", "allow"})
DECISIONS = {"approve": "approved", "reject": "rejected", "edit": "edited"}
DEFAULT_MAX_DELIVERIES = 5
MUTABLE = ("content", "state", "claimed_by", "claim_expires", "deliveries", "decision", "result", "resumed_by", "resume_expires")
RESUMABLE = frozenset({"approved", "edited", "expired"})  # expired: only with on_timeout allow
DEFAULT_RETENTION_S = 86400.0

MAX_DEADLINE_S = 7 * 86400.0  # the longest a review may stay open (policy files are held to it)

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
    result: dict[str, Any] | None = None  # what the app gets once the exchange was carried out: {status, body}
    resumed_by: str | None = None  # who holds (or held) the resume lease
    resume_expires: float | None = None

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

    @property
    def allowed(self) -> bool:
        """Whether the held exchange may go on: a reviewer let it, or its deadline passed with `allow`."""
        return self.state in ("approved", "edited") or (self.state == "expired" and self.on_timeout == "allow")

    @property
    def outcome(self) -> str:
        """What decided it so far: approve, reject, edit, timeout_block, timeout_allow, or pending."""
        if self.decision:
            return str(self.decision["decision"])
        return f"timeout_{self.on_timeout}" if self.state == "expired" else "pending"

    def audit_entry(self) -> dict[str, Any]:
        """The `review` object of audit records: the exchange's own, and each review_decision record."""
        decided = self.decision or {}
        return {"id": self.id, "queue": self.queue, "decision": self.outcome, "reviewer": decided.get("reviewer"), "comment": decided.get("comment", "")}

    @property
    def finished_at(self) -> float:
        """When it became final (a decision's time, or the deadline); retention counts from here."""
        return float(self.decision["ts"]) if self.decision else self.deadline

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

    async def begin_resume(self, id: str, holder: str, lease_s: float) -> ReviewItem | None:
        """Take the lease to carry out an allowed review's exchange: the item, or None when it has its
        result already or someone else holds a live lease. `ReviewConflict` if it is not allowed."""

    async def save_result(self, id: str, result: dict[str, Any]) -> None:
        """Store what the app gets for an allowed review, and drop the held content."""

    async def depth(self) -> dict[str, dict[str, float]]:
        """Per queue: `pending`, `claimed` and `dead` counts and `oldest_pending_s`, for metrics."""

    async def close(self) -> None: ...


def conflict(id: str, reason: str, detail: str = "") -> ReviewConflict:
    """One wording for both stores (the Redis scripts return the reason and the detail)."""
    text = {
        "exists": "already exists",
        "final": f"is already {detail}",
        "overdue": "is past its deadline",
        "dead": "is dead-lettered: it can be decided, not claimed",
        "leased": f"is claimed by {detail}",
        "exhausted": f"was handed out {detail} times without a decision and is now dead-lettered",
        "open": "is still under review and needs its content",
        "unresumable": f"is {detail}: its exchange may not go on",
    }[reason]
    return ReviewConflict(f"review {id} {text}")


def check_claim(reviewer: str, lease_s: float) -> None:
    if not reviewer:
        raise ValueError("a claim needs a reviewer")
    if not lease_s > 0:
        raise ValueError(f"a lease must be longer than 0 s, not {lease_s}")


def check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise ValueError(f"review state must be one of {', '.join(sorted(STATES))}, not {state!r}")


def decision_record(decision: str, reviewer: str, comment: str, content: Any, now: float) -> tuple[str, bytes]:
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


def without_content(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if decision is None else {key: value for key, value in decision.items() if key != "content"}


class Waiters:
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


def _leased(item: ReviewItem, now: float) -> bool:
    return item.state == "claimed" and item.claim_expires is not None and item.claim_expires > now


# -- the state machine, applied to one item (the local store runs these inside a transaction) --------------
def _check_open(item: ReviewItem, now: float) -> None:
    """Refuse unless the item can still be claimed or decided."""
    if item.state in FINAL:
        raise conflict(item.id, "final", item.state)
    if now >= item.deadline:
        raise conflict(item.id, "overdue")


def claim_item(item: ReviewItem, reviewer: str, lease_s: float, now: float, max_deliveries: int) -> None:
    """Lease the item to `reviewer`. An item already handed out `max_deliveries` times is parked as dead
    and the claim refused: the caller stores the item whether this returns or raises."""
    _check_open(item, now)
    if item.state == "dead":
        raise conflict(item.id, "dead")
    if _leased(item, now):
        raise conflict(item.id, "leased", item.claimed_by or "")
    if item.deliveries >= max_deliveries:
        item.state, item.claimed_by, item.claim_expires = "dead", None, None
        raise conflict(item.id, "exhausted", str(item.deliveries))
    item.state, item.claimed_by, item.claim_expires = "claimed", reviewer, now + lease_s
    item.deliveries += 1


def decide_item(item: ReviewItem, reviewer: str, state: str, record: bytes, now: float) -> None:
    """Record a decision (`decision_record`'s state and record): by the lease holder, or anyone if unleased."""
    _check_open(item, now)
    leased = _leased(item, now)
    if leased and item.claimed_by != reviewer:
        raise conflict(item.id, "leased", item.claimed_by or "")
    if not leased:
        item.deliveries += 1  # deciding implies claiming
    item.state, item.claimed_by, item.claim_expires = state, reviewer, None
    item.decision = orjson.loads(record)


def forget_item(item: ReviewItem) -> None:
    if item.state not in FINAL:
        raise conflict(item.id, "open")
    item.content, item.decision = {}, without_content(item.decision)


def begin_resume_item(item: ReviewItem, holder: str, lease_s: float, now: float) -> bool:
    """Take the resume lease; False when the item has its result or a live lease is someone else's."""
    if not item.allowed:
        raise conflict(item.id, "unresumable", item.state)
    if item.result is not None or (item.resume_expires is not None and item.resume_expires > now):
        return False
    item.resumed_by, item.resume_expires = holder, now + lease_s
    return True


def result_item(item: ReviewItem, result: dict[str, Any]) -> None:
    if not item.allowed:
        raise conflict(item.id, "unresumable", item.state)
    item.result = orjson.loads(orjson.dumps(result))
    item.content, item.decision, item.resume_expires = {}, without_content(item.decision), None
