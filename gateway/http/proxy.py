"""Handlers for the OpenAI-compatible endpoints: parse, run the pipeline, answer or relay the stream."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.errors import GatewayError, NotFound, PolicyViolation
from gateway.exchange import Endpoint, Exchange
from gateway.http.headers import JSON, error_response, gateway_headers, reply_headers, request_error
from gateway.http.request_body import read_body, request_id_of
from gateway.pipeline import Pipeline
from gateway.providers.sse import DONE_EVENT
from gateway.providers.base import UpstreamStream

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer was complete

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no"}


class ProxyHandlers:
    def __init__(self, pipeline: Pipeline, config: GatewayConfig) -> None:
        self.pipeline = pipeline
        self.max_body_bytes = config.limits.max_body_bytes
        self.started_at = int(time.time())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.models),
            web.get("/v1/models/{model}", self.model),
        ]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, Endpoint.CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, Endpoint.COMPLETIONS)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, Endpoint.EMBEDDINGS)

    async def models(self, request: web.Request) -> web.Response:
        try:
            self.pipeline.auth.authenticate(request.headers)
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
        data = [self._model_entry(name) for name in self.pipeline.router.routes]
        return web.json_response({"object": "list", "data": data}, headers=reply_headers(request, self.pipeline))

    async def model(self, request: web.Request) -> web.Response:
        try:
            self.pipeline.auth.authenticate(request.headers)
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
        name = request.match_info["model"]
        if name not in self.pipeline.router.routes:
            missing = NotFound(f"The model {name!r} does not exist or is not served by this gateway.", code="model_not_found", param="model")
            return request_error(request, self.pipeline, missing)
        return web.json_response(self._model_entry(name), headers=reply_headers(request, self.pipeline))

    def _model_entry(self, name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": self.started_at, "owned_by": "gateway"}

    async def _proxy(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        pipeline = self.pipeline
        exchange = Exchange(request_id_of(request, self.pipeline.ids), endpoint)
        pipeline.metrics.request_started()
        try:
            try:
                pipeline.identify(exchange, request.headers)
                await read_body(request, exchange, self.max_body_bytes)
                await pipeline.admit(exchange)
                if exchange.stream:
                    upstream = await pipeline.open_stream(exchange)
                else:
                    payload = await pipeline.complete(exchange)
            except GatewayError as error:
                pipeline.finish(exchange, error.status, "blocked" if isinstance(error, PolicyViolation) or exchange.decision == "block" else "error", error)
                return error_response(error, exchange, pipeline.policy.version)
            except asyncio.CancelledError:
                pipeline.finish(exchange, CLIENT_CLOSED, "client_disconnected")
                raise
            if exchange.stream:
                return await self._stream(request, exchange, upstream)
            pipeline.finish(exchange, 200, "ok")
            headers = gateway_headers(exchange, pipeline.policy.version)
            headers["Content-Type"] = JSON  # as a header, not content_type=: skips aiohttp's charset handling
            return web.Response(body=payload, headers=headers)
        finally:
            pipeline.metrics.request_ended()

    async def _stream(self, request: web.Request, exchange: Exchange, upstream: UpstreamStream) -> web.StreamResponse:
        """Relay an accepted stream. Failures before this point were ordinary error responses; from here
        on the status line is sent, so a failure ends the stream with an error event and [DONE]."""
        pipeline = self.pipeline
        try:
            response = web.StreamResponse(headers={**SSE_HEADERS, **gateway_headers(exchange, pipeline.policy.version)})
            await response.prepare(request)
            outcome, error = await self._relay(response, exchange, upstream)
        except (ConnectionResetError, asyncio.CancelledError):
            pipeline.finish(exchange, CLIENT_CLOSED, "client_disconnected")
            raise
        finally:
            await upstream.aclose()
        pipeline.finish(exchange, 200, outcome, error)
        return response

    async def _relay(self, response: web.StreamResponse, exchange: Exchange, upstream: UpstreamStream) -> tuple[str, GatewayError | None]:
        try:
            async for data in self.pipeline.relay(exchange, upstream):
                if data.endswith(DONE_EVENT):  # relay() ends every stream with [DONE], and only there
                    await response.write_eof(data)  # the last events, [DONE] and the chunked end: one write
                    break
                await response.write(data)
        except GatewayError as error:
            log.warning("stream %s ended early: %s", exchange.request_id, error.message)
            await response.write_eof(b"data: " + error.body(exchange.request_id) + b"\n\n" + DONE_EVENT)
            return "stream_error", error
        if exchange.stopped is not None:
            return "blocked", exchange.stopped
        return "ok", None
