"""The upstream HTTP/1.1 client against real servers on 127.0.0.1.

Well-formed replies come from an aiohttp server started in the test; malformed or unusual ones (1xx, bodies
delimited by the connection's end, garbage, bytes nobody asked for, idle connections closed by the server)
from a raw asyncio server that writes exact bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiohttp import web

from gateway.upstream import (
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    InvalidResponse,
    Origin,
    ReadTimeout,
    RequestHead,
    UpstreamClient,
    UpstreamResponse,
)
from support import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- servers ---------------------------------------------------------------------------------------------------
@dataclass
class AppServer:
    """An aiohttp server; `peer_ports` has the client's port of each request, in order."""

    origin: Origin
    peer_ports: list[int] = field(default_factory=list)


@dataclass
class RawServer:
    """A raw asyncio server; `peer_ports` has the client's port of each accepted connection, in order."""

    origin: Origin
    peer_ports: list[int] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


StartApp = Callable[..., Awaitable[AppServer]]
StartRaw = Callable[[RawHandler], Awaitable[RawServer]]


@pytest.fixture
async def app_server() -> AsyncIterator[StartApp]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, *, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> AppServer:
        server = AppServer(Origin("https" if ssl_context else "http", host, 0))

        async def recording(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            server.peer_ports.append(request.transport.get_extra_info("peername")[1])
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recording)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        server.origin = Origin(server.origin.scheme, host, runner.addresses[0][1])
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[StartRaw]:
    started: list[tuple[asyncio.Server, RawServer]] = []

    async def start(handler: RawHandler) -> RawServer:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            raw.tasks.add(task)
            raw.peer_ports.append(writer.get_extra_info("peername")[1])
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # the client hung up, or the test is over
            finally:
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        raw = RawServer(Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1]))
        started.append((server, raw))
        return raw

    yield start
    for server, raw in started:
        server.close()
        for task in raw.tasks:
            task.cancel()
        await asyncio.gather(*raw.tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole request (head and content-length body); raises IncompleteReadError at the client's EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def replying(*replies: bytes | list[bytes], pause_s: float = 0.05) -> RawHandler:
    """A handler answering each request with the next reply (shared by all connections), written as is; a
    list is written part by part with pauses. Past the last reply it waits for the client to hang up."""
    queue = list(replies)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            await read_request(reader)
            reply = queue.pop(0)
            for i, part in enumerate([reply] if isinstance(reply, bytes) else reply):
                if i:
                    await asyncio.sleep(pause_s)
                writer.write(part)
                await writer.drain()
        await reader.read()

    return handler


def ok(body: bytes = b"ok", *extra_headers: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in extra_headers)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), head, body)


# -- clients and requests --------------------------------------------------------------------------------------
MakeClient = Callable[..., UpstreamClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[UpstreamClient] = []

    def make(**options: Any) -> UpstreamClient:
        client = UpstreamClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: MakeClient) -> UpstreamClient:
    return make_client()


async def fetch(
    client: UpstreamClient,
    origin: Origin,
    body: bytes = b"{}",
    *,
    path: str = "/v1/chat",
    request_id: str = "",
    connect_s: float = 2.0,
    first_byte_s: float = 2.0,
    idle_s: float = 2.0,
    within_s: float = 5.0,
) -> UpstreamResponse:
    request = RequestHead(origin, "POST", path, {"content-type": "application/json"}).render(body, request_id)
    deadline = asyncio.get_running_loop().time() + within_s
    return await client.request(origin, request, connect_s=connect_s, first_byte_s=first_byte_s, idle_s=idle_s, deadline=deadline)


async def fetch_body(client: UpstreamClient, origin: Origin, body: bytes = b"{}", **options: Any) -> bytes:
    response = await fetch(client, origin, body, **options)
    try:
        return await response.read()
    finally:
        response.release()


async def eventually(probe: Callable[[], bool], *, timeout_s: float = 2.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not probe():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def elapsed_since(start: float) -> float:
    return asyncio.get_running_loop().time() - start


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=b"echo " + await request.read())


# -- keep-alive and what goes out ------------------------------------------------------------------------------
async def test_sequential_requests_reuse_one_keep_alive_connection(client: UpstreamClient, app_server: StartApp) -> None:
    server = await app_server(echo)
    assert await fetch_body(client, server.origin, b"one") == b"echo one"
    assert await fetch_body(client, server.origin, b"two") == b"echo two"
    assert await fetch_body(client, server.origin, b"three") == b"echo three"
    assert len(set(server.peer_ports)) == 1
    assert client.open_connections == 1


