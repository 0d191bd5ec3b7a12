"""One contract, two review stores: what the local queue (a SQLite file) and the Redis one both guarantee,
also between two workers or instances sharing one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.review.local_store import LocalReviewStore
from gateway.review.redis_store import RedisReviewStore
from gateway.review.store import (
    ReviewConflict,
    ReviewItem,
    ReviewNotFound,
    ReviewStore,
)
from gateway.testing.redis_server import RedisServer

StoreFactory = Callable[..., ReviewStore]
LEASE_S = 0.2


def item(queue: str = "security", *, created: float | None = None, deadline_in: float = 60.0, **fields: Any) -> ReviewItem:
    now = time.time()
    return ReviewItem.new(
        queue=queue, phase=fields.pop("phase", "request"), request_id=fields.pop("request_id", "req-1"),
        principal={"app": "support-bot", "tenant": "acme", "sub": None}, policy="injection", rule="injection-review",
        policy_version="sha256:abc", reason="score 0.93 >= 0.8",
        content=fields.pop("content", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": []}),
        deadline=now + deadline_in, on_timeout=fields.pop("on_timeout", "block"),
        created=now if created is None else created,
    )


@pytest.fixture(params=["local", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Builds stores of the parametrized kind; those of one test share its file or Redis prefix (like the
    workers of an instance, or instances)."""
    opened: list[ReviewStore] = []

    def factory(max_deliveries: int = 5, retention_s: float = 3600.0) -> ReviewStore:
        store: ReviewStore
        if request.param == "local":
            store = LocalReviewStore(tmp_path, max_deliveries, retention_s=retention_s)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisReviewStore(server.url, request.getfixturevalue("redis_prefix"), max_deliveries, retention_s=retention_s)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> ReviewStore:
    return make_store()


@pytest.fixture
def pair(make_store: StoreFactory) -> tuple[ReviewStore, ReviewStore]:
    """Two workers (local: one file) or two instances (redis: one server and prefix) sharing one queue."""
    return make_store(), make_store()


async def test_create_get_round_trips_every_field(store: ReviewStore) -> None:
    created = item(content={"messages": [], "n": 1.5, "nested": {"empty": {}, "list": []}})
    await store.create(created)
    assert await store.get(created.id) == created
    assert await store.get("nope") is None
    with pytest.raises(ReviewConflict):
        await store.create(created)


