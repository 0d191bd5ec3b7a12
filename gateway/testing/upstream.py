"""A scriptable OpenAI-compatible upstream: a real aiohttp server that records what it received.

Each incoming request takes the next scripted `Reply` (or the default one) and answers accordingly:
normally, slowly, with an error status, with garbage, or with a stream that stalls or breaks midway.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """How the fake upstream answers one request."""

    status: int = 200
    body: bytes | dict[str, Any] | None = None  # None: a well-formed reply echoing the request
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line (first-byte timeouts)
    reset: bool = False  # drop the connection without answering
    chunk_delay_s: float = 0.0  # between stream events (idle timeouts, relay timing)
    break_after: int | None = None  # streams: drop the connection after this many events
    omit_done: bool = False  # streams: end cleanly but without `data: [DONE]`
    stream_garbage: bool = False  # streams: send one event that is not JSON
    stream_error: dict[str, Any] | None = None  # streams: send `{"error": stream_error}` as the third event, then end
    stream_raw: bytes | None = None  # streams: send these bytes verbatim in place of the third event, then go on
    words: int = 5  # streams: content events (plus role and finish events)
    chunks: tuple[str, ...] | None = None  # streams: these content pieces instead of `w0 `, `w1 `...
    split_events: bool = False  # streams: write each event in two halves, a moment apart (separate reads)
    done_gap_s: float = 0.0  # streams: pause between `data: [DONE]` and the end of the HTTP body


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    peer_port: int  # the client's source port: equal ports mean a reused keep-alive connection


class FakeUpstream:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script: collections.deque[Reply] = collections.deque()
        self.received: list[Received] = []
        self.disconnects = 0  # streams whose client (the gateway) went away before the end
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(Received(request.method, request.path, dict(request.headers), body, raw, peer[1] if peer else 0))
        reply = self.script.popleft() if self.script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.reset:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # nothing more to send on a dropped connection
        if request.path.endswith("/models"):
            return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]})
        if reply.status != 200 or reply.body is not None:
            data = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body or {"error": {"message": f"fake error {reply.status}", "type": "server_error"}})
            return web.Response(status=reply.status, body=data, headers={"content-type": "application/json", **reply.headers})
        request_body = body if isinstance(body, dict) else {}
        if request_body.get("stream"):
            return await self._stream(request, request_body, reply)
        return web.Response(body=orjson.dumps(_completion(request.path, request_body)), content_type="application/json")

    async def _stream(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream", **reply.headers})
        await response.prepare(request)
        events = _stream_events(request.path, body, reply.words, reply.chunks)
        try:
            for index, event in enumerate(events):
                if reply.break_after is not None and index >= reply.break_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if reply.chunk_delay_s and index:
                    await asyncio.sleep(reply.chunk_delay_s)
                if reply.stream_garbage and index == 2:
                    await response.write(b"data: {this is not json\n\n")
                    continue
                if reply.stream_raw is not None and index == 2:
                    await response.write(reply.stream_raw)
                    continue
                if reply.stream_error is not None and index == 2:
                    await response.write(b"data: " + orjson.dumps({"error": reply.stream_error}) + b"\n\n")
                    break
                data = b"data: " + orjson.dumps(event) + b"\n\n"
                if reply.split_events:
                    await response.write(data[: len(data) // 2])
                    await asyncio.sleep(0.01)
                    data = data[len(data) // 2 :]
                await response.write(data)
            if not reply.omit_done:
                await response.write(b"data: [DONE]\n\n")
            if reply.done_gap_s:
                await asyncio.sleep(reply.done_gap_s)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response


def _echo_text(path: str, body: dict[str, Any]) -> str:
    if path.endswith("/chat/completions"):
        messages = body.get("messages") or [{}]
        content = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
        return f"echo: {content}" if isinstance(content, str) else "echo"
    return f"echo: {body.get('prompt', '')}"


def _completion(path: str, body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "fake-model")
    if path.endswith("/embeddings"):
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    text = _echo_text(path, body)
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    if path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        kind = "text_completion"
    return {"id": "fake-1", "object": kind, "created": int(time.time()), "model": model, "choices": [choice], "usage": usage}


def _stream_events(path: str, body: dict[str, Any], words: int, chunks: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Chat chunks (role first) for /chat/completions, `text_completion` chunks for /completions."""
    chat = path.endswith("/chat/completions")
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": "fake-stream-1", "object": kind, "created": int(time.time()), "model": body.get("model", "fake-model")}

    def choice(text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if chat:
            return {"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}

    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}] if chat else []
    pieces = chunks if chunks is not None else tuple(f"w{i} " for i in range(words))
    events += [{**base, "choices": [choice(piece, None)]} for piece in pieces]
    events.append({**base, "choices": [choice(None, "stop")]})
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(pieces), "total_tokens": 7 + len(pieces)}})
    return events