async def test_request_arrives_with_method_path_headers_and_body(client: UpstreamClient, app_server: StartApp) -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        return web.Response(text="fine")

    server = await app_server(record)
    body = b'{"model": "m", "messages": []}'
    assert await fetch_body(client, server.origin, body, path="/v1/chat/completions", request_id="rid-7") == b"fine"
    method, path, headers, received = seen[0]
    assert (method, path, received) == ("POST", "/v1/chat/completions", body)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert lowered["host"] == f"127.0.0.1:{server.origin.port}"
    assert lowered["content-length"] == str(len(body))
    assert lowered["x-request-id"] == "rid-7"
    assert lowered["content-type"] == "application/json"


async def test_status_and_headers_are_exposed(client: UpstreamClient, app_server: StartApp) -> None:
    async def teapot(request: web.Request) -> web.Response:
        response = web.Response(status=418, body=b"short and stout", headers={"X-Custom": "Value"})
        response.headers.add("x-multi", "a")
        response.headers.add("x-multi", "b")
        return response

    server = await app_server(teapot)
    response = await fetch(client, server.origin)
    assert response.status == 418
    assert response.header(b"x-custom") == "Value"
    assert response.header(b"x-multi") == "a, b"
    assert response.header(b"content-length") == "15"
    assert response.header(b"x-missing") is None
    assert await response.read() == b"short and stout"
    response.release()


async def test_a_failed_status_still_keeps_the_connection_alive(client: UpstreamClient, app_server: StartApp) -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, body=b"overloaded")

    server = await app_server(failing)
    for _ in range(2):
        response = await fetch(client, server.origin)
        assert response.status == 503
        assert await response.read() == b"overloaded"
        response.release()
    assert server.peer_ports[0] == server.peer_ports[1]


async def test_concurrent_requests_each_get_their_own_connection_then_both_are_pooled(client: UpstreamClient, app_server: StartApp) -> None:
    both_arrived = asyncio.Event()
    arrived = 0

    async def rendezvous(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_arrived.set()
        await asyncio.wait_for(both_arrived.wait(), 2)
        return web.Response(body=await request.read())

    server = await app_server(rendezvous)
    first, second = await asyncio.gather(fetch_body(client, server.origin, b"1"), fetch_body(client, server.origin, b"2"))
    assert (first, second) == (b"1", b"2")
    assert len(set(server.peer_ports)) == 2
    assert client.open_connections == 2


# -- bodies ----------------------------------------------------------------------------------------------------
async def test_content_length_body_is_read_whole(client: UpstreamClient, app_server: StartApp) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB, several reads

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=payload)

    server = await app_server(big)
    response = await fetch(client, server.origin)
    assert await response.read() == payload
    assert response.complete
    response.release()
    assert await fetch_body(client, server.origin) == payload
    assert len(set(server.peer_ports)) == 1


async def test_chunked_body_is_read_whole(client: UpstreamClient, app_server: StartApp) -> None:
    parts = [b"alpha-", b"beta-" * 1000, b"", b"gamma"]

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    server = await app_server(chunked)
    response = await fetch(client, server.origin)
    assert response.header(b"transfer-encoding") == "chunked"
    assert response.header(b"content-length") is None
    assert await response.read() == b"".join(parts)
    assert response.complete
    response.release()
    assert await fetch_body(client, server.origin) == b"".join(parts)  # and the connection is reused
    assert len(set(server.peer_ports)) == 1


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_read_chunk_yields_each_part_as_it_arrives(client: UpstreamClient, app_server: StartApp, chunked: bool) -> None:
    # The server cannot send a part before the test has read the one before it: data comes out as it arrives.
    parts = [b"first part", b"second part", b"third part"]
    gates = [asyncio.Event() for _ in parts]

    async def gated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = sum(map(len, parts))
        await response.prepare(request)
        for part, gate in zip(parts, gates):
            await response.write(part)
            await asyncio.wait_for(gate.wait(), 3)
        await response.write_eof()
        return response

    server = await app_server(gated)
    response = await fetch(client, server.origin)
    for i, (part, gate) in enumerate(zip(parts, gates)):
        assert await response.read_chunk() == part
        last = i == len(parts) - 1
        assert response.complete is (last and not chunked)  # a content-length body ends with its last byte
        gate.set()
    assert await response.read_chunk() == b""
    assert response.complete
    assert await response.read_chunk() == b""  # and stays at the end
    response.release()
    assert await fetch_body(client, server.origin) == b"".join(parts)
    assert server.peer_ports[0] == server.peer_ports[1]


