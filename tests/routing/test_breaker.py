"""The per-target circuit breaker, driven by a fake clock: when it opens, probes and closes again."""

from __future__ import annotations

import pytest

from gateway.routing.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig, CircuitBreaker


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: Clock, changes: list[tuple[str, str]] | None = None, **config: float) -> CircuitBreaker:
    def on_change(old: str, new: str) -> None:
        assert changes is not None
        changes.append((old, new))

    return CircuitBreaker(BreakerConfig(**config), clock=clock, on_change=on_change if changes is not None else None)  # type: ignore[arg-type]


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_success()


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.config.failures)
    assert breaker.state == OPEN


def test_starts_closed_and_allows() -> None:
    breaker = CircuitBreaker(clock=Clock())
    assert breaker.state == CLOSED
    assert breaker.allow()
    assert breaker.retry_in_s == 0.0


def test_opens_after_n_consecutive_failures() -> None:
    breaker = make(Clock(), failures=3)
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker, 1)
    assert breaker.state == OPEN
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = make(Clock(), failures=3)
    for _ in range(5):
        fail(breaker, 2)
        succeed(breaker, 1)
    assert breaker.state == CLOSED


def test_opens_on_error_rate_only_past_min_requests() -> None:
    breaker = make(Clock(), failures=100, error_rate=0.5, min_requests=10)
    for _ in range(4):  # 8 requests, 50% failures, never two failures in a row
        succeed(breaker, 1)
        fail(breaker, 1)
    assert breaker.state == CLOSED  # below min_requests: not judged
    succeed(breaker, 1)
    assert breaker.state == CLOSED  # 9 requests, 4 failures
    fail(breaker, 1)
    assert breaker.state == OPEN  # 10 requests, 5 failures = 50%


def test_error_rate_below_threshold_stays_closed() -> None:
    breaker = make(Clock(), failures=100, error_rate=0.5, min_requests=10)
    for _ in range(50):
        succeed(breaker, 2)
        fail(breaker, 1)
    assert breaker.state == CLOSED


def test_window_forgets_old_outcomes() -> None:
    clock = Clock()
    breaker = make(clock, failures=100, error_rate=0.5, min_requests=10, window_s=30)
    fail(breaker, 9)  # 9 failures, not yet judged
    breaker.record_success()  # reset the consecutive count without using allow() semantics
    clock.advance(31)  # all of it is now out of the window
    fail(breaker, 1)
    succeed(breaker, 8)
    fail(breaker, 1)
    assert breaker.state == CLOSED  # 10 requests in the window, only 2 failures


def test_window_keeps_recent_outcomes() -> None:
    clock = Clock()
    breaker = make(clock, failures=100, error_rate=0.5, min_requests=10, window_s=30)
    for _ in range(4):
        succeed(breaker, 1)
        fail(breaker, 1)
        clock.advance(3)
    succeed(breaker, 1)
    fail(breaker, 1)
    assert breaker.state == OPEN  # 10 requests over 12 s, half failed


def test_window_slides_bucket_by_bucket() -> None:
    clock = Clock(0.0)
    breaker = make(clock, failures=100, error_rate=0.5, min_requests=3, window_s=30)
    succeed(breaker, 2)
    clock.advance(20)
    fail(breaker, 1)
    assert breaker.state == CLOSED  # S S F: 33%
    clock.advance(15)  # t=35: the successes at t=0 are gone, the failure at t=20 is still in
    succeed(breaker, 1)
    assert breaker.state == CLOSED  # F S: below min_requests
    fail(breaker, 1)
    assert breaker.state == OPEN  # F S F: 67%; with the old successes it would be 2 of 5


def test_a_long_quiet_period_empties_the_window() -> None:
    clock = Clock()
    breaker = make(clock, failures=100, error_rate=0.5, min_requests=4, window_s=30)
    fail(breaker, 3)
    clock.advance(10_000)
    fail(breaker, 1)
    succeed(breaker, 3)
    assert breaker.state == CLOSED


