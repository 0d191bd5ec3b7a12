"""The router: resolves a public model name to its route and makes the upstream call.

This is the seam where retries, circuit breakers, fallback chains and kill switches belong; today a route
has exactly one target (the config refuses more), and every attempt is recorded on the Exchange either way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.config.model import ModelRoute, Target
from gateway.errors import UnknownModel, UpstreamError, UpstreamUnavailable
from gateway.exchange import Attempt, Exchange
from gateway.metrics import Metrics
from gateway.providers.base import Provider, UpstreamCall, UpstreamStream

T = TypeVar("T")


class Router:
    def __init__(
        self,
        routes: dict[str, ModelRoute],
        providers: dict[str, Provider],
        metrics: Metrics,
        default_timeout_s: float,
    ) -> None:
        self._routes = routes
        self._providers = providers
        self._metrics = metrics
        self._default_timeout_s = default_timeout_s

    @property
    def routes(self) -> dict[str, ModelRoute]:
        return self._routes

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
        return await self._attempt(exchange, lambda provider, call: provider.send(call))

    async def open_stream(self, exchange: Exchange) -> UpstreamStream:
        return await self._attempt(exchange, lambda provider, call: provider.open_stream(call))

    async def _attempt(self, exchange: Exchange, make_call: Callable[[Provider, UpstreamCall], Awaitable[T]]) -> T:
        """One call to the route's target, recorded on the exchange whether it succeeds or fails."""
        target, call, provider = self._prepare(exchange)
        started = time.perf_counter()
        try:
            result = await make_call(provider, call)
        except UpstreamError as exc:
            self._record(exchange, target, started, error=exc)
            raise
        self._record(exchange, target, started)
        return result

    def _prepare(self, exchange: Exchange) -> tuple[Target, UpstreamCall, Provider]:
        route = exchange.route or self.resolve(exchange)
        assert exchange.endpoint is not None, "only model endpoints are routed"
        target = route.targets[0]
        exchange.target = target.label
        body = exchange.body
        if body.get("model") != target.model:
            body = {**body, "model": target.model}
        timeout_s = route.timeout_s or self._default_timeout_s
        call = UpstreamCall(exchange.endpoint, body, exchange.request_id, timeout_s)
        return target, call, self._providers[target.provider]

    def _record(self, exchange: Exchange, target: Target, started: float, error: UpstreamError | None = None) -> None:
        elapsed = time.perf_counter() - started
        exchange.upstream_s += elapsed
        if error is None:
            exchange.attempts.append(Attempt(target.label, 200, round(elapsed * 1000, 3)))
            return
        exchange.attempts.append(Attempt(target.label, error.status, round(elapsed * 1000, 3), error.code))
        self._metrics.upstream_error(target.provider, error.code)
