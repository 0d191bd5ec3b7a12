"""Operator endpoints: liveness, readiness, Prometheus metrics, and the OpenAI-shaped 404."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import __version__
from gateway.errors import NotFound
from gateway.http.headers import reply_headers, request_error
from gateway.pipeline import Pipeline

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class OpsHandlers:
    def __init__(self, pipeline: Pipeline, instance: str) -> None:
        self.pipeline = pipeline
        self.instance = instance

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
        ]

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the event loop answers. Nothing else is checked, so a restart never fixes a dependency."""
        return web.json_response({"status": "ok"}, headers=reply_headers(request, self.pipeline))

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: able to take traffic now (audit accepting records), with the live policy version.

        A Redis outage alone does not make the gateway unready: records are safe in the spool (`spooling`).
        Nor does an open circuit breaker: `targets` shows each target's breaker state for operators. Nor
        does an operator's incident switch (a deliberate block): `incidents` shows the switches that are on.
        """
        audit_ok = self.pipeline.audit.accepting()
        body = {
            "status": "ready" if audit_ok else "unavailable",
            "version": __version__,
            "instance": self.instance,
            "policy_version": self.pipeline.policy.version,
            "checks": {"audit": self.pipeline.audit.state()},
            "models": sorted(self.pipeline.router.routes),
            "targets": {label: breaker.state for label, breaker in self.pipeline.router.breakers.items()},
            "incidents": self.pipeline.incidents.state.as_dict(),
        }
        return web.json_response(body, status=200 if audit_ok else 503, headers=reply_headers(request, self.pipeline))

    async def metrics(self, request: web.Request) -> web.Response:
        # Multiprocess mode reads one file per worker: keep that disk I/O off the event loop.
        metrics = self.pipeline.metrics
        metrics.flush()  # this worker's latest samples; the others flush on their own within a second
        exposition = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
        return web.Response(body=exposition, headers={"content-type": PROMETHEUS_TEXT, **reply_headers(request, self.pipeline)})

    async def not_found(self, request: web.Request) -> web.Response:
        error = NotFound(f"No endpoint {request.method} {request.path} on this gateway.")
        return request_error(request, self.pipeline, error)
