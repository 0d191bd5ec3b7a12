"""The `openai` provider: any OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio, another gateway).

Failures are mapped here, once, to the most specific `gateway.errors` class; nothing above this module
sees an upstream client exception. The provider key is revealed only into the pre-rendered request heads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.config.model import ProviderConfig, UpstreamTimeouts
from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.exchange import Endpoint
from gateway.providers.base import StreamEvent, UpstreamCall
from gateway.providers.sse import DONE, SSEDecoder
from gateway.secret import Secret
from gateway.upstream import (
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Origin,
    ReadTimeout,
    RequestHead,
    UpstreamClient,
    UpstreamClientError,
    UpstreamResponse,
)

MAX_ERROR_BODY_BYTES = 64 * 1024
DRAIN_AFTER_DONE_S = 1.0  # how long to wait for the end of a stream's body after its [DONE]


class OpenAIProvider:
    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        self.name = config.name
        self._client = client
        self._base_url = config.base_url
        self._timeouts = config.timeouts
        self._api_key = config.api_key  # a Secret: only to mask it in what the provider says back
        self._origin, path = Origin.of(config.base_url)
        client.prepare(self._origin)
        # No redirects are followed: base_url is the trust boundary, and the key must not go anywhere else.
        headers = {"content-type": "application/json", "accept-encoding": "gzip, deflate"}
        headers.update((name.lower(), value) for name, value in config.headers.items())
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key.reveal()}"
        self._heads = {endpoint: RequestHead(self._origin, "POST", f"{path}/{endpoint.value}", headers) for endpoint in Endpoint}

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self.name!r}, base_url={self._base_url!r})"

    async def send(self, call: UpstreamCall) -> dict[str, Any]:
        response = await self._post(call)
        try:
            raw = await response.read()
        except UpstreamClientError as exc:
            raise _failure(self.name, exc, call, self._timeouts, "while sending its reply") from None
        finally:
            response.release()
        return _json_object(raw, self.name, "answered with a body")

    async def open_stream(self, call: UpstreamCall) -> OpenAIStream:
        response = await self._post(call)
        content_type = response.header(b"content-type") or ""
        if not content_type.startswith("text/event-stream"):
            response.release()
            raise UpstreamBadResponse(f"provider {self.name!r} answered a stream request with {content_type or 'no content type'!r}")
        return OpenAIStream(self.name, response, call, self._timeouts, self._api_key)

    async def close(self) -> None:
        return None  # the client belongs to the app, which closes it

    async def _post(self, call: UpstreamCall) -> UpstreamResponse:
        """Send the request and wait for the status line and headers; non-2xx become errors here."""
        timeouts = self._timeouts
        request = self._heads[call.endpoint].render(orjson.dumps(call.body), call.request_id)
        deadline = asyncio.get_running_loop().time() + call.timeout_s
        try:
            response = await self._client.request(
                self._origin, request, connect_s=timeouts.connect_s, first_byte_s=timeouts.first_byte_s, idle_s=timeouts.idle_s, deadline=deadline
            )
        except UpstreamClientError as exc:
            raise _failure(self.name, exc, call, timeouts, "before answering") from None
        if response.status < 300:
            return response
        raise await self._status_error(response)

    async def _status_error(self, response: UpstreamResponse) -> GatewayError:
        status = response.status
        try:
            raw = await response.read(MAX_ERROR_BODY_BYTES)
        except UpstreamClientError:
            raw = b""
        finally:
            response.release()
        message = _error_message(raw, self._api_key) or f"HTTP {status}"
        if status in (401, 403):
            # The provider refused *our* key: a gateway misconfiguration, never the client's fault.
            return UpstreamStatusError(f"provider {self.name!r} rejected the gateway's credentials (HTTP {status})", code="upstream_auth_failed")
        if status >= 500 or status < 400:
            return UpstreamStatusError(f"provider {self.name!r} failed with HTTP {status}: {message}", code=f"upstream_status_{status}")
        retry_after = response.header(b"retry-after")
        return UpstreamRejected(status, f"provider {self.name!r}: {message}", headers={"retry-after": retry_after} if retry_after else {})


def _failure(provider: str, exc: UpstreamClientError, call: UpstreamCall, timeouts: UpstreamTimeouts, where: str) -> UpstreamError:
    """The gateway error for an upstream client failure; `where` says what the provider was doing."""
    if isinstance(exc, ConnectTimeout):
        return UpstreamTimeout(f"provider {provider!r} did not accept a connection within {timeouts.connect_s:g}s", code="upstream_connect_timeout")
    if isinstance(exc, ReadTimeout):
        if exc.stage == "first_byte":
            return UpstreamTimeout(f"provider {provider!r} did not answer within {timeouts.first_byte_s:g}s", code="upstream_first_byte_timeout")
        if exc.stage == "idle":
            return UpstreamTimeout(f"provider {provider!r} stalled {where} longer than its idle timeout ({timeouts.idle_s:g}s)", code="upstream_idle_timeout")
        return UpstreamTimeout(f"provider {provider!r} passed the call's deadline ({call.timeout_s:g}s) {where}", code="upstream_deadline_exceeded")
    if isinstance(exc, ConnectFailed):
        return UpstreamConnectError(f"cannot connect to provider {provider!r}: {exc}")
    if isinstance(exc, ConnectionBroken):
        if exc.before_reply:
            return UpstreamConnectError(f"provider {provider!r} closed the connection {where}")
        if where == "mid-stream":
            return UpstreamConnectError(f"provider {provider!r} broke the stream: {exc}", code="upstream_stream_broken")
        return UpstreamConnectError(f"provider {provider!r} broke off its reply: {exc}")
    return UpstreamBadResponse(f"provider {provider!r} sent {exc}")


def _json_object(raw: bytes, provider: str, what: str) -> dict[str, Any]:
    """Upstream JSON that must be an object; anything else is the provider breaking the protocol.

    Runs once per stream event: the error message is only put together when there is an error."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"provider {provider!r} {what} that is not JSON") from None
    if not isinstance(value, dict):
        raise UpstreamBadResponse(f"provider {provider!r} {what} that is JSON but not an object")
    return value


