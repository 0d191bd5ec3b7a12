"""Runs async servers (the gateway, fake upstreams) on an event loop in a background thread.

Tests drive them with synchronous clients (the openai SDK) from the main thread, exactly like an
application would, without the client blocking the servers' loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop
from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.http.app import build_app

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread; `run()` executes a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class GatewayServer:
    """The gateway app on 127.0.0.1 (a free port), started and stopped on a `LoopThread`."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def start(self) -> None:
        self.app = await build_app(self.config)
        drain_s = self.config.limits.drain_timeout_s
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=drain_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
