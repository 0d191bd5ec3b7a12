"""The router: resolves a public model name to its route and gets an answer from one of its targets.

For each exchange it walks the route's targets in order (or, with `balance: weighted`, the first one
chosen by weight): a target an operator disabled (kill switch) or whose circuit breaker is open is skipped; a failure worth retrying is retried
on the same target with backoff (honouring Retry-After); a failure that says something about the target
moves on to the next one, all within the route's deadline. A failure caused by the request itself (a
provider 400 or 422) is the client's answer and is never retried elsewhere. Every attempt, skipped ones
included, is recorded on the Exchange for the audit trail; the target that answered goes into
`x-gateway-target`.

For a stream, "answered" means the response headers arrived: until then nothing has reached the client
and another target can still take over; after that, a failure ends the stream (see the pipeline).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.config.model import BreakerSettings, ModelRoute, Target
from gateway.errors import UnknownModel, UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from gateway.exchange import Attempt, Exchange
from gateway.metrics import Metrics
from gateway.providers.base import Provider, UpstreamCall, UpstreamStream
from gateway.routing.breaker import CircuitBreaker
from gateway.routing.retry import RetryPolicy
from gateway.routing.switches import Snapshot

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


def retry_policy(route: ModelRoute) -> RetryPolicy:
    retry = route.retry
    return RetryPolicy(
        attempts=retry.attempts, backoff_ms=retry.backoff_ms, max_backoff_ms=retry.max_backoff_ms, retry_on=frozenset(retry.retry_on)
    )


def blames_target(error: UpstreamError) -> bool:
    """Whether a failure counts against the target (its breaker) and justifies trying another one.

    A provider's own 4xx other than 429 is about the request: the same request fails everywhere."""
    return not isinstance(error, UpstreamRejected) or error.status == 429