async def test_returned_items_are_copies(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    created.content["model"] = "changed"
    got = await store.get(created.id)
    assert got is not None and got.content["model"] == "gpt-4o"
    got.state = "approved"
    again = await store.get(created.id)
    assert again is not None and again.state == "pending"


async def test_list_newest_first_with_queue_and_state_filters(store: ReviewStore) -> None:
    base = time.time() - 100
    security = [item("security", created=base + n) for n in range(3)]
    legal = [item("legal", created=base + 10 + n) for n in range(2)]
    for one in security + legal:
        await store.create(one)
    await store.claim(security[0].id, "ann", 30)

    def ids(items: list[ReviewItem]) -> list[str]:
        return [one.id for one in items]

    assert ids(await store.list()) == ids(list(reversed(security + legal)))
    assert ids(await store.list(limit=2)) == [legal[1].id, legal[0].id]
    assert ids(await store.list(queue="security")) == [security[2].id, security[1].id, security[0].id]
    assert ids(await store.list(state="claimed")) == [security[0].id]
    assert ids(await store.list(queue="security", state="pending")) == [security[2].id, security[1].id]
    assert ids(await store.list(queue="legal", state="claimed")) == []
    assert await store.list(queue="nobody") == []
    with pytest.raises(ValueError):
        await store.list(state="bogus")


async def test_claim_then_decide(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    claimed = await store.claim(created.id, "ann", 30)
    assert claimed.state == "claimed" and claimed.claimed_by == "ann" and claimed.deliveries == 1
    assert claimed.claim_expires is not None and claimed.claim_expires > time.time() + 25
    decided = await store.decide(created.id, "ann", "approve", comment="looks fine")
    assert decided.state == "approved" and decided.deliveries == 1 and decided.claim_expires is None
    assert decided.decision is not None
    summary = {key: decided.decision[key] for key in ("decision", "reviewer", "comment")}
    assert summary == {"decision": "approve", "reviewer": "ann", "comment": "looks fine"}
    assert abs(decided.decision["ts"] - time.time()) < 5
    assert await store.get(created.id) == decided
    assert [one.id for one in await store.list(state="approved")] == [created.id]
    assert await store.list(state="claimed") == []


async def test_decide_without_claim_implies_claim(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    decided = await store.decide(created.id, "bob", "reject", comment="no")
    assert decided.state == "rejected" and decided.claimed_by == "bob" and decided.deliveries == 1


async def test_only_the_lease_holder_decides_a_leased_item(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.claim(created.id, "ann", 30)
    with pytest.raises(ReviewConflict, match="claimed by ann"):
        await store.decide(created.id, "bob", "approve")
    assert (await store.decide(created.id, "ann", "approve")).state == "approved"


async def test_a_decision_is_final(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.decide(created.id, "ann", "approve")
    for reviewer, decision in (("ann", "approve"), ("ann", "reject"), ("bob", "reject")):
        with pytest.raises(ReviewConflict, match="already approved"):
            await store.decide(created.id, reviewer, decision)
    with pytest.raises(ReviewConflict):
        await store.claim(created.id, "bob", 30)
    after = await store.get(created.id)
    assert after is not None and after.decision is not None and after.decision["reviewer"] == "ann"


async def test_a_second_reviewer_claims_only_after_the_lease_lapses(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.claim(created.id, "ann", LEASE_S)
    with pytest.raises(ReviewConflict, match="claimed by ann"):
        await store.claim(created.id, "bob", LEASE_S)
    with pytest.raises(ReviewConflict):
        await store.claim(created.id, "ann", LEASE_S)  # not a renewal either
    await asyncio.sleep(LEASE_S + 0.05)
    claimed = await store.claim(created.id, "bob", 30)
    assert claimed.claimed_by == "bob" and claimed.deliveries == 2
    with pytest.raises(ReviewConflict, match="claimed by bob"):
        await store.decide(created.id, "ann", "approve")  # ann's lease is gone


async def test_a_lapsed_lease_lets_anyone_decide(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.claim(created.id, "ann", LEASE_S)
    await asyncio.sleep(LEASE_S + 0.05)
    decided = await store.decide(created.id, "bob", "approve")
    assert decided.claimed_by == "bob" and decided.deliveries == 2


async def test_too_many_deliveries_dead_letter_the_item(make_store: StoreFactory) -> None:
    store = make_store(max_deliveries=2)
    created, other = item(), item()
    await store.create(created)
    await store.create(other)
    for reviewer in ("ann", "bob"):
        await store.claim(created.id, reviewer, LEASE_S)
        await asyncio.sleep(LEASE_S + 0.05)
    with pytest.raises(ReviewConflict, match="handed out 2 times"):
        await store.claim(created.id, "cy", 30)
    dead = await store.get(created.id)
    assert dead is not None and dead.state == "dead" and dead.deliveries == 2 and dead.claimed_by is None
    assert [one.id for one in await store.list(state="dead")] == [created.id]
    assert [one.id for one in await store.list(queue="security", state="dead")] == [created.id]
    with pytest.raises(ReviewConflict, match="dead-lettered"):
        await store.claim(created.id, "cy", 30)
    # an operator can still settle it, and the other item was never affected
    assert (await store.decide(created.id, "operator", "reject", comment="poison")).state == "rejected"
    assert await store.list(state="dead") == []
    assert (await store.claim(other.id, "ann", 30)).deliveries == 1


async def test_decision_arguments_are_checked(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    with pytest.raises(ValueError, match="edited content"):
        await store.decide(created.id, "ann", "edit")
    with pytest.raises(ValueError, match="edit only"):
        await store.decide(created.id, "ann", "approve", content="x")
    with pytest.raises(ValueError):
        await store.decide(created.id, "ann", "maybe")
    with pytest.raises(ValueError):
        await store.decide(created.id, "", "approve")
    with pytest.raises(ValueError):
        await store.claim(created.id, "ann", 0)
    unchanged = await store.get(created.id)
    assert unchanged is not None and unchanged.state == "pending" and unchanged.deliveries == 0
    edited = await store.decide(created.id, "ann", "edit", comment="softened", content="a gentler prompt")
    assert edited.state == "edited" and edited.decision is not None and edited.decision["content"] == "a gentler prompt"


async def test_unknown_ids(store: ReviewStore) -> None:
    with pytest.raises(ReviewNotFound):
        await store.claim("nope", "ann", 30)
    with pytest.raises(ReviewNotFound):
        await store.decide("nope", "ann", "approve")
    with pytest.raises(ReviewNotFound):
        await store.wait_decided("nope", 0.1)
    with pytest.raises(ReviewNotFound):
        await store.forget_content("nope")


async def test_expire_due_marks_overdue_items_once(store: ReviewStore) -> None:
    overdue = [item(deadline_in=-5), item(deadline_in=-1)]
    claimed_overdue = item(deadline_in=0.3)
    fresh = item()
    for one in (*overdue, claimed_overdue, fresh):
        await store.create(one)
    await store.claim(claimed_overdue.id, "ann", 30)
    await asyncio.sleep(0.35)
    # past its deadline, nothing can be claimed or decided, even before a sweep
    with pytest.raises(ReviewConflict, match="past its deadline"):
        await store.decide(claimed_overdue.id, "ann", "approve")
    with pytest.raises(ReviewConflict, match="past its deadline"):
        await store.claim(overdue[0].id, "ann", 30)
    expired = await store.expire_due(time.time())
    assert sorted(one.id for one in expired) == sorted([overdue[0].id, overdue[1].id, claimed_overdue.id])
    assert all(one.state == "expired" and one.claim_expires is None for one in expired)
    assert {one.id: one.on_timeout for one in expired}[overdue[0].id] == "block"
    assert await store.expire_due(time.time()) == []
    assert (await store.get(fresh.id)).state == "pending"  # type: ignore[union-attr]
    assert len(await store.list(state="expired")) == 3
    with pytest.raises(ReviewConflict, match="already expired"):
        await store.decide(overdue[0].id, "ann", "approve")


async def test_expire_due_skips_decided_items(store: ReviewStore) -> None:
    soon = item(deadline_in=0.2)
    await store.create(soon)
    await store.decide(soon.id, "ann", "approve")
    await asyncio.sleep(0.25)
    assert await store.expire_due(time.time()) == []
    assert (await store.get(soon.id)).state == "approved"  # type: ignore[union-attr]


async def decision_wakes_waiter(waiting: ReviewStore, deciding: ReviewStore, within_s: float) -> ReviewItem:
    """A request waits on `waiting`; a reviewer decides through `deciding`; the waiter wakes within `within_s`."""
    created = item()
    await deciding.create(created)
    waiter = asyncio.create_task(waiting.wait_decided(created.id, 10))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    started = time.monotonic()
    await deciding.decide(created.id, "ann", "approve")
    woken = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < within_s
    assert woken is not None and woken.state == "approved"
    return woken


async def test_wait_decided_wakes_on_decide(store: ReviewStore) -> None:
    created = await decision_wakes_waiter(store, store, within_s=0.5)
    again = await store.wait_decided(created.id, 0)  # already final: at once
    assert again is not None and again.state == "approved"


async def test_wait_decided_wakes_on_expiry(store: ReviewStore) -> None:
    created = item(deadline_in=0.2)
    await store.create(created)
    waiter = asyncio.create_task(store.wait_decided(created.id, 10))
    await asyncio.sleep(0.3)
    await store.expire_due(time.time())
    woken = await asyncio.wait_for(waiter, 5)
    assert woken is not None and woken.state == "expired"


async def test_wait_decided_times_out_with_none(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.claim(created.id, "ann", 30)
    started = time.monotonic()
    assert await store.wait_decided(created.id, 0.3) is None
    assert 0.25 <= time.monotonic() - started < 2
    assert await store.wait_decided(created.id, 0) is None


async def test_forget_content_only_after_the_review(store: ReviewStore) -> None:
    created, edited = item(), item()
    await store.create(created)
    await store.create(edited)
    with pytest.raises(ReviewConflict, match="still under review"):
        await store.forget_content(created.id)
    await store.decide(created.id, "ann", "approve", comment="ok")
    await store.forget_content(created.id)
    forgotten = await store.get(created.id)
    assert forgotten is not None and forgotten.content == {} and forgotten.state == "approved"
    assert forgotten.decision is not None and forgotten.decision["comment"] == "ok"
    await store.decide(edited.id, "ann", "edit", content={"messages": []})
    await store.forget_content(edited.id)
    await store.forget_content(edited.id)  # idempotent
    after = await store.get(edited.id)
    assert after is not None and after.content == {} and after.decision is not None
    assert "content" not in after.decision and after.decision["decision"] == "edit"


async def test_an_allowed_review_is_resumed_once_and_keeps_its_result(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    with pytest.raises(ReviewConflict, match="may not go on"):
        await store.begin_resume(created.id, "gw-1", 30)  # still pending
    await store.decide(created.id, "ann", "edit", comment="trimmed", content="hello")
    taken = await store.begin_resume(created.id, "gw-1", 30)
    assert taken is not None and taken.resumed_by == "gw-1" and taken.decision is not None and taken.decision["content"] == "hello"
    assert await store.begin_resume(created.id, "gw-2", 30) is None  # a live lease: nobody else calls the provider
    await store.save_result(created.id, {"status": 200, "body": {"choices": []}})
    done = await store.get(created.id)
    assert done is not None and done.result == {"status": 200, "body": {"choices": []}}
    assert done.content == {} and done.decision is not None and "content" not in done.decision  # held content dropped
    assert await store.begin_resume(created.id, "gw-2", 30) is None  # it has its result


async def test_a_lapsed_resume_lease_is_taken_over(store: ReviewStore) -> None:
    created = item()
    await store.create(created)
    await store.decide(created.id, "ann", "approve")
    assert await store.begin_resume(created.id, "gw-1", LEASE_S) is not None
    await asyncio.sleep(LEASE_S + 0.1)  # gw-1 died mid-call
    again = await store.begin_resume(created.id, "gw-2", 30)
    assert again is not None and again.resumed_by == "gw-2"


async def test_rejected_and_blocked_reviews_are_never_resumed(store: ReviewStore) -> None:
    rejected, blocked, allowed = item(), item(deadline_in=0.05), item(deadline_in=0.05, on_timeout="allow")
    for created in (rejected, blocked, allowed):
        await store.create(created)
    await store.decide(rejected.id, "ann", "reject")
    await asyncio.sleep(0.1)
    await store.expire_due(time.time())
    for refused in (rejected, blocked):
        with pytest.raises(ReviewConflict, match="may not go on"):
            await store.begin_resume(refused.id, "gw-1", 30)
        with pytest.raises(ReviewConflict, match="may not go on"):
            await store.save_result(refused.id, {"status": 200})
    assert await store.begin_resume(allowed.id, "gw-1", 30) is not None  # expired with on_timeout: allow
    with pytest.raises(ReviewNotFound):
        await store.begin_resume("nope", "gw-1", 30)


async def test_final_items_are_deleted_after_retention(make_store: StoreFactory) -> None:
    store = make_store(retention_s=1.0)
    decided, expired, live = item(), item(deadline_in=0.05), item()
    for created in (decided, expired, live):
        await store.create(created)
    await store.decide(decided.id, "ann", "approve")
    await asyncio.sleep(0.1)
    await store.expire_due(time.time())
    await asyncio.sleep(1.2)
    await store.expire_due(time.time())
    assert await store.get(decided.id) is None and await store.get(expired.id) is None
    assert await store.get(live.id) is not None  # retention counts from the end of a review only
    assert [found.id for found in await store.list()] == [live.id]


async def test_depth_per_queue(store: ReviewStore) -> None:
    assert await store.depth() == {}
    old = item("security", created=time.time() - 30)
    await store.create(old)
    await store.create(item("security", created=time.time() - 5))
    claimed = item("security")
    await store.create(claimed)
    await store.claim(claimed.id, "ann", 30)
    done = item("legal")
    await store.create(done)
    await store.decide(done.id, "ann", "approve")
    depth = await store.depth()
    assert set(depth) == {"security", "legal"}
    assert depth["legal"] == {"pending": 0, "claimed": 0, "dead": 0, "oldest_pending_s": 0}
    security = depth["security"]
    assert (security["pending"], security["claimed"], security["dead"]) == (2, 1, 0)
    assert 29 <= security["oldest_pending_s"] < 40


async def test_item_json_round_trip_and_validation() -> None:
    one = item(phase="response", on_timeout="allow")
    assert ReviewItem.from_json(one.to_json()) == one
    assert len(one.id) == 24 and one.id != item().id
    with pytest.raises(ValueError):
        ReviewItem.from_json(one.to_json().replace(b'"pending"', b'"bogus"'))
    with pytest.raises(ValueError):
        item(on_timeout="shrug")


async def test_a_decision_on_one_worker_wakes_a_waiter_on_another(pair: tuple[ReviewStore, ReviewStore]) -> None:
    first, second = pair
    await decision_wakes_waiter(first, second, within_s=1.0)


async def test_concurrent_expiry_expires_each_item_once(pair: tuple[ReviewStore, ReviewStore]) -> None:
    first, second = pair
    overdue = [item(deadline_in=-1) for _ in range(1200)]  # more than one Redis script batch
    for start in range(0, len(overdue), 50):
        await asyncio.gather(*(first.create(one) for one in overdue[start:start + 50]))
    now = time.time()
    results = await asyncio.gather(first.expire_due(now), second.expire_due(now), first.expire_due(now), second.expire_due(now))
    ids = [one.id for result in results for one in result]
    assert len(ids) == len(set(ids)) == len(overdue)
    assert set(ids) == {one.id for one in overdue}


async def test_concurrent_decides_exactly_one_wins(pair: tuple[ReviewStore, ReviewStore]) -> None:
    first, second = pair
    items = [item() for _ in range(20)]
    for one in items:
        await first.create(one)
    for one in items:
        outcomes = await asyncio.gather(
            first.decide(one.id, "ann", "approve"), second.decide(one.id, "bob", "reject"),
            second.decide(one.id, "cy", "approve"), return_exceptions=True,
        )
        winners = [outcome for outcome in outcomes if isinstance(outcome, ReviewItem)]
        assert len(winners) == 1
        assert all(isinstance(outcome, ReviewConflict) for outcome in outcomes if outcome not in winners)
        stored = await second.get(one.id)
        assert stored == winners[0]


async def test_concurrent_claims_exactly_one_wins(pair: tuple[ReviewStore, ReviewStore]) -> None:
    first, second = pair
    created = item()
    await first.create(created)
    outcomes = await asyncio.gather(first.claim(created.id, "ann", 30), second.claim(created.id, "bob", 30), return_exceptions=True)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ReviewConflict", "ReviewItem"]
    stored = await second.get(created.id)
    assert stored is not None and stored.deliveries == 1


async def test_concurrent_resumes_exactly_one_wins(pair: tuple[ReviewStore, ReviewStore]) -> None:
    first, second = pair
    created = item()
    await first.create(created)
    await first.decide(created.id, "ann", "approve")
    outcomes = await asyncio.gather(first.begin_resume(created.id, "gw-1", 30), second.begin_resume(created.id, "gw-2", 30))
    assert sorted(outcome is None for outcome in outcomes) == [False, True]


async def test_the_local_queue_survives_a_restart(tmp_path: Path) -> None:
    first = LocalReviewStore(tmp_path)
    created = item()
    await first.create(created)
    await first.claim(created.id, "ann", 30)
    await first.close()
    restarted = LocalReviewStore(tmp_path)
    kept = await restarted.get(created.id)
    assert kept is not None and kept.state == "claimed" and kept.claimed_by == "ann"
    await restarted.close()


async def test_a_fresh_local_queue_takes_concurrent_first_writes(tmp_path: Path) -> None:
    """Every thread's first call opens its connection; switching the new file to WAL while another thread
    writes used to fail at once with "database is locked" (SQLite does not busy-wait for that)."""
    for attempt in range(20):
        store = LocalReviewStore(tmp_path / str(attempt))
        try:
            outcomes = await asyncio.gather(*[store.create(item()) for _ in range(50)], return_exceptions=True)
        finally:
            await store.close()
        assert [outcome for outcome in outcomes if isinstance(outcome, BaseException)] == []


async def test_closing_the_local_queue_waits_for_calls_still_running(tmp_path: Path) -> None:
    """A cancelled task's call runs on in its thread; closing its connection under it would crash the process."""
    store = LocalReviewStore(tmp_path)
    created = [item() for _ in range(100)]
    calls = [asyncio.ensure_future(store.create(one)) for one in created]
    calls.append(asyncio.ensure_future(store.expire_due(time.time())))
    await asyncio.sleep(0.01)
    for call in calls[::2]:
        call.cancel()  # as the sweeper is, at shutdown
    await store.close()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(outcome is None or isinstance(outcome, (list, asyncio.CancelledError, RuntimeError)) for outcome in outcomes), [o for o in outcomes if not (o is None or isinstance(o, (list, asyncio.CancelledError, RuntimeError)))]
    reopened = LocalReviewStore(tmp_path)
    assert len(await reopened.list(limit=1000)) <= len(created)
    await reopened.close()


async def test_a_waiter_outlives_a_redis_outage() -> None:
    """Redis killed and restarted while a request waits for its review: the item survives (AOF), the
    waiter resubscribes, and a decision made after the restart on another instance still wakes it."""
    with RedisServer(persistent=True) as server:
        waiting, deciding = RedisReviewStore(server.url, "outage:"), RedisReviewStore(server.url, "outage:")
        try:
            created = item()
            await deciding.create(created)
            waiter = asyncio.create_task(waiting.wait_decided(created.id, 30))
            await asyncio.sleep(0.3)
            server.stop()
            await asyncio.sleep(1.0)  # the waiter's subscription breaks; it keeps retrying
            assert not waiter.done()
            await asyncio.to_thread(server.start)
            await asyncio.sleep(1.0)
            started = time.monotonic()
            await deciding.decide(created.id, "ann", "approve")
            woken = await asyncio.wait_for(waiter, 10)
            assert woken is not None and woken.state == "approved"
            assert time.monotonic() - started < 6  # at the latest its periodic re-read (RESYNC_S) finds it
        finally:
            await waiting.close()
            await deciding.close()
