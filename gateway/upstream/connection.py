"""One keep-alive HTTP/1.1 connection to an upstream: an asyncio protocol around the httptools parser.

One request at a time (no pipelining). The parser's callbacks fill the reply's status, headers and body
queue; a reader waits on a single future, and one timer per wait enforces whichever deadline comes first:
the stage's own (first byte, or idle between body reads) or the whole call's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools

from gateway.upstream.errors import ConnectionBroken, InvalidResponse, ReadTimeout, TimeoutStage
from gateway.upstream.request import Origin

READ_HIGH_WATER = 256 * 1024  # buffered body bytes at which the socket stops being read until the reader catches up


class UpstreamConnection(asyncio.Protocol):
    """The connection and the reply currently arriving on it (HTTP/1.1 carries one at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin, on_lost: Callable[[UpstreamConnection], None]) -> None:
        self._loop = loop
        self.origin = origin
        self._on_lost = on_lost  # the pool forgets the connection
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.idle_since = 0.0  # loop time it went back to the pool
        # the reply in flight
        self.status = 0
        self.headers: dict[bytes, bytes] = {}  # lower-case names; repeated fields joined with ", "
        self._in_flight = False
        self._headers_done = False
        self._informational = False  # a 1xx reply is being skipped
        self._body: list[bytes] = []
        self._buffered = 0
        self._high_water = READ_HIGH_WATER
        self._paused = False
        self._complete = False
        self._keep_alive = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- the request side ----------------------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        """Open, and nothing has gone wrong on it (`reusable` adds: its last reply was read to the end)."""
        return self._transport is not None and not self._transport.is_closing() and self._error is None

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self._body and self.usable

    def send(self, request: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionBroken("the upstream closed the connection before the request was sent", before_reply=True)
        self.status = 0
        self.headers = {}
        self._in_flight = True
        self._headers_done = self._complete = self._keep_alive = False
        self._high_water = READ_HIGH_WATER
        self._transport.write(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- the reader side -----------------------------------------------------------------------------------------
    async def wait_for_headers(self, first_byte_s: float, deadline: float) -> None:
        timeout_at = self._loop.time() + first_byte_s
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait(timeout_at, deadline, "first_byte")

    async def read_chunk(self, idle_s: float, deadline: float) -> bytes:
        """What arrived since the last read, waiting up to `idle_s` for something; b"" at the end.

        Buffered bytes come out before a failure that followed them, so events before a break still reach
        the client."""
        while not self._body:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(self._loop.time() + idle_s, deadline, "idle")
        body = self._body
        chunk = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        self._resume_reading()
        return chunk

    async def read_all(self, idle_s: float, deadline: float, max_bytes: int) -> bytes:
        """The rest of the body, at most `max_bytes`: the socket is not paused for a whole-body read, so
        the bound is what keeps a runaway reply from filling memory."""
        self._high_water = max_bytes + 1
        if self._buffered < self._high_water:
            self._resume_reading()  # paused by body that arrived before this call, under the streaming mark
        while True:
            if self._buffered > max_bytes:
                raise InvalidResponse(f"a reply body larger than {max_bytes} bytes")
            if self._complete:
                break
            if self._error is not None:
                raise self._error
            await self._wait(self._loop.time() + idle_s, deadline, "idle")
        body = b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        return body

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    @property
    def complete(self) -> bool:
        """The whole reply has arrived (some of it may still be unread)."""
        return self._complete

    async def _wait(self, timeout_at: float, deadline: float, stage: TimeoutStage) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        expired: TimeoutStage = stage if timeout_at < deadline else "deadline"
        timer = self._loop.call_at(min(timeout_at, deadline), _expire, waiter, expired)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._in_flight or self._complete:
            # Bytes nobody asked for (an idle connection, or past the end of a reply): never reuse it.
            self._fail(InvalidResponse("data outside a reply"))
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(f"an invalid HTTP/1.1 reply ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._in_flight and not self._complete:
            if self._headers_done and self._ends_at_close():
                self._complete = True  # a body delimited by the connection's end, as HTTP/1.0 allows
            else:
                before = not self._headers_done
                where = "before its reply" if before else "in the middle of its reply"
                self._fail(ConnectionBroken(f"the upstream closed the connection {where}", before_reply=before))
        self._wake()
        self._on_lost(self)

    def pause_writing(self) -> None:
        pass  # requests are bounded by limits.max_body_bytes and written once; the kernel buffers them

    def resume_writing(self) -> None:
        pass

    def _ends_at_close(self) -> bool:
        headers = self.headers
        return b"content-length" not in headers and b"chunked" not in headers.get(b"transfer-encoding", b"").lower()

    # -- httptools callbacks -------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:  # a second reply in the same read: nothing asked for it
            raise InvalidResponse("data after the end of its reply")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        headers = self.headers
        headers[name] = headers[name] + b", " + value if name in headers else value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and friends: the real reply follows
            self._informational = True
            self.headers = {}
            return
        self.status = status
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered >= self._high_water and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()
        self._in_flight = False
        self._wake()


def _expire(waiter: asyncio.Future[None], stage: TimeoutStage) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(stage))