class Router:
    def __init__(
        self,
        routes: dict[str, ModelRoute],
        providers: dict[str, Provider],
        metrics: Metrics,
        default_timeout_s: float,
        breaker: BreakerSettings = BreakerSettings(),
        *,
        sleep: Sleep = asyncio.sleep,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self._routes = routes
        self._providers = providers
        self._metrics = metrics
        self._default_timeout_s = default_timeout_s
        self._sleep = sleep
        self._chance = chance
        self._retry = {name: retry_policy(route) for name, route in routes.items()}
        self._indexed = {name: tuple(enumerate(route.targets)) for name, route in routes.items()}
        self.switches: Snapshot = {}  # kill switches: replaced whole on every change (see switches.py)
        labels = {target.label for route in routes.values() for target in route.targets}
        self.breakers = {label: CircuitBreaker(breaker, on_change=self._breaker_changed(label)) for label in sorted(labels)}
        for label in self.breakers:
            metrics.breaker_state(label, "closed")

    @property
    def routes(self) -> dict[str, ModelRoute]:
        return self._routes

    def apply_switches(self, switches: Snapshot) -> None:
        """Take the kill switches' new state (from this worker's admin call, or another's)."""
        self.switches = dict(switches)

    def resolve(self, exchange: Exchange) -> ModelRoute:
        """Sets `exchange.route`; an unknown model is the client's error (400 model_not_found)."""
        route = self._routes.get(exchange.model)
        if route is None:
            raise UnknownModel(f"The model {exchange.model!r} does not exist or is not served by this gateway.", param="model")
        exchange.route = route
        return route

    def fall_back(self, exchange: Exchange, model: str) -> ModelRoute:
        """Re-route the exchange to another public model (a policy's `fallback` action)."""
        route = self._routes.get(model)
        if route is None:  # the policy loader checks fallback models against the config; this is a backstop
            raise UpstreamUnavailable(f"The fallback model {model!r} is not served by this gateway.", code="fallback_unavailable")
        exchange.route = route
        return route

    async def send(self, exchange: Exchange) -> dict[str, Any]:
        return await self._route(exchange, lambda provider, call: provider.send(call))

    async def open_stream(self, exchange: Exchange) -> UpstreamStream:
        return await self._route(exchange, lambda provider, call: provider.open_stream(call))

    # -- the walk over targets -------------------------------------------------------------------------
    def _order(self, route: ModelRoute) -> tuple[tuple[int, Target], ...]:
        """The targets to try, with their index in the route: as configured, or the first by weight."""
        targets = self._indexed.get(route.name) or tuple(enumerate(route.targets))
        if route.balance != "weighted" or len(targets) == 1:
            return targets
        point = self._chance() * sum(target.weight for _, target in targets)
        first = targets[-1]
        for entry in targets:
            point -= entry[1].weight
            if point < 0 and entry[1].weight > 0:
                first = entry
                break
        return (first, *(entry for entry in targets if entry is not first))

    async def _route(self, exchange: Exchange, make_call: Callable[[Provider, UpstreamCall], Awaitable[T]]) -> T:
        route = exchange.route or self.resolve(exchange)
        assert exchange.endpoint is not None, "only model endpoints are routed"
        policy = self._retry.get(route.name) or retry_policy(route)
        deadline = time.monotonic() + (route.timeout_s or self._default_timeout_s)
        last_error: UpstreamError | None = None
        tried_targets = 0
        for index, target in self._order(route):
            if (route.name, index) in self.switches:
                exchange.attempts.append(Attempt(target.label, None, 0.0, "disabled"))
                continue
            breaker = self.breakers.get(target.label)
            if breaker is not None and not breaker.allow():
                exchange.attempts.append(Attempt(target.label, None, 0.0, "circuit_open"))
                continue
            if tried_targets:
                self._metrics.route_fallback(route.name)
            tried_targets += 1
            attempt = 0
            while True:
                attempt += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if breaker is not None:
                        breaker.release()
                    raise _deadline_error(route, last_error)
                timeout = min(remaining, route.attempt_timeout_s or remaining)
                try:
                    result = await self._attempt(exchange, target, timeout, make_call)
                except UpstreamError as error:
                    last_error = error
                    blamed = blames_target(error)
                    if breaker is not None:
                        breaker.record_failure() if blamed else breaker.record_success()
                    if not blamed:
                        raise  # the request itself was refused: no other target would take it either
                    if attempt < policy.attempts and policy.retries(error):
                        delay = policy.delay_s(attempt, error, self._chance)
                        if delay < deadline - time.monotonic():
                            self._metrics.route_retry(route.name)
                            await self._sleep(delay)
                            if breaker is None or breaker.allow():
                                continue
                    break  # on to the next target
                except BaseException:
                    if breaker is not None:
                        breaker.release()  # cancelled (the client left): no verdict on the target
                    raise
                if breaker is not None:
                    breaker.record_success()
                return result
        if last_error is not None:
            raise last_error
        raise UpstreamUnavailable(
            f"No target of {route.name!r} can take requests now: each is disabled or its circuit breaker is open.",
            code="no_target_available",
        )

    async def _attempt(self, exchange: Exchange, target: Target, timeout_s: float, make_call: Callable[[Provider, UpstreamCall], Awaitable[T]]) -> T:
        """One call to one target, recorded on the exchange whether it succeeds or fails."""
        exchange.target = target.label
        body = exchange.body
        if body.get("model") != target.model:
            body = {**body, "model": target.model}
        assert exchange.endpoint is not None
        call = UpstreamCall(exchange.endpoint, body, exchange.request_id, timeout_s)
        started = time.perf_counter()
        try:
            result = await make_call(self._providers[target.provider], call)
        except UpstreamError as error:
            self._record(exchange, target, started, error)
            raise
        self._record(exchange, target, started)
        return result

    def _record(self, exchange: Exchange, target: Target, started: float, error: UpstreamError | None = None) -> None:
        elapsed = time.perf_counter() - started
        exchange.upstream_s += elapsed
        if error is None:
            exchange.attempts.append(Attempt(target.label, 200, round(elapsed * 1000, 3)))
            self._metrics.upstream_attempt(target.label, "ok")
            return
        exchange.attempts.append(Attempt(target.label, error.status, round(elapsed * 1000, 3), error.code))
        self._metrics.upstream_attempt(target.label, error.code)
        self._metrics.upstream_error(target.provider, error.code)

    def _breaker_changed(self, label: str) -> Callable[[str, str], None]:
        def changed(old: str, new: str) -> None:
            self._metrics.breaker_state(label, new)

        return changed


def _deadline_error(route: ModelRoute, last: UpstreamError | None) -> UpstreamError:
    seconds = route.timeout_s
    detail = f" (last failure: {last.code})" if last is not None else ""
    return UpstreamTimeout(f"No answer from {route.name!r} within its deadline{f' of {seconds:g}s' if seconds else ''}{detail}.", code="upstream_deadline_exceeded")
