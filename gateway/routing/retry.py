"""Retry policy: which upstream failures are worth another try, and how long to wait before it.

The router owns the loop (which target, how many tries, the deadline); this module only answers two
questions about one failure, so the rules are testable without a network:

- `failure_class` sorts an `UpstreamError` into one of `RETRY_ON`, or None when retrying cannot help
  (the provider refused the request itself, or refused the gateway's own credentials: the same call
  would fail the same way on every try).
- `RetryPolicy.delay_s` is capped exponential backoff with jitter, so many gateway workers that saw the
  same outage do not retry in lockstep; a provider's Retry-After wins when it asks for longer.
"""

from __future__ import annotations

import math
import random as _random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

from gateway.config.model import RETRY_ON
from gateway.errors import (
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)

__all__ = ["NO_RETRY", "RETRY_ON", "RetryPolicy", "failure_class", "retry_after_s"]  # RETRY_ON: the config's spelling

_STATUS_CODE = re.compile(r"upstream_status_(\d{3})", re.ASCII)
_SECONDS = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def failure_class(error: UpstreamError) -> str | None:
    """The retry class of an upstream failure, or None when no retry can succeed.

    Only the exception class and code are read, never the message: adapters already chose the most
    specific class (see `gateway.errors`), and codes are the stable part of that contract.
    """
    if isinstance(error, UpstreamConnectError):  # refused, reset, stream broken or truncated
        return "connect_error"
    if isinstance(error, UpstreamTimeout):  # connect, first byte, idle or deadline
        return "timeout"
    if isinstance(error, UpstreamBadResponse):
        return "bad_response"
    if isinstance(error, UpstreamStatusError):
        return _status_class(error.code)
    if isinstance(error, UpstreamRejected):
        # Only a rate limit says "not now" rather than "not this request"; 400/404/422... would be
        # refused again verbatim, and passing them through lets the client's SDK raise the right error.
        return "429" if error.status == 429 else None
    return None  # UpstreamUnavailable is the gateway's own verdict (nothing to try), not a target failure


def _status_class(code: str) -> str | None:
    if code == "upstream_auth_failed":  # our key is wrong or revoked: an operator must fix the config
        return None
    match = _STATUS_CODE.fullmatch(code)
    if match is None:  # upstream_stream_error (an error event mid-stream) or the bare default code
        return "5xx"
    status = int(match.group(1))
    # A 1xx/3xx final answer is the provider not speaking the protocol rather than failing.
    return "5xx" if 500 <= status <= 599 else "bad_response"


def retry_after_s(error: UpstreamError, now: float | None = None) -> float | None:
    """The provider's Retry-After as seconds from `now` (wall-clock, default `time.time()`), or None.

    Both RFC 9110 forms are read: delay-seconds (fractions tolerated, some providers send them) and an
    HTTP-date. Anything else, including a date already past, is no hint at all rather than "retry at
    once": a malformed header must not turn into a tight retry loop.
    """
    value = _header(error.headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time
        when = when.replace(tzinfo=timezone.utc)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds >= 0 else None


def _header(headers: dict[str, str], name: str) -> str | None:
    """Header names are case-insensitive; adapters lower-case them, but do not rely on it."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a route retries one target: how often, on which failures, and with what pauses.

    `attempts` counts every try, the first included, so the default of 1 never retries.
    """

    attempts: int = 1
    backoff_ms: float = 200
    max_backoff_ms: float = 5000
    jitter: float = 0.5
    retry_on: frozenset[str] = frozenset({"connect_error", "timeout", "429", "5xx"})
    max_retry_after_s: float = 30

    def __post_init__(self) -> None:
        # Loaders turn these ValueErrors into config errors; a bad policy must not surface mid-request.
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        for name in ("backoff_ms", "max_backoff_ms", "max_retry_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        unknown = sorted(self.retry_on - set(RETRY_ON))
        if unknown:
            raise ValueError(f"retry_on has unknown failure classes {unknown}; known: {list(RETRY_ON)}")

    def retries(self, error: UpstreamError) -> bool:
        """Whether this failure is one the policy retries (attempts left is the caller's count)."""
        kind = failure_class(error)
        return kind is not None and kind in self.retry_on

    def delay_s(self, attempt: int, error: UpstreamError | None, random: Callable[[], float] = _random.random) -> float:
        """Seconds to wait after try number `attempt` (1-based) failed with `error`.

        The backoff is `backoff_ms * 2**(attempt-1)`, capped at `max_backoff_ms`, then shortened by up
        to `jitter` of itself ("full delay in [d*(1-jitter), d]"). A Retry-After longer than that is
        honoured up to `max_retry_after_s`; it is not jittered, since waiting less than asked for
        earns another 429.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        # 2.0**1023 is the largest finite power of two: a float product can reach inf, never raise.
        delay_ms = min(self.max_backoff_ms, self.backoff_ms * 2.0 ** min(attempt - 1, 1023))
        delay = delay_ms / 1000 * (1 - self.jitter * random())
        hint = retry_after_s(error) if error is not None else None
        if hint is not None:
            delay = max(delay, min(hint, self.max_retry_after_s))
        return delay


NO_RETRY = RetryPolicy()
"""One try, no retries: a route's policy when its config says nothing."""