async def test_read_after_read_chunk_returns_the_rest(client: UpstreamClient, app_server: StartApp) -> None:
    gate = asyncio.Event()

    async def two_parts(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"head;")
        await asyncio.wait_for(gate.wait(), 3)
        await response.write(b"tail")
        await response.write_eof()
        return response

    server = await app_server(two_parts)
    response = await fetch(client, server.origin)
    assert await response.read_chunk() == b"head;"
    gate.set()
    assert await response.read() == b"tail"
    assert response.complete
    response.release()


async def test_empty_body_reads_as_empty(client: UpstreamClient, app_server: StartApp) -> None:
    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    server = await app_server(no_content)
    response = await fetch(client, server.origin)
    assert response.status == 204
    assert await response.read() == b""
    assert response.complete
    response.release()
    response = await fetch(client, server.origin)
    assert await response.read_chunk() == b""
    response.release()
    assert len(set(server.peer_ports)) == 1


@pytest.mark.parametrize("size", [300 * 1024, 1024 * 1024, 3 * 1024 * 1024])
async def test_read_gets_a_large_body_that_arrived_before_it_was_called(client: UpstreamClient, raw_server: StartRaw, size: int) -> None:
    # By the time read() runs, more than the streaming high-water mark is buffered and the socket is paused:
    # read() must resume it (or it waits for bytes that never come), and the pooled connection must not stay
    # paused (or the next request on it never sees its reply).
    payload = bytes(range(251)) * (size // 251) + b"!" * (size % 251)
    server = await raw_server(replying(ok(payload), ok(b"next")))
    response = await fetch(client, server.origin, idle_s=0.5)
    await asyncio.sleep(0.1)
    assert await response.read() == payload
    response.release()
    assert await fetch_body(client, server.origin, first_byte_s=0.5, idle_s=0.5) == b"next"
    assert len(server.peer_ports) == 1


# -- content encodings -----------------------------------------------------------------------------------------
TEXT = b"".join(b"line %d of a compressible reply\n" % i for i in range(5000))  # ~170 KB


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)


def deflate_bytes(data: bytes) -> bytes:
    return zlib.compress(data)  # HTTP's "deflate": the zlib format


ENCODINGS = [("gzip", gzip_bytes), ("x-gzip", gzip_bytes), ("deflate", deflate_bytes), ("GZip", gzip_bytes)]


@pytest.mark.parametrize(("encoding", "compress"), ENCODINGS)
async def test_compressed_body_is_decoded_by_read(client: UpstreamClient, app_server: StartApp, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=compress(TEXT), headers={"content-encoding": encoding})

    server = await app_server(compressed)
    response = await fetch(client, server.origin)
    assert response.header(b"content-encoding") == encoding
    assert await response.read() == TEXT
    response.release()


@pytest.mark.parametrize(("encoding", "compress"), ENCODINGS[::2])
async def test_compressed_body_is_decoded_by_read_chunk(client: UpstreamClient, app_server: StartApp, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    data = compress(TEXT)
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]

    async def trickled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-encoding": encoding})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start, end in zip(cuts, cuts[1:]):
            await response.write(data[start:end])
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    server = await app_server(trickled)
    response = await fetch(client, server.origin)
    chunks: list[bytes] = []
    while chunk := await response.read_chunk():
        chunks.append(chunk)
    assert b"".join(chunks) == TEXT
    assert len(chunks) >= 2  # decoded piece by piece, not at the end
    assert response.complete
    response.release()