def test_counts_stay_exact_across_many_windows() -> None:
    clock = Clock(0.0)
    breaker = make(clock, failures=100, error_rate=0.5, min_requests=4, window_s=30)
    for _ in range(5):  # the ring wraps onto the same slots again and again
        succeed(breaker, 2)
        fail(breaker, 1)
        clock.advance(30)
    assert breaker.state == CLOSED
    fail(breaker, 3)
    assert breaker.state == CLOSED  # 3 requests: below min_requests, whatever came before
    fail(breaker, 1)
    assert breaker.state == OPEN


def test_open_turns_half_open_after_open_s() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = make(clock, changes, failures=1, open_s=30)
    trip(breaker)
    clock.advance(29.9)
    assert not breaker.allow()
    assert breaker.state == OPEN
    clock.advance(0.1)
    assert breaker.state == OPEN  # reading never transitions
    assert breaker.allow()
    assert breaker.state == HALF_OPEN
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_one_probe_at_a_time() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    assert not breaker.allow()
    clock.advance(100)
    assert not breaker.allow()  # still waiting on the probe, however long it takes


def test_probe_success_closes_and_resets() -> None:
    clock = Clock()
    breaker = make(clock, failures=2, open_s=10)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED
    assert breaker.allow() and breaker.allow()
    fail(breaker, 1)
    assert breaker.state == CLOSED  # the consecutive count started over


def test_probe_failure_reopens_with_doubled_capped_open_time() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10, max_open_s=50)
    trip(breaker)
    waits = []
    for _ in range(5):
        waits.append(breaker.retry_in_s)
        clock.advance(breaker.retry_in_s)
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state == OPEN
    waits.append(breaker.retry_in_s)
    assert waits == [10, 20, 40, 50, 50, 50]


def test_open_time_resets_after_closing() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10, max_open_s=100)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_in_s == 20
    clock.advance(20)
    assert breaker.allow()
    breaker.record_success()
    trip(breaker)
    assert breaker.retry_in_s == 10


def test_doubled_open_time_is_enforced() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    clock.advance(19)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_release_frees_the_probe_slot() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = make(clock, changes, failures=1, open_s=10)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.release()
    assert breaker.state == HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_release_outside_half_open_does_nothing() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10)
    breaker.release()
    assert breaker.state == CLOSED
    trip(breaker)
    breaker.release()
    assert breaker.state == OPEN and not breaker.allow()


def test_outcomes_reported_while_open_are_ignored() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=10)
    trip(breaker)
    clock.advance(5)
    breaker.record_failure()  # a try that started before the breaker opened
    breaker.record_success()
    assert breaker.state == OPEN
    assert breaker.retry_in_s == 5


def test_on_change_sequence() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = make(clock, changes, failures=2, open_s=10)
    succeed(breaker, 3)
    fail(breaker, 2)
    assert not breaker.allow()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    clock.advance(20)
    assert breaker.allow()
    breaker.record_success()
    succeed(breaker, 1)
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_on_change_sees_the_new_state() -> None:
    clock = Clock()
    seen: list[str] = []
    breaker: CircuitBreaker
    breaker = CircuitBreaker(BreakerConfig(failures=1), clock=clock, on_change=lambda old, new: seen.append(breaker.state))
    fail(breaker, 1)
    assert seen == [OPEN]


def test_retry_in_s() -> None:
    clock = Clock()
    breaker = make(clock, failures=1, open_s=30)
    assert breaker.retry_in_s == 0.0
    trip(breaker)
    assert breaker.retry_in_s == 30
    clock.advance(12.5)
    assert breaker.retry_in_s == pytest.approx(17.5)
    clock.advance(40)
    assert breaker.retry_in_s == 0.0  # due, though still open until allow() takes the probe
    assert breaker.allow()
    assert breaker.retry_in_s == 0.0  # half_open


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failures": 0},
        {"error_rate": 0},
        {"error_rate": 1.5},
        {"window_s": 0},
        {"min_requests": 0},
        {"open_s": -1},
        {"open_s": float("inf")},
        {"open_s": 60, "max_open_s": 30},
    ],
)
def test_invalid_configs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


def test_default_config() -> None:
    assert BreakerConfig() == BreakerConfig(failures=5, error_rate=0.5, window_s=30, min_requests=20, open_s=30, max_open_s=300)
