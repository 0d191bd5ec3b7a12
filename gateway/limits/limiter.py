"""The admission stage for usage: rate limits (requests and tokens per minute) and token budgets.

Each configured limit is counted separately for every value of its `per` dimensions (app, tenant,
model): `per: [app]` gives each app its own counter. Before an exchange goes upstream, `admit` checks
all counters it falls under in one atomic step and counts the request; a refusal is a 429 with
`retry-after` (`rate_limited` or `budget_exceeded`). Tokens are known only from the reply: `charge`
queues the exchange's usage (reported by the provider; for a stream without a usage chunk, estimated
from the text relayed) and a background task adds it to the counters, off the request path.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.config.model import BUDGET_PERIODS, Budget, RateLimit
from gateway.errors import RateLimited, ServiceUnavailable
from gateway.exchange import Exchange
from gateway.globs import compile_globs
from gateway.limits.counters import Check, CounterStore
from gateway.tasks import running

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
CHARGE_INTERVAL_S = 0.05
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class _Limit:
    kind: str  # requests | tokens | budget
    rule: int
    per: tuple[str, ...]
    limit: int
    models: re.Pattern[str] | None
    period: str = "minute"

    def applies(self, model: str) -> bool:
        return self.models is None or bool(self.models.match(model))

    def key(self, exchange: Exchange, now: float) -> str:
        principal = exchange.principal
        values = {"app": principal.app, "tenant": principal.tenant or "-", "model": exchange.route.name if exchange.route else exchange.model}
        scope = "|".join(f"{name}={values[name]}" for name in self.per)
        return f"limits:{self.kind}:{self.rule}:{scope}:{_window(self.period, now)}"

    @property
    def ttl_ms(self) -> int:
        return MINUTE_MS * 2 if self.period == "minute" else (BUDGET_PERIODS[self.period] + 3600) * 1000


_WINDOW_FORMATS = {"minute": "%Y%m%d%H%M", "hour": "%Y%m%d%H", "day": "%Y%m%d", "month": "%Y%m"}


def _window(period: str, now: float) -> str:
    """The calendar window (UTC) a count belongs to: a new minute, day or month starts a new counter."""
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime(_WINDOW_FORMATS[period])


def reset_s(period: str, now: float) -> float:
    """Seconds until the window of `now` ends (when its counter starts again from zero)."""
    if period == "month":
        moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        following = (moment.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return following.timestamp() - now
    length = 60 if period == "minute" else BUDGET_PERIODS[period]
    return length - now % length


def _globs(models: tuple[str, ...]) -> re.Pattern[str] | None:
    """None (every model) when the limit names none."""
    return compile_globs(models) if models else None


class Limiter:
    def __init__(self, rate_limits: tuple[RateLimit, ...], budgets: tuple[Budget, ...], counters: CounterStore) -> None:
        limits: list[_Limit] = []
        for index, rate in enumerate(rate_limits):
            if rate.requests_per_minute:
                limits.append(_Limit("requests", index, rate.per, rate.requests_per_minute, _globs(rate.models)))
            if rate.tokens_per_minute:
                limits.append(_Limit("tokens", index, rate.per, rate.tokens_per_minute, _globs(rate.models)))
        for index, budget in enumerate(budgets):
            limits.append(_Limit("budget", index, budget.per, budget.tokens, _globs(budget.models), budget.period))
        self.limits = tuple(limits)
        self.counters = counters
        self._charges: collections.deque[tuple[str, int, int]] = collections.deque()
        self._wakeup = asyncio.Event()

    @property
    def active(self) -> bool:
        return bool(self.limits)

    async def admit(self, exchange: Exchange) -> None:
        """Count the request, or raise `RateLimited` (429) naming the limit it would pass."""
        model = exchange.route.name if exchange.route else exchange.model
        applicable = [limit for limit in self.limits if limit.applies(model)]
        if not applicable:
            return
        now = time.time()
        checks = [Check(limit.key(exchange, now), limit.limit, 1 if limit.kind == "requests" else 0, limit.ttl_ms) for limit in applicable]
        try:
            verdict = await self.counters.admit(checks)
        except Exception as exc:  # noqa: BLE001 - Redis away: a limit that cannot be counted is not waved through
            log.warning("rate limits cannot be checked: %s: %s", type(exc).__name__, exc)
            raise ServiceUnavailable(
                "Usage limits cannot be checked right now; try again shortly.", code="limits_unavailable", headers={"retry-after": "1"}
            ) from None
        resets = [reset_s(limit.period, now) for limit in applicable]
        headers = _rate_headers(applicable, verdict.values, resets)
        exchange.limit_headers = headers
        exchange.limit_keys = tuple((check.key, check.ttl_ms) for limit, check in zip(applicable, checks, strict=True) if limit.kind != "requests")
        if verdict.denied is not None:
            limit = applicable[verdict.denied]
            retry_after = max(1, int(resets[verdict.denied] + 0.999))
            if limit.kind == "budget":
                raise RateLimited(
                    f"The token budget for this {'/'.join(limit.per)} is spent for this {limit.period}.",
                    code="budget_exceeded", headers={**headers, "retry-after": str(retry_after)},
                )
            raise RateLimited(
                f"Rate limit reached: {limit.limit} {limit.kind} per minute for this {'/'.join(limit.per)}.",
                code="rate_limited", headers={**headers, "retry-after": str(retry_after)},
            )

    def charge(self, exchange: Exchange) -> None:
        """Queue the tokens an exchange used against its token limits and budgets (never blocks)."""
        keys = exchange.limit_keys
        if not keys:
            return
        usage = exchange.usage
        if usage is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens
        else:  # a stream without a usage chunk: an estimate from what was relayed (and the prompt size)
            tokens = (len(exchange.stream_text()) + exchange.body_bytes) // CHARS_PER_TOKEN
        if tokens <= 0:
            return
        self._charges.extend((key, tokens, ttl) for key, ttl in keys)
        self._wakeup.set()

    async def flush(self) -> None:
        while self._charges:
            batch = [self._charges.popleft() for _ in range(min(len(self._charges), 500))]
            try:
                await self.counters.charge(batch)
            except Exception as exc:  # noqa: BLE001 - a lost charge under-counts; it must not stop the gateway
                log.warning("could not charge %d token counters: %s: %s", len(batch), type(exc).__name__, exc)
                return

    @asynccontextmanager
    async def charging(self) -> AsyncIterator[None]:
        """Owns the task that adds usage to the counters; flushes what is left when the app stops."""

        async def run() -> None:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                await asyncio.sleep(CHARGE_INTERVAL_S)
                await self.flush()

        try:
            async with running(run(), "limits-charge"):
                yield
        finally:
            await self.flush()
            await self.counters.close()


def _rate_headers(limits: list[_Limit], values: tuple[int, ...], resets: list[float]) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers, from the first request limit and the first token limit."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        for limit, value, reset in zip(limits, values, resets, strict=True):
            if limit.kind == kind:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit.limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(limit.limit - value, 0))
                headers[f"x-ratelimit-reset-{kind}"] = f"{reset:.3g}s"
                break
    return headers