async def test_identity_encoding_is_passed_through(client: UpstreamClient, app_server: StartApp) -> None:
    async def identity(request: web.Request) -> web.Response:
        return web.Response(body=b"plain", headers={"content-encoding": "identity"})

    server = await app_server(identity)
    assert await fetch_body(client, server.origin) == b"plain"


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_unsupported_encoding_raises_invalid_response_and_closes(client: UpstreamClient, app_server: StartApp, encoding: str) -> None:
    async def encoded(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1b\x00opaque", headers={"content-encoding": encoding})

    server = await app_server(encoded)
    with pytest.raises(InvalidResponse) as caught:
        await fetch(client, server.origin)
    assert encoding in str(caught.value)
    await eventually(lambda: client.open_connections == 0, what="the connection to close")
    with pytest.raises(InvalidResponse):
        await fetch(client, server.origin)
    assert len(set(server.peer_ports)) == 2  # the refused reply's connection was not reused


async def test_corrupt_gzip_raises_invalid_response(client: UpstreamClient, app_server: StartApp) -> None:
    async def corrupt(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1f\x8b\x08\x00this is not deflate data", headers={"content-encoding": "gzip"})

    server = await app_server(corrupt)
    response = await fetch(client, server.origin)
    with pytest.raises(InvalidResponse):
        await response.read()
    response.release()


# -- 1xx, close-delimited bodies, Connection: close -----------------------------------------------------------
async def test_informational_replies_before_the_real_one_are_skipped(client: UpstreamClient, raw_server: StartRaw) -> None:
    interim = [
        b"HTTP/1.1 100 Continue\r\nx-interim: yes\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n" + ok(b"hello", b"x-final: yes"),
    ]
    server = await raw_server(replying(interim, ok(b"again")))
    response = await fetch(client, server.origin)
    assert response.status == 200
    assert response.header(b"x-final") == "yes"
    assert response.header(b"x-interim") is None
    assert response.header(b"link") is None
    assert await response.read() == b"hello"
    response.release()
    assert await fetch_body(client, server.origin) == b"again"
    assert len(server.peer_ports) == 1  # the connection stayed in step


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
async def test_body_delimited_by_the_connection_end_is_read_whole_and_not_reused(client: UpstreamClient, raw_server: StartRaw, version: bytes) -> None:
    parts = [version + b" 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst ", b"second ", b"third"]

    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.03)
        writer.close()

    server = await raw_server(close_delimited)
    assert await fetch_body(client, server.origin) == b"first second third"
    await eventually(lambda: client.open_connections == 0, what="the connection to close")
    assert await fetch_body(client, server.origin) == b"first second third"
    assert len(server.peer_ports) == 2


async def test_body_delimited_by_the_connection_end_with_read_chunk(client: UpstreamClient, raw_server: StartRaw) -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\npiece one;")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"piece two")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    server = await raw_server(close_delimited)
    response = await fetch(client, server.origin)
    received = b""
    while chunk := await response.read_chunk():
        assert not response.complete or chunk
        received += chunk
    assert received == b"piece one;piece two"
    assert response.complete
    response.release()
    assert client.open_connections == 0


async def test_connection_close_reply_is_not_reused(client: UpstreamClient, app_server: StartApp) -> None:
    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    server = await app_server(closing)
    assert await fetch_body(client, server.origin) == b"bye"
    assert await fetch_body(client, server.origin) == b"bye"
    assert server.peer_ports[0] != server.peer_ports[1]
    await eventually(lambda: client.open_connections == 0, what="the connections to close")


async def test_http10_reply_with_length_is_not_reused(client: UpstreamClient, raw_server: StartRaw) -> None:
    reply = b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold"
    server = await raw_server(replying(reply, reply))
    assert await fetch_body(client, server.origin) == b"old"
    assert await fetch_body(client, server.origin) == b"old"
    assert len(server.peer_ports) == 2


# -- broken and unexpected replies -----------------------------------------------------------------------------
async def test_garbage_instead_of_http_raises_invalid_response(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    with pytest.raises(InvalidResponse):
        await fetch(client, server.origin)
    await eventually(lambda: client.open_connections == 0, what="the connection to close")


async def test_invalid_header_line_raises_invalid_response(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying(b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n"))
    with pytest.raises(InvalidResponse):
        await fetch(client, server.origin)


async def test_close_before_any_reply_is_broken_before_reply(client: UpstreamClient, raw_server: StartRaw) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    server = await raw_server(hang_up)
    with pytest.raises(ConnectionBroken) as caught:
        await fetch(client, server.origin)
    assert caught.value.before_reply is True


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"],
    ids=["content-length", "chunked"],
)
async def test_close_in_the_middle_of_the_body_is_broken(client: UpstreamClient, raw_server: StartRaw, reply: bytes) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(0.05)

    server = await raw_server(truncate)
    response = await fetch(client, server.origin)
    assert response.status == 200
    with pytest.raises(ConnectionBroken) as caught:
        await response.read()
    assert caught.value.before_reply is False
    assert not response.complete
    response.release()


async def test_bytes_read_before_a_break_come_out_before_the_error(client: UpstreamClient, raw_server: StartRaw) -> None:
    async def break_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    server = await raw_server(break_off)  # closes right after writing
    response = await fetch(client, server.origin)
    await asyncio.sleep(0.1)  # the close has arrived by now
    assert await response.read_chunk() == b"partial"
    with pytest.raises(ConnectionBroken):
        while await response.read_chunk():
            pass
    response.release()


async def test_extra_bytes_after_a_reply_make_the_connection_not_reused(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying(ok(b"fine") + b"TRAILING JUNK", ok(b"second")))
    assert await fetch_body(client, server.origin) == b"fine"
    assert await fetch_body(client, server.origin) == b"second"
    assert len(server.peer_ports) == 2


async def test_an_unrequested_second_reply_is_never_handed_to_the_next_request(client: UpstreamClient, raw_server: StartRaw) -> None:
    # A desynchronised upstream sends two replies to one request: the stale one must not answer the next request.
    server = await raw_server(replying(ok(b"answer") + ok(b"STALE"), ok(b"fresh")))
    assert await fetch_body(client, server.origin) == b"answer"
    assert await fetch_body(client, server.origin) == b"fresh"
    assert len(server.peer_ports) == 2


async def test_extra_bytes_arriving_after_the_reply_is_read_close_the_connection(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying([ok(b"fine"), b"late junk"], ok(b"second"), pause_s=0.1))
    assert await fetch_body(client, server.origin) == b"fine"
    assert client.open_connections == 1  # pooled ...
    await eventually(lambda: client.open_connections == 0, what="the pool to drop the connection")  # ... until junk arrives
    assert await fetch_body(client, server.origin) == b"second"
    assert len(server.peer_ports) == 2


async def test_server_closing_an_idle_connection_is_forgotten(client: UpstreamClient, raw_server: StartRaw) -> None:
    async def one_reply_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"once"))
        await writer.drain()
        await asyncio.sleep(0.1)

    server = await raw_server(one_reply_then_close)
    assert await fetch_body(client, server.origin) == b"once"
    assert client.open_connections == 1
    await eventually(lambda: client.open_connections == 0, what="the pool to forget the closed connection")
    assert await fetch_body(client, server.origin) == b"once"
    assert len(server.peer_ports) == 2


# -- size bounds -----------------------------------------------------------------------------------------------
async def test_read_over_max_bytes_raises_invalid_response(client: UpstreamClient, app_server: StartApp) -> None:
    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]))

    server = await app_server(sized)
    response = await fetch(client, server.origin, path="/?n=10")
    assert await response.read(max_bytes=10) == b"x" * 10
    response.release()
    response = await fetch(client, server.origin, path="/?n=11")
    with pytest.raises(InvalidResponse) as caught:
        await response.read(max_bytes=10)
    assert "larger than 10 bytes" in str(caught.value)
    response.release()


