"""The `openai` provider: any OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio, another gateway).

Failures are mapped here, once, to the most specific `gateway.errors` class; nothing above this module
sees an aiohttp exception. The provider key is revealed only into the outgoing Authorization header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.config.model import ProviderConfig
from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.providers.base import StreamEvent, UpstreamCall
from gateway.providers.sse import DONE, SSEDecoder
from gateway.secret import Secret

MAX_ERROR_BODY_BYTES = 64 * 1024
DRAIN_AFTER_DONE_S = 1.0  # how long to wait for the end of a stream's body after its [DONE]


class OpenAIProvider:
    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._session = session
        self._base_url = config.base_url
        self._timeouts = config.timeouts
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}  # one per distinct call deadline
        self._api_key = config.api_key  # a Secret: only to mask it in what the provider says back
        headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key.reveal()}"
        self._headers = headers

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self.name!r}, base_url={self._base_url!r})"

    async def send(self, call: UpstreamCall) -> dict[str, Any]:
        response = await self._post(call)
        try:
            try:
                raw = await response.read()
            except TimeoutError as exc:
                raise _read_timeout(self.name, exc, "while sending its reply") from None
            except aiohttp.ClientError as exc:
                raise UpstreamConnectError(f"provider {self.name!r} broke off its reply: {type(exc).__name__}") from None
        finally:
            response.release()
        return _json_object(raw, f"provider {self.name!r} answered with a body")

    async def open_stream(self, call: UpstreamCall) -> OpenAIStream:
        response = await self._post(call)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            response.release()
            raise UpstreamBadResponse(f"provider {self.name!r} answered a stream request with {content_type or 'no content type'!r}")
        return OpenAIStream(self.name, response, self._timeouts.idle_s, self._api_key)

    async def close(self) -> None:
        return None  # the session belongs to the app, which closes it

    async def _post(self, call: UpstreamCall) -> aiohttp.ClientResponse:
        """Send the request and wait for the status line and headers; non-2xx become errors here.

        One timer serves both read deadlines: aiohttp's socket-read timeout is `first_byte_s` until the
        headers arrive (nothing is read before them), then becomes `idle_s` for the body. A separate
        `asyncio.timeout` around the call would arm a second timer on every request.
        """
        timeouts = self._timeouts
        timeout = self._client_timeouts.get(call.timeout_s)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=call.timeout_s, sock_connect=timeouts.connect_s, sock_read=timeouts.first_byte_s)
            self._client_timeouts[call.timeout_s] = timeout
        headers = self._headers if not call.request_id else {**self._headers, "x-request-id": call.request_id}
        url = f"{self._base_url}/{call.endpoint.value}"
        try:
            # No redirects: base_url is the trust boundary, and the provider's headers must not follow a
            # redirect to another host (aiohttp drops Authorization there, but not `headers:` like api-key).
            response = await self._session.post(
                url, data=orjson.dumps(call.body), headers=headers, timeout=timeout, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError: aiohttp's timeouts subclass it
            raise UpstreamTimeout(f"provider {self.name!r} did not accept a connection within {timeouts.connect_s:g}s", code="upstream_connect_timeout") from None
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout(f"provider {self.name!r} did not answer within {timeouts.first_byte_s:g}s", code="upstream_first_byte_timeout") from None
        except TimeoutError:
            raise UpstreamTimeout(f"provider {self.name!r} did not answer within the call's deadline ({call.timeout_s:g}s)", code="upstream_deadline_exceeded") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect to provider {self.name!r}: {exc.os_error.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(f"provider {self.name!r} closed the connection: {type(exc).__name__}") from None
        connection = response.connection
        if connection is not None and connection.protocol is not None:
            connection.protocol.read_timeout = timeouts.idle_s
            connection.protocol.start_timeout()  # re-arm now with the idle deadline
        if response.status < 300:
            return response
        raise await self._status_error(response)

    async def _status_error(self, response: aiohttp.ClientResponse) -> GatewayError:
        status = response.status
        try:
            raw = await response.content.read(MAX_ERROR_BODY_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw = b""
        finally:
            response.release()
        message = _error_message(raw, self._api_key) or f"HTTP {status}"
        if status in (401, 403):
            # The provider refused *our* key: a gateway misconfiguration, never the client's fault.
            return UpstreamStatusError(f"provider {self.name!r} rejected the gateway's credentials (HTTP {status})", code="upstream_auth_failed")
        if status >= 500 or status < 400:
            return UpstreamStatusError(f"provider {self.name!r} failed with HTTP {status}: {message}", code=f"upstream_status_{status}")
        headers = {"retry-after": response.headers["retry-after"]} if "retry-after" in response.headers else {}
        return UpstreamRejected(status, f"provider {self.name!r}: {message}", headers=headers)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Upstream JSON that must be an object; anything else is the provider breaking the protocol."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"{what} that is not JSON") from None
    if not isinstance(value, dict):
        raise UpstreamBadResponse(f"{what} that is JSON but not an object")
    return value


def _read_timeout(provider: str, exc: TimeoutError, where: str) -> UpstreamTimeout:
    """aiohttp raises its own subclass when a read waits past `idle_s`; a plain TimeoutError is the
    whole call's deadline (the route's `timeout_s`, else `limits.request_timeout_s`) running out."""
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"provider {provider!r} stalled {where} longer than its idle timeout", code="upstream_idle_timeout")
    return UpstreamTimeout(f"provider {provider!r} passed the call's deadline {where}", code="upstream_deadline_exceeded")


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

    def __init__(self, provider: str, response: aiohttp.ClientResponse, idle_s: float, api_key: Secret | None = None) -> None:
        self._provider = provider
        self._response = response
        self._idle_s = idle_s
        self._api_key = api_key
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[StreamEvent]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[StreamEvent]]:
        decoder = SSEDecoder()
        content = self._response.content
        while True:
            batch, done, error = self._decode(decoder, await self._read(content))
            self.complete = done
            if batch:
                yield batch
            if error is not None:
                raise error
            if done:
                return

    async def aclose(self) -> None:
        """Return the connection to the pool after a complete stream, else drop it.

        `[DONE]` can arrive a read before the end of the HTTP body; releasing right away would make aiohttp
        close a healthy keep-alive connection (a new TCP and TLS handshake for the next call). So the rest
        of the body is read first, briefly: the client already has its `[DONE]` by now.
        """
        response = self._response
        if self.complete and not response.content.at_eof():
            try:
                async with asyncio.timeout(min(self._idle_s, DRAIN_AFTER_DONE_S)):
                    while await response.content.readany():
                        pass
            except (TimeoutError, aiohttp.ClientError):
                pass
        if self.complete and response.content.at_eof():
            response.release()
        else:
            response.close()  # an unfinished body must not go back to the pool

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

    async def _read(self, content: aiohttp.StreamReader) -> bytes:
        try:
            return await content.readany()
        except TimeoutError as exc:
            raise _read_timeout(self._provider, exc, "mid-stream") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(f"provider {self._provider!r} broke the stream: {type(exc).__name__}", code="upstream_stream_broken") from None
        except ValueError as exc:
            raise UpstreamBadResponse(f"provider {self._provider!r} sent an invalid stream: {exc}") from None

    def _parse(self, payload: bytes) -> StreamEvent:
        event = _json_object(payload, f"provider {self._provider!r} sent a stream event")
        if "error" in event and "choices" not in event:
            raise UpstreamStatusError(f"provider {self._provider!r} reported an error mid-stream: {_error_message(payload, self._api_key)}", code="upstream_stream_error")
        return event

