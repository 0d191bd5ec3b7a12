"""Mixed OpenAI-style traffic against the gateway: non-streamed chat, streamed chat, embeddings.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:8080

Works against the embedded default (`gateway serve` with no config: models `mock-gpt`, `mock-embedding`).
For another deployment set the model names, e.g. against the benchmark config of `overhead.py`:

    GATEWAY_CHAT_MODEL=bench GATEWAY_EMBEDDING_MODEL=bench locust -f loadtest/locustfile.py ...

Environment:
    GATEWAY_CHAT_MODEL        chat model name (default mock-gpt)
    GATEWAY_EMBEDDING_MODEL   embedding model name (default mock-embedding)
    GATEWAY_API_KEY           sent as `Authorization: Bearer ...` when set (the gateway never forwards it)
    LOCUST_WAIT_MAX_S         each user waits uniformly 0..this between requests (default 0.1; 0 = flat out)
    LOCUST_WEIGHTS            chat,stream,embeddings task weights (default 6,3,1)

Entries in locust's table:
    chat                          a non-streamed completion (response checked: choices[0].message)
    chat stream                   a streamed completion, whole body read; fails unless it ends with
                                  `data: [DONE]` and carries a usage chunk (stream_options.include_usage)
    chat stream: first byte       time to the first byte of the stream's body (the request's own timer
                                  is replaced by the time to the last byte)
    embeddings                    one input, response checked: data[0].embedding

FastHttpUser (geventhttpclient) keeps the client's own cost per request low, so one locust process can
drive a few thousand requests per second; add `--processes N` for more.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import FastHttpUser, between, constant, task

CHAT_MODEL = os.environ.get("GATEWAY_CHAT_MODEL", "mock-gpt")
EMBEDDING_MODEL = os.environ.get("GATEWAY_EMBEDDING_MODEL", "mock-embedding")
API_KEY = os.environ.get("GATEWAY_API_KEY", "")
WAIT_MAX_S = float(os.environ.get("LOCUST_WAIT_MAX_S", "0.1"))
WEIGHTS = [int(part) for part in os.environ.get("LOCUST_WEIGHTS", "6,3,1").split(",")]
if len(WEIGHTS) != 3 or min(WEIGHTS) < 0 or sum(WEIGHTS) == 0:
    raise SystemExit("LOCUST_WEIGHTS must be three non-negative integers, e.g. 6,3,1")

DONE_TAIL = b"data: [DONE]"
PROMPTS = [
    "Summarise why a reverse proxy adds latency, in one sentence.",
    "Write a haiku about connection pools.",
    "List three reasons to stream model responses.",
    "Explain keep-alive to a new engineer in two sentences.",
    "What is a p99 latency, briefly?",
]
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
if API_KEY:
    HEADERS["Authorization"] = f"Bearer {API_KEY}"
STREAM_HEADERS = {**HEADERS, "Accept": "text/event-stream"}


def _chat_body(stream: bool) -> str:
    body: dict[str, object] = {
        "model": CHAT_MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": random.choice(PROMPTS)},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body)


class GatewayUser(FastHttpUser):
    wait_time = between(0.0, WAIT_MAX_S) if WAIT_MAX_S > 0 else constant(0)
    # one keep-alive connection per user, as an SDK client would hold
    concurrency = 1
    network_timeout = 60.0
    connection_timeout = 10.0
    _ids = itertools.count()

    def on_start(self) -> None:
        self.user_id = next(self._ids)
        self.sequence = 0

    def _request_id(self) -> str:
        self.sequence += 1
        return f"locust-{os.getpid()}-{self.user_id}-{self.sequence}"

    @task(WEIGHTS[0])
    def chat(self) -> None:
        headers = {**HEADERS, "x-request-id": self._request_id()}
        with self.client.post("/v1/chat/completions", data=_chat_body(False), headers=headers, name="chat", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                message = response.json()["choices"][0]["message"]
            except (ValueError, KeyError, IndexError, TypeError):
                response.failure(f"not a chat completion: {(response.text or '')[:200]}")
                return
            if not isinstance(message.get("content"), str):
                response.failure("choices[0].message.content missing")

    @task(WEIGHTS[1])
    def chat_stream(self) -> None:
        headers = {**STREAM_HEADERS, "x-request-id": self._request_id()}
        started = time.perf_counter()
        with self.client.post(
            "/v1/chat/completions", data=_chat_body(True), headers=headers, name="chat stream", catch_response=True, stream=True
        ) as response:
            if response.status_code != 200:
                body = b"".join(response.iter_content(65536, decode_content=False)) if response.status_code else b""
                response.failure(f"HTTP {response.status_code}: {body[:200]!r}")
                return
            parts: list[bytes] = []
            first_byte_ms: float | None = None
            for chunk in response.iter_content(65536, decode_content=False):
                if first_byte_ms is None:
                    first_byte_ms = (time.perf_counter() - started) * 1000
                parts.append(chunk if isinstance(chunk, bytes) else chunk.encode())
            total_ms = (time.perf_counter() - started) * 1000
            body = b"".join(parts)
            meta = getattr(response, "request_meta", None)
            if isinstance(meta, dict):
                meta["response_time"] = total_ms  # the whole stream, not just the headers
                meta["response_length"] = len(body)
            if first_byte_ms is not None:
                self.environment.events.request.fire(
                    request_type="POST", name="chat stream: first byte", response_time=first_byte_ms,
                    response_length=0, exception=None, context={},
                )
            if not body.rstrip().endswith(DONE_TAIL):
                response.failure(f"stream did not end with [DONE]: ...{body[-120:]!r}")
            elif b'"usage"' not in body or b'"prompt_tokens"' not in body:
                response.failure("stream had no usage chunk although stream_options.include_usage was set")

    @task(WEIGHTS[2])
    def embeddings(self) -> None:
        headers = {**HEADERS, "x-request-id": self._request_id()}
        body = json.dumps({"model": EMBEDDING_MODEL, "input": random.choice(PROMPTS)})
        with self.client.post("/v1/embeddings", data=body, headers=headers, name="embeddings", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                vector = response.json()["data"][0]["embedding"]
            except (ValueError, KeyError, IndexError, TypeError):
                response.failure(f"not an embeddings response: {(response.text or '')[:200]}")
                return
            if not vector:
                response.failure("empty embedding")