def _error_message(raw: bytes, api_key: Secret | None) -> str:
    """The provider's own wording of an error, with our key masked: providers do quote the key they got."""
    message = _error_text(raw)
    if api_key and api_key.reveal() in message:
        message = message.replace(api_key.reveal(), "********")
    return message


def _error_text(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace").strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(message := error.get("message"), str):
        return message
    if isinstance(error, str):
        return error
    return ""


class OpenAIStream:
    """Decodes the upstream's SSE body into events; every failure becomes an `UpstreamError`."""

    def __init__(self, provider: str, response: UpstreamResponse, call: UpstreamCall, timeouts: UpstreamTimeouts, api_key: Secret | None = None) -> None:
        self._provider = provider
        self._response = response
        self._call = call
        self._timeouts = timeouts
        self._api_key = api_key
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[StreamEvent]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[StreamEvent]]:
        decoder = SSEDecoder()
        while True:
            batch, done, error = self._decode(decoder, await self._read())
            self.complete = done
            if batch:
                yield batch
            if error is not None:
                raise error
            if done:
                return

    async def aclose(self) -> None:
        """Return the connection to the pool after a complete stream, else close it.

        `[DONE]` can arrive a read before the end of the HTTP body; releasing right away would close a
        healthy keep-alive connection (a new TCP and TLS handshake for the next call). So the rest of the
        body is read first, briefly: the client already has its `[DONE]` by now.
        """
        response = self._response
        if self.complete and not response.complete:
            try:
                await response.drain(min(self._timeouts.idle_s, DRAIN_AFTER_DONE_S))
            except UpstreamClientError:
                pass
        response.release()  # closes the connection unless its body was read to the end

    def _decode(self, decoder: SSEDecoder, chunk: bytes) -> tuple[list[StreamEvent], bool, UpstreamError | None]:
        """The events completed by one read, whether [DONE] came, and the failure that cut the read short.

        Events that arrived intact before a bad one are still returned, so the client gets them first.
        """
        if not chunk:
            return [], False, UpstreamConnectError(f"provider {self._provider!r} ended the stream without [DONE]", code="upstream_stream_truncated")
        try:
            payloads = decoder.feed(chunk)
        except ValueError as exc:  # an event over the decoder's size bound
            return [], False, UpstreamBadResponse(f"provider {self._provider!r} sent an invalid stream: {exc}")
        batch: list[StreamEvent] = []
        for payload in payloads:
            if payload is DONE:
                return batch, True, None
            try:
                batch.append(self._parse(payload))
            except UpstreamError as error:
                return batch, False, error
        return batch, False, None

    async def _read(self) -> bytes:
        try:
            return await self._response.read_chunk()
        except UpstreamClientError as exc:
            raise _failure(self._provider, exc, self._call, self._timeouts, "mid-stream") from None

    def _parse(self, payload: bytes) -> StreamEvent:
        event = _json_object(payload, self._provider, "sent a stream event")
        if "error" in event and "choices" not in event:
            raise UpstreamStatusError(f"provider {self._provider!r} reported an error mid-stream: {_error_message(payload, self._api_key)}", code="upstream_stream_error")
        return event
