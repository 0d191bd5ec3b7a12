"""Reads and validates a proxied request body: parsed exactly once, with orjson, into the Exchange.

Input the gateway cannot parse is refused (400/413), never passed on: the provider must see exactly the
JSON the checks saw, so the gateway forwards the object it parsed, re-serialised, never the raw bytes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.exchange import Endpoint, Exchange
from gateway.ids import IdGenerator

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# The fields each endpoint cannot do without, and their JSON type, checked before anything else runs.
_REQUIRED: dict[Endpoint, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    Endpoint.CHAT: (("messages", list),),
    Endpoint.COMPLETIONS: (("prompt", (str, list)),),
    Endpoint.EMBEDDINGS: (("input", (str, list)),),
}


def request_id_of(request: web.Request, ids: IdGenerator) -> str:
    """The client's `x-request-id` when it is a sane token, else a fresh one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return ids.new()


async def read_body(request: web.Request, exchange: Exchange, max_bytes: int) -> None:
    """Sets `exchange.body`, `.model` and `.stream`, or raises `InvalidRequest`/`BodyTooLarge`."""
    # SDKs send exactly this; only other spellings (parameters, case) need the full header parse.
    if request.headers.get("Content-Type") != "application/json" and request.content_type != "application/json":
        raise InvalidRequest(f"Content-Type must be application/json (got {request.content_type!r}).", code="unsupported_content_type")
    length = request.content_length
    if length is not None and length > max_bytes:
        raise _too_large(max_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    body = parse_json_object(raw)
    _check_shape(exchange.endpoint, body)
    exchange.body = body
    exchange.body_bytes = len(raw)
    exchange.model = body["model"]
    exchange.stream = body.get("stream") is True and exchange.endpoint is not None and exchange.endpoint.streams


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The JSON object body of an admin or reviewer call; an empty body is an empty object."""
    raw = await request.read()
    return parse_json_object(raw) if raw else {}


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("The request body is not valid UTF-8.", code="invalid_utf8") from None
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def _check_shape(endpoint: Endpoint | None, body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model", code="missing_model")
    for name, kind in _REQUIRED.get(endpoint, ()) if endpoint else ():
        value = body.get(name)
        if value is None:
            raise InvalidRequest(f"'{name}' is required.", param=name, code="missing_field")
        if not isinstance(value, kind):
            raise InvalidRequest(f"'{name}' has the wrong type.", param=name, code="invalid_type")
    if endpoint is Endpoint.CHAT:
        messages = body["messages"]
        if not messages or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise InvalidRequest("'messages' must be a non-empty list of objects with a 'role'.", param="messages", code="invalid_type")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options", code="invalid_type")


def _too_large(max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"The request body exceeds the gateway's limit of {max_bytes} bytes.", code="body_too_large")