async def test_a_streamed_body_over_max_bytes_raises_without_reading_it_all(client: UpstreamClient, app_server: StartApp) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"y" * 65536)
        await response.write_eof()
        return response

    server = await app_server(endless)
    response = await fetch(client, server.origin)
    with pytest.raises(InvalidResponse):
        await response.read(max_bytes=256 * 1024)
    response.release()
    await eventually(lambda: client.open_connections == 0, what="the connection to close")


async def test_gzip_bomb_over_max_bytes_raises_invalid_response(client: UpstreamClient, app_server: StartApp) -> None:
    bomb = gzip.compress(b"\0" * (16 << 20))  # 16 MiB of zeros in a few KiB

    async def bombing(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"content-encoding": "gzip"})

    server = await app_server(bombing)
    assert len(bomb) < 64 * 1024
    response = await fetch(client, server.origin)
    with pytest.raises(InvalidResponse) as caught:
        await response.read(max_bytes=1 << 20)
    assert "decompressed" in str(caught.value)
    response.release()


# -- the pool limit --------------------------------------------------------------------------------------------
async def test_limit_makes_a_second_request_wait_for_the_released_connection(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    server = await app_server(echo)
    holder = await fetch(client, server.origin, b"first")
    waiting = asyncio.create_task(fetch_body(client, server.origin, b"second"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert len(server.peer_ports) == 1  # the second request has not been sent
    assert await holder.read() == b"echo first"
    holder.release()
    assert await asyncio.wait_for(waiting, 2) == b"echo second"
    assert server.peer_ports[0] == server.peer_ports[1]
    assert client.open_connections == 1


async def test_limit_waiter_gets_a_new_connection_when_the_held_one_closes(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    server = await app_server(echo)
    holder = await fetch(client, server.origin, b"first")
    waiting = asyncio.create_task(fetch_body(client, server.origin, b"second"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    holder.release()  # unread: closed, which frees the slot
    assert await asyncio.wait_for(waiting, 2) == b"echo second"
    assert server.peer_ports[0] != server.peer_ports[1]
    assert client.open_connections == 1


async def test_limit_wait_is_bounded_by_the_deadline(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    server = await app_server(echo)
    holder = await fetch(client, server.origin, b"first")
    start = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout) as caught:
        await fetch(client, server.origin, b"second", within_s=0.2)
    assert caught.value.stage == "deadline"
    assert 0.15 <= elapsed_since(start) < 1.0
    assert await holder.read() == b"echo first"  # the holder is unaffected
    holder.release()
    assert await fetch_body(client, server.origin, b"third") == b"echo third"
    assert len(set(server.peer_ports)) == 1


async def test_idle_connections_to_another_origin_give_way_at_the_limit(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    first, second = await app_server(echo), await app_server(echo)
    assert await fetch_body(client, first.origin, b"a") == b"echo a"  # now idle, holding the only slot
    assert await fetch_body(client, second.origin, b"b", within_s=1.0) == b"echo b"
    assert client.open_connections == 1
    assert await fetch_body(client, first.origin, b"c", within_s=1.0) == b"echo c"
    assert len(set(first.peer_ports)) == 2  # its idle connection was closed to make room


async def test_a_failed_connect_frees_its_slot(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    refused, _ = Origin.of(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed):
        await fetch(client, refused)
    server = await app_server(echo)
    assert await fetch_body(client, server.origin, b"x", within_s=1.0) == b"echo x"


# -- timeouts --------------------------------------------------------------------------------------------------
async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await reader.read()  # never answers


async def test_first_byte_timeout(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(silent)
    start = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout) as caught:
        await fetch(client, server.origin, first_byte_s=0.2, idle_s=5)
    assert caught.value.stage == "first_byte"
    assert 0.15 <= elapsed_since(start) < 1.0
    await eventually(lambda: client.open_connections == 0, what="the timed-out connection to close")


async def test_interim_replies_do_not_extend_the_first_byte_timeout(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying([b"HTTP/1.1 100 Continue\r\n\r\n"] * 10, pause_s=0.05))
    with pytest.raises(ReadTimeout) as caught:
        await fetch(client, server.origin, first_byte_s=0.2)
    assert caught.value.stage == "first_byte"


async def test_idle_timeout_in_the_middle_of_the_body(client: UpstreamClient, raw_server: StartRaw) -> None:
    stalled = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nten bytes!"
    server = await raw_server(replying(stalled, stalled))
    response = await fetch(client, server.origin, idle_s=0.15)
    start = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout) as caught:
        await response.read()
    assert caught.value.stage == "idle"
    assert 0.1 <= elapsed_since(start) < 1.0
    response.release()
    response = await fetch(client, server.origin, idle_s=0.15)
    assert await response.read_chunk() == b"ten bytes!"
    with pytest.raises(ReadTimeout) as caught:
        await response.read_chunk()
    assert caught.value.stage == "idle"
    response.release()
    await eventually(lambda: client.open_connections == 0, what="the stalled connections to close")
    assert len(server.peer_ports) == 2


async def test_idle_timeout_restarts_with_each_arrival(client: UpstreamClient, raw_server: StartRaw) -> None:
    # Five gaps of 0.05 s with idle_s 0.15: the body takes longer than idle_s in all, yet never idles that long.
    parts = [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"] + [b"x"] * 5
    server = await raw_server(replying(parts, pause_s=0.05))
    response = await fetch(client, server.origin, idle_s=0.15)
    assert await response.read() == b"xxxxx"
    response.release()


async def test_deadline_shorter_than_first_byte_wins(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(silent)
    start = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout) as caught:
        await fetch(client, server.origin, first_byte_s=5, within_s=0.2)
    assert caught.value.stage == "deadline"
    assert 0.15 <= elapsed_since(start) < 1.0


async def test_deadline_bounds_the_body_too(client: UpstreamClient, raw_server: StartRaw) -> None:
    # Each gap (0.05 s) is within idle_s, but the whole body (1 s) would outlast the call's deadline.
    parts = [b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n"] + [b"x"] * 20
    server = await raw_server(replying(parts, pause_s=0.05))
    start = asyncio.get_running_loop().time()
    response = await fetch(client, server.origin, idle_s=5, within_s=0.25)
    with pytest.raises(ReadTimeout) as caught:
        await response.read()
    assert caught.value.stage == "deadline"
    assert elapsed_since(start) < 0.6
    response.release()


async def test_connect_timeout(client: UpstreamClient, unaccepting_port: int) -> None:
    origin, _ = Origin.of(f"http://127.0.0.1:{unaccepting_port}")
    start = asyncio.get_running_loop().time()
    with pytest.raises(ConnectTimeout):
        await fetch(client, origin, connect_s=0.2)
    assert 0.15 <= elapsed_since(start) < 1.0
    assert client.open_connections == 0


async def test_deadline_shorter_than_connect_timeout_wins(client: UpstreamClient, unaccepting_port: int) -> None:
    origin, _ = Origin.of(f"http://127.0.0.1:{unaccepting_port}")
    with pytest.raises(ReadTimeout) as caught:
        await fetch(client, origin, connect_s=5, within_s=0.2)
    assert caught.value.stage == "deadline"


async def test_connection_refused(client: UpstreamClient) -> None:
    origin, _ = Origin.of(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed):
        await fetch(client, origin)
    assert client.open_connections == 0


# -- backpressure ----------------------------------------------------------------------------------------------
async def test_a_slow_reader_pauses_the_socket_instead_of_buffering(client: UpstreamClient, raw_server: StartRaw) -> None:
    total, block_size = 64 << 20, 64 << 10
    block = bytes(range(256)) * (block_size // 256)
    written = 0

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // block_size):
            writer.write(block)
            await writer.drain()
            written += block_size
        await reader.read()

    server = await raw_server(firehose)
    response = await fetch(client, server.origin, idle_s=5, within_s=8)
    first = await response.read_chunk()
    assert first
    await asyncio.sleep(0.5)  # the reader falls behind
    assert 0 < written < 16 << 20, f"the server wrote {written} bytes while nobody read"
    received = len(first)
    digest = hashlib.sha256(first)
    while chunk := await response.read_chunk():
        received += len(chunk)
        digest.update(chunk)
    expected = hashlib.sha256()
    for _ in range(total // block_size):
        expected.update(block)
    assert received == total
    assert digest.hexdigest() == expected.hexdigest()
    assert response.complete
    response.release()


# -- TLS -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def trusting_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def secure(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.scheme} {await request.text()}")


async def test_tls_to_a_trusted_server_works_and_keeps_alive(make_client: MakeClient, app_server: StartApp, ca: trustme.CA) -> None:
    server = await app_server(secure, ssl_context=server_context(ca, "127.0.0.1", "localhost"))
    client = make_client(ssl_context=trusting_context(ca))
    assert server.origin.tls
    assert await fetch_body(client, server.origin, b"one") == b"https one"
    assert await fetch_body(client, server.origin, b"two") == b"https two"
    assert server.peer_ports[0] == server.peer_ports[1]
    assert client.open_connections == 1


async def test_tls_sends_the_host_name_for_sni(make_client: MakeClient, app_server: StartApp, ca: trustme.CA) -> None:
    context = server_context(ca, "localhost")
    names: list[str | None] = []

    def record_sni(ssl_object: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record_sni
    server = await app_server(secure, ssl_context=context, host="localhost")
    client = make_client(ssl_context=trusting_context(ca))
    assert await fetch_body(client, server.origin, b"sni") == b"https sni"
    assert names == ["localhost"]


async def test_tls_with_an_untrusted_certificate_fails_to_connect(client: UpstreamClient, app_server: StartApp, ca: trustme.CA) -> None:
    server = await app_server(secure, ssl_context=server_context(ca, "127.0.0.1"))
    with pytest.raises(ConnectFailed):
        await fetch(client, server.origin)  # the default context does not trust the test CA
    assert client.open_connections == 0
    assert server.peer_ports == []


async def test_tls_with_a_certificate_for_another_host_fails_to_connect(make_client: MakeClient, app_server: StartApp, ca: trustme.CA) -> None:
    server = await app_server(secure, ssl_context=server_context(ca, "api.example.com"))
    client = make_client(ssl_context=trusting_context(ca))
    with pytest.raises(ConnectFailed):
        await fetch(client, server.origin)
    assert client.open_connections == 0


async def test_plain_http_to_a_tls_server_is_not_a_valid_reply(client: UpstreamClient, app_server: StartApp, ca: trustme.CA) -> None:
    server = await app_server(secure, ssl_context=server_context(ca, "127.0.0.1"))
    plain = Origin("http", "127.0.0.1", server.origin.port)
    with pytest.raises((InvalidResponse, ConnectionBroken)):
        await fetch(client, plain, first_byte_s=1)


# -- keep-alive expiry -----------------------------------------------------------------------------------------
async def test_idle_connection_is_closed_after_keepalive(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(keepalive_s=0.1)
    server = await app_server(echo)
    assert await fetch_body(client, server.origin, b"a") == b"echo a"
    assert client.open_connections == 1
    released = asyncio.get_running_loop().time()
    await asyncio.sleep(0.05)
    assert client.open_connections == 1  # not before keepalive_s
    await eventually(lambda: client.open_connections == 0, timeout_s=0.4, what="the idle connection to expire")
    assert elapsed_since(released) >= 0.09
    assert await fetch_body(client, server.origin, b"b") == b"echo b"
    assert server.peer_ports[0] != server.peer_ports[1]


async def test_connection_in_use_longer_than_keepalive_is_still_reused(make_client: MakeClient, app_server: StartApp) -> None:
    # keepalive_s counts idle time in the pool, not the age of the connection.
    client = make_client(keepalive_s=0.15)
    server = await app_server(echo)
    for body in (b"1", b"2", b"3", b"4", b"5"):
        assert await fetch_body(client, server.origin, body) == b"echo " + body
        await asyncio.sleep(0.05)
    assert len(set(server.peer_ports)) == 1


# -- cancellation, release, drain ------------------------------------------------------------------------------
async def test_cancelling_a_wait_for_headers_closes_that_connection(client: UpstreamClient, app_server: StartApp) -> None:
    calls = 0

    async def first_one_hangs(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return web.Response(text="served")

    server = await app_server(first_one_hangs)
    waiting = asyncio.create_task(fetch(client, server.origin))
    await eventually(lambda: calls == 1, what="the request to arrive")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await fetch_body(client, server.origin) == b"served"
    assert server.peer_ports[0] != server.peer_ports[1]
    await eventually(lambda: client.open_connections == 1, what="the cancelled connection to close")


async def test_cancelling_a_body_read_then_releasing_closes_the_connection(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome", ok(b"next")))
    response = await fetch(client, server.origin)
    reading = asyncio.create_task(response.read())
    await asyncio.sleep(0.05)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    response.release()
    assert await fetch_body(client, server.origin) == b"next"
    assert len(server.peer_ports) == 2


async def test_release_of_an_unread_body_closes_the_connection(client: UpstreamClient, app_server: StartApp) -> None:
    server = await app_server(echo)
    response = await fetch(client, server.origin, b"ignored")
    response.release()
    response.release()  # idempotent
    assert await fetch_body(client, server.origin, b"next") == b"echo next"
    assert server.peer_ports[0] != server.peer_ports[1]
    await eventually(lambda: client.open_connections == 1, what="the unread connection to close")


async def test_release_twice_pools_the_connection_once(client: UpstreamClient, app_server: StartApp) -> None:
    both_arrived = asyncio.Event()
    arrived = 0

    async def rendezvous(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 3:  # the two concurrent requests after the first
            both_arrived.set()
        if arrived > 1:
            await asyncio.wait_for(both_arrived.wait(), 2)
        return web.Response(body=await request.read())

    server = await app_server(rendezvous)
    response = await fetch(client, server.origin, b"first")
    assert await response.read() == b"first"
    response.release()
    response.release()
    assert client.open_connections == 1
    first, second = await asyncio.gather(fetch_body(client, server.origin, b"a"), fetch_body(client, server.origin, b"b"))
    assert (first, second) == (b"a", b"b")
    assert server.peer_ports[1] != server.peer_ports[2]  # not both handed the one pooled connection
    assert client.open_connections == 2


async def test_drain_reads_the_rest_so_the_connection_is_reused(client: UpstreamClient, app_server: StartApp) -> None:
    async def large(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 200_000)

    server = await app_server(large)
    response = await fetch(client, server.origin)
    await response.drain(1.0)
    assert response.complete
    response.release()
    assert await fetch_body(client, server.origin) == b"z" * 200_000
    assert server.peer_ports[0] == server.peer_ports[1]


async def test_drain_of_a_stalled_body_times_out(client: UpstreamClient, raw_server: StartRaw) -> None:
    server = await raw_server(replying(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nstuck"))
    response = await fetch(client, server.origin, idle_s=5)
    start = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout):
        await response.drain(0.2)
    assert elapsed_since(start) < 1.0
    assert not response.complete
    response.release()
    await eventually(lambda: client.open_connections == 0, what="the stalled connection to close")


# -- close -----------------------------------------------------------------------------------------------------
async def test_close_closes_idle_and_busy_connections(client: UpstreamClient, app_server: StartApp) -> None:
    release_body = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/slow":
            response = web.StreamResponse()
            response.content_length = 100
            await response.prepare(request)
            await response.write(b"partial")
            await asyncio.wait_for(release_body.wait(), 3)
            return response
        return web.Response(text="quick")

    server = await app_server(handler)
    busy = await fetch(client, server.origin, path="/slow")
    assert await fetch_body(client, server.origin, path="/quick") == b"quick"  # now idle in the pool
    assert client.open_connections == 2
    await client.close()
    assert client.open_connections == 0
    with pytest.raises(ConnectionBroken):
        await busy.read()
    busy.release()
    with pytest.raises(ConnectFailed):
        await fetch(client, server.origin)
    release_body.set()


async def test_close_fails_requests_waiting_for_the_limit(make_client: MakeClient, app_server: StartApp) -> None:
    client = make_client(limit=1)
    server = await app_server(echo)
    holder = await fetch(client, server.origin, b"held")
    waiting = asyncio.create_task(fetch(client, server.origin, b"waiting"))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(ConnectFailed):
        await asyncio.wait_for(waiting, 1)
    holder.release()
    assert client.open_connections == 0
