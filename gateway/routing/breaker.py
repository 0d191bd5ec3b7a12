"""A per-target circuit breaker: stop sending requests to a target that keeps failing, then probe it.

    closed ──(N consecutive failures, or error rate over the window)──> open
    open ──(open time passed; next allow())──> half_open, one probe in flight
    half_open ──probe succeeds──> closed (counters and open time reset)
    half_open ──probe fails──> open, for twice as long (up to max_open_s)

The breaker only counts what it is told: the router decides which failures say something about the
target (a timeout does; a provider 400 caused by the client's request does not), so one client
sending bad requests cannot cut a healthy target off for everyone.

Time comes from an injected clock, so tests drive it without sleeping. The breaker is not locked: the
gateway calls it from one event loop per worker, and each worker keeps its own breakers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gateway.config.model import BreakerSettings as BreakerConfig  # defined with the config: `routing.breaker`

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

_BUCKETS = 30
"""Ring size of the error-rate window: the default 30 s window gets one bucket per second."""


class _Window:
    """Request and failure counts over the last `window_s`, in a fixed ring of time buckets.

    Running totals make each call O(1) (advancing clears at most `_BUCKETS` slots) and memory constant
    whatever the traffic. The price is granularity: an outcome is forgotten between `window_s` minus
    one bucket and `window_s` after it was recorded.
    """

    __slots__ = ("_width", "_requests", "_failures", "_head", "requests", "failures")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / _BUCKETS
        self._requests = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._head: int | None = None  # absolute index (time // width) of the newest bucket
        self.requests = 0
        self.failures = 0

    def add(self, now: float, failed: bool) -> None:
        slot = self._advance(now) % _BUCKETS
        self._requests[slot] += 1
        self.requests += 1
        if failed:
            self._failures[slot] += 1
            self.failures += 1

    def clear(self) -> None:
        self._requests = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._head = None
        self.requests = self.failures = 0

    def _advance(self, now: float) -> int:
        """Move the head to `now`'s bucket, emptying the buckets that fell out of the window."""
        index = math.floor(now / self._width)
        if self._head is None:
            self._head = index
        if index <= self._head:  # a clock that steps back counts into the head
            return self._head
        for step in range(1, min(index - self._head, _BUCKETS) + 1):
            slot = (self._head + step) % _BUCKETS
            self.requests -= self._requests[slot]
            self.failures -= self._failures[slot]
            self._requests[slot] = self._failures[slot] = 0
        self._head = index
        return index


class CircuitBreaker:
    """The breaker of one target. Ask `allow()` before each try, then report exactly one of
    `record_success()`, `record_failure()` or `release()` for every try that was allowed.

    Outcomes reported while open are ignored: they belong to tries that started before it opened,
    and a late failure must not extend the open time. In half_open any verdict is taken as the probe's.
    """

    def __init__(
        self,
        config: BreakerConfig = BreakerConfig(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._state = CLOSED
        self._consecutive = 0
        self._window = _Window(config.window_s)
        self._opened_at = 0.0
        self._open_for = config.open_s
        self._probing = False

    @property
    def state(self) -> str:
        """`closed`, `open` or `half_open`. An open breaker whose time is up reads `open` until the
        next `allow()` takes the probe: a read never changes state (nor fires `on_change`)."""
        return self._state

    @property
    def retry_in_s(self) -> float:
        """Seconds until `allow()` lets a probe through: 0 when closed or half_open (half_open waits
        on the probe in flight, whose duration is unknown), the rest of the open time when open."""
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def allow(self) -> bool:
        """Whether a try may go to this target now; a True in half_open takes the single probe slot."""
        if self._state == CLOSED:
            return True
        if self._state == OPEN:
            if self._clock() - self._opened_at < self._open_for:
                return False
            self._probing = True
            self._transition(HALF_OPEN)
            return True
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        if self._state == CLOSED:
            self._consecutive = 0
            self._window.add(self._clock(), failed=False)
        elif self._state == HALF_OPEN:
            self._consecutive = 0
            self._window.clear()
            self._open_for = self.config.open_s
            self._probing = False
            self._transition(CLOSED)

    def record_failure(self) -> None:
        if self._state == CLOSED:
            self._consecutive += 1
            self._window.add(self._clock(), failed=True)
            if self._consecutive >= self.config.failures or self._rate_tripped():
                self._open(self.config.open_s)
        elif self._state == HALF_OPEN:
            self._open(min(self._open_for * 2, self.config.max_open_s))

    def release(self) -> None:
        """Give back the probe slot of a try that ended without a verdict (the client went away,
        the deadline was the client's, the failure said nothing about the target)."""
        if self._state == HALF_OPEN:
            self._probing = False

    def _rate_tripped(self) -> bool:
        window = self._window
        return window.requests >= self.config.min_requests and window.failures >= self.config.error_rate * window.requests

    def _open(self, open_for: float) -> None:
        self._opened_at = self._clock()
        self._open_for = open_for
        self._probing = False
        self._transition(OPEN)

    def _transition(self, new: str) -> None:
        """Change state, then tell `on_change`: it sees a consistent breaker if it reads it back."""
        old, self._state = self._state, new
        if self._on_change is not None and old != new:
            self._on_change(old, new)
