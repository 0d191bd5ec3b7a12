"""A fast OpenAI-compatible mock upstream for benchmarks: raw asyncio Protocol on uvloop, precomputed replies.

It must never be the bottleneck of a benchmark, so it does as little as possible per request: a minimal
HTTP/1.1 keep-alive parser (request line, Content-Length or chunked body, pipelining), no routing table,
no JSON parsing (a regex decides `stream` and `include_usage`), and every reply is a byte string built once
at start-up. Endpoints:

    POST /v1/chat/completions        JSON reply, or SSE (`"stream": true`): role chunk, N content chunks,
                                     a finish chunk, a usage chunk when `stream_options.include_usage`, [DONE]
    POST /v1/completions             JSON reply or SSE, like chat
    POST /v1/embeddings              JSON reply with `--embedding-dim` floats per input
    GET  /v1/models, GET /healthz    small JSON
    GET  /_stats                     {"requests": N, "connections_opened": N, "connections_open": N}: lets
                                     the benchmark check that a proxy reuses its upstream connections
    POST /paced/v1/chat/completions  the same SSE, but the events leave `--paced-ms` apart (the first one
                                     with the headers, the chunked-encoding terminator with [DONE] unless
                                     `--terminator-gap-ms` says otherwise): shows that a proxy relays chunk
                                     by chunk, and gives a clean time-to-first-byte measurement

Any path prefix before `/v1/` is ignored, so `base_url` may be `http://127.0.0.1:PORT/v1` or
`http://127.0.0.1:PORT/paced/v1`. Binds 127.0.0.1 only.

    python loadtest/upstream.py --port 9100 [--chunks 5] [--paced-ms 10] [--embedding-dim 256] [--terminator-gap-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from typing import Any

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a gateway dependency
    uvloop = None  # type: ignore[assignment]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024

_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_INCLUDE_USAGE = re.compile(rb'"include_usage"\s*:\s*true')
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
_CONN_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)

CREATED = 1_700_000_000
WORDS = ["Hello", " from", " the", " fast", " mock", " upstream", ".", " It", " answers", " quickly", "."]


# -- precomputed replies ------------------------------------------------------------------------------
def _http(status: str, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\nconnection: keep-alive\r\n\r\n" + body
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
CHUNKED_END = b"0\r\n\r\n"


class Replies:
    """Every reply as bytes, built once."""

    def __init__(self, chunks: int, embedding_dim: int) -> None:
        text = "".join(WORDS)
        usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
        chat = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}],
            "usage": usage, "system_fingerprint": "fp_bench",
        }
        completion = {
            "id": "cmpl-bench", "object": "text_completion", "created": CREATED, "model": "bench",
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}], "usage": usage,
        }
        vector = [round(((i * 7919) % 1000) / 1000.0 - 0.5, 6) for i in range(embedding_dim)]
        embeddings = {
            "object": "list", "model": "bench", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
        models = {"object": "list", "data": [{"id": "bench", "object": "model", "created": CREATED, "owned_by": "loadtest"}]}
        json_type = b"application/json"
        self.chat = _http("200 OK", json_type, orjson.dumps(chat))
        self.completion = _http("200 OK", json_type, orjson.dumps(completion))
        self.embeddings = _http("200 OK", json_type, orjson.dumps(embeddings))
        self.models = _http("200 OK", json_type, orjson.dumps(models))
        self.health = _http("200 OK", json_type, b'{"status":"ok"}')
        self.not_found = _http("404 Not Found", json_type, b'{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}')
        self.bad_request = _http("400 Bad Request", json_type, b'{"error":{"message":"bad request","type":"invalid_request_error"}}')
        # Streams: a list of chunked-encoded SSE events per variant (chat/completion x usage or not).
        self.chat_events = {u: self._chat_events(chunks, usage if u else None) for u in (False, True)}
        self.completion_events = {u: self._completion_events(chunks, usage if u else None) for u in (False, True)}
        # Whole streams in one write (the fast path).
        self.chat_stream = {u: SSE_HEAD + b"".join(e) + CHUNKED_END for u, e in self.chat_events.items()}
        self.completion_stream = {u: SSE_HEAD + b"".join(e) + CHUNKED_END for u, e in self.completion_events.items()}

    @staticmethod
    def _sse(event: object) -> bytes:
        payload = b"[DONE]" if event is None else orjson.dumps(event)
        return _chunk(b"data: " + payload + b"\n\n")

    def _chat_events(self, chunks: int, usage: dict[str, Any] | None) -> list[bytes]:
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "bench", "system_fingerprint": "fp_bench"}
        if usage is not None:
            base["usage"] = None

        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            return self._sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

        events = [event({"role": "assistant", "content": ""}, None)]
        events += [event({"content": WORDS[i % len(WORDS)]}, None) for i in range(chunks)]
        events.append(event({}, "stop"))
        if usage is not None:
            events.append(self._sse({**base, "choices": [], "usage": usage}))
        events.append(self._sse(None))
        return events

    def _completion_events(self, chunks: int, usage: dict[str, Any] | None) -> list[bytes]:
        base = {"id": "cmpl-bench", "object": "text_completion", "created": CREATED, "model": "bench"}
        events = [self._sse({**base, "choices": [{"index": 0, "text": WORDS[i % len(WORDS)], "finish_reason": None, "logprobs": None}]}) for i in range(chunks)]
        events.append(self._sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}))
        if usage is not None:
            events.append(self._sse({**base, "choices": [], "usage": usage}))
        events.append(self._sse(None))
        return events


# -- the server -----------------------------------------------------------------------------------------
class UpstreamProtocol(asyncio.Protocol):
    """One connection: parse pipelined HTTP/1.1 requests out of a buffer and answer each with bytes."""

    __slots__ = ("server", "transport", "buffer", "closed")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.server.opened += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections -= 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while buffer:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._fail()
                    return
                break
            head = buffer[:head_end]
            body_start = head_end + 4
            match = _CONTENT_LENGTH.search(head)
            if match is not None:
                length = int(match.group(1))
                if length > MAX_BODY_BYTES:
                    self._fail()
                    return
                end = body_start + length
                if len(buffer) < end:
                    break
                body = buffer[body_start:end]
            elif _CHUNKED.search(head) is not None:
                parsed = _dechunk(buffer, body_start)
                if parsed is None:
                    if len(buffer) > MAX_BODY_BYTES:
                        self._fail()
                        return
                    break
                body, end = parsed
            else:
                body, end = b"", body_start
            buffer = buffer[end:]
            self._answer(head, body)
            if _CONN_CLOSE.search(head) is not None:
                self.transport.close()  # type: ignore[union-attr]
                buffer = b""
                break
        self.buffer = buffer

    def _fail(self) -> None:
        self.transport.write(self.server.replies.bad_request)  # type: ignore[union-attr]
        self.transport.close()  # type: ignore[union-attr]
        self.buffer = b""

    def _answer(self, head: bytes, body: bytes) -> None:
        server = self.server
        replies = server.replies
        server.requests += 1
        line_end = head.find(b"\r\n")
        request_line = head[:line_end] if line_end >= 0 else head
        parts = request_line.split(b" ", 2)
        if len(parts) < 2:
            self.transport.write(replies.bad_request)  # type: ignore[union-attr]
            return
        method, target = parts[0], parts[1]
        query = target.find(b"?")
        path = target if query < 0 else target[:query]
        if method == b"POST":
            if path.endswith(b"/v1/chat/completions"):
                if _STREAM_TRUE.search(body) is None:
                    self.transport.write(replies.chat)  # type: ignore[union-attr]
                    return
                usage = _INCLUDE_USAGE.search(body) is not None
                if path.startswith(b"/paced/") and server.paced_s > 0:
                    self._paced(replies.chat_events[usage])
                else:
                    self.transport.write(replies.chat_stream[usage])  # type: ignore[union-attr]
                return
            if path.endswith(b"/v1/embeddings"):
                self.transport.write(replies.embeddings)  # type: ignore[union-attr]
                return
            if path.endswith(b"/v1/completions"):
                if _STREAM_TRUE.search(body) is None:
                    self.transport.write(replies.completion)  # type: ignore[union-attr]
                else:
                    self.transport.write(replies.completion_stream[_INCLUDE_USAGE.search(body) is not None])  # type: ignore[union-attr]
                return
        elif method == b"GET":
            if path.endswith(b"/v1/models"):
                self.transport.write(replies.models)  # type: ignore[union-attr]
                return
            if path.endswith(b"/healthz") or path.endswith(b"/readyz"):
                self.transport.write(replies.health)  # type: ignore[union-attr]
                return
            if path == b"/_stats":
                stats = {"requests": server.requests, "connections_opened": server.opened, "connections_open": server.connections}
                self.transport.write(_http("200 OK", b"application/json", orjson.dumps(stats)))  # type: ignore[union-attr]
                return
        self.transport.write(replies.not_found)  # type: ignore[union-attr]

    def _paced(self, events: list[bytes]) -> None:
        """Headers and the first event now, each further event `paced_s` after the previous one (one timer
        at a time, so the order can never change). Proxies and the load generator never pipeline behind a
        stream, so nothing else is written to this connection meanwhile."""
        assert self.transport is not None
        self.transport.write(SSE_HEAD + events[0])
        steps: list[tuple[float, bytes]] = [(self.server.paced_s, data) for data in events[1:]]
        gap = self.server.terminator_gap_s
        if gap > 0:  # the end of the HTTP body arrives after [DONE]: a client must still reuse the connection
            steps.append((gap, CHUNKED_END))
        else:
            steps[-1] = (steps[-1][0], steps[-1][1] + CHUNKED_END)
        self._paced_next(steps, 0)

    def _paced_next(self, steps: list[tuple[float, bytes]], index: int) -> None:
        delay, _ = steps[index]
        self.server.loop.call_later(delay, self._paced_write, steps, index)

    def _paced_write(self, steps: list[tuple[float, bytes]], index: int) -> None:
        if self.closed or self.transport is None:
            return
        self.transport.write(steps[index][1])
        if index + 1 < len(steps):
            self._paced_next(steps, index + 1)


def _dechunk(buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """A chunked request body starting at `start`: (body, end offset), or None when incomplete."""
    parts: list[bytes] = []
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buffer[pos:line_end].split(b";", 1)[0] or b"0", 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < pos + size + 2:
            return None
        parts.append(buffer[pos:pos + size])
        pos += size + 2


class Server:
    def __init__(self, loop: asyncio.AbstractEventLoop, replies: Replies, paced_s: float, terminator_gap_s: float = 0.0) -> None:
        self.loop = loop
        self.replies = replies
        self.paced_s = paced_s
        self.terminator_gap_s = terminator_gap_s
        self.requests = 0
        self.connections = 0
        self.opened = 0

    def protocol(self) -> UpstreamProtocol:
        return UpstreamProtocol(self)


async def serve(host: str, port: int, chunks: int, paced_ms: float, embedding_dim: int, terminator_gap_ms: float = 0.0, ready_line: bool = True) -> None:
    loop = asyncio.get_running_loop()
    server = Server(loop, Replies(chunks, embedding_dim), paced_ms / 1000.0, terminator_gap_ms / 1000.0)
    listener = await loop.create_server(server.protocol, host, port, backlog=2048, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = listener.sockets[0].getsockname()
    if ready_line:
        print(f"upstream listening on http://{bound[0]}:{bound[1]} (chunks={chunks}, paced={paced_ms}ms)", flush=True)
    started = time.monotonic()
    await stop.wait()
    listener.close()
    elapsed = time.monotonic() - started
    print(f"upstream: {server.requests} requests in {elapsed:.1f}s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=5, help="content chunks per stream (default 5)")
    parser.add_argument("--paced-ms", type=float, default=10.0, help="gap between chunks on /paced/v1/... (default 10)")
    parser.add_argument("--embedding-dim", type=int, default=256, help="floats per embedding (default 256)")
    parser.add_argument("--terminator-gap-ms", type=float, default=0.0,
                        help="paced streams: send the end of the chunked body this long after [DONE] (default 0: with it)")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the benchmark upstream binds loopback addresses only")
    coroutine = serve(args.host, args.port, args.chunks, args.paced_ms, args.embedding_dim, args.terminator_gap_ms)
    if uvloop is not None:
        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
