"""The pool of upstream connections of one worker, shared by all its providers."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from gateway.upstream.connection import UpstreamConnection
from gateway.upstream.errors import ConnectFailed, ConnectTimeout, ReadTimeout
from gateway.upstream.request import Origin
from gateway.upstream.response import UpstreamResponse

KEEPALIVE_S = 30.0  # an idle connection older than this is closed rather than reused


class UpstreamClient:
    """Keep-alive connections per origin, at most `limit` open across all origins.

    The newest idle connection is reused first (the oldest are the likeliest to have been closed by the
    upstream). A request that finds the limit reached waits, within its deadline, for a connection to come
    back or close. Idle connections past `keepalive_s` are closed by a sweep that runs while any are idle.
    """

    def __init__(self, limit: int = 1024, *, keepalive_s: float = KEEPALIVE_S, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._connections: set[UpstreamConnection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"UpstreamClient(open={len(self._connections)}, limit={self._limit})"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def request(self, origin: Origin, request: bytes, *, connect_s: float, first_byte_s: float, idle_s: float, deadline: float) -> UpstreamResponse:
        """Send one rendered request and wait for the reply's status and headers.

        `deadline` (loop time) bounds everything: the wait for a free connection, connecting, and every
        later read of the body; `connect_s`, `first_byte_s` and `idle_s` bound their own stage within it.
        """
        connection = await self._acquire(origin, connect_s, deadline)
        try:
            connection.send(request)
            await connection.wait_for_headers(first_byte_s, deadline)
            return UpstreamResponse(self, connection, idle_s, deadline)
        except BaseException:
            connection.close()
            raise

    def prepare(self, origin: Origin) -> None:
        """Get ready for `origin` at startup: for HTTPS, build the TLS context now (it reads the system CA
        bundle from disk) rather than on the event loop's first connect."""
        if origin.tls:
            self._tls_context()

    def release(self, connection: UpstreamConnection) -> None:
        """Back to the idle list when its reply was read to the end, else closed."""
        if not connection.reusable or self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.origin, []).append(connection)
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive_s, self._close_expired)
        self._wake_one()

    async def close(self) -> None:
        """Close every connection, idle or busy; later requests fail."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in list(self._connections):
            connection.close()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectFailed("the upstream client is closed"))
        await asyncio.sleep(0)  # let the transports report connection_lost

    # -- connections ---------------------------------------------------------------------------------------------
    async def _acquire(self, origin: Origin, connect_s: float, deadline: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ConnectFailed("the upstream client is closed")
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if connection.usable and loop.time() - connection.idle_since < self._keepalive_s:
                    return connection
                connection.close()
            if len(self._connections) + self._connecting < self._limit:
                return await self._connect(loop, origin, connect_s, deadline)
            self._close_oldest_idle()  # idle connections to other origins must not starve this one
            await self._wait_for_room(loop, deadline)

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: Origin, connect_s: float, deadline: float) -> UpstreamConnection:
        context = self._tls_context() if origin.tls else None
        timeout_at = min(loop.time() + connect_s, deadline)
        self._connecting += 1
        try:
            async with asyncio.timeout_at(timeout_at):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(loop, origin, self._forget),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            if timeout_at >= deadline:
                raise ReadTimeout("deadline") from None
            raise ConnectTimeout(f"no connection within {connect_s:g}s") from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise ConnectFailed(exc.strerror or str(exc) or type(exc).__name__) from None
        finally:
            self._connecting -= 1
        if connection.usable:  # else it closed before this task resumed, and was forgotten already
            self._connections.add(connection)
        return connection

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # woken, but leaving anyway: the room goes to the next in line
            if isinstance(exc, TimeoutError):
                raise ReadTimeout("deadline") from None
            raise

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, connection: UpstreamConnection) -> None:
        """A connection closed (by either side): it no longer counts against the limit."""
        self._connections.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)
        self._wake_one()

    def _close_oldest_idle(self) -> None:
        """Make room at the limit: close the longest-idle connection (its loss wakes a waiter)."""
        oldest: UpstreamConnection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
            oldest.close()

    def _close_expired(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for idle in self._idle.values():
            for connection in [c for c in idle if now - c.idle_since >= self._keepalive_s]:
                connection.close()  # _forget removes it
        if any(self._idle.values()):
            self._sweep = loop.call_later(self._keepalive_s, self._close_expired)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()  # once per client: loads the system CA bundle
        return self._ssl_context
