"""The client side of subcommands that act on a running gateway (`gateway incident ...`, `gateway review ...`).

They call its admin API rather than touching the store themselves, so every change is validated, applied,
spread to the other instances and audited by the server, with the caller's identity.

Where: `--url`, else `$GATEWAY_URL`, else `http://listen.host:listen.port` of the config (`--config`,
`$GATEWAY_CONFIG`, `./gateway.yaml`, else the embedded default 127.0.0.1:8080), a wildcard listen address
(0.0.0.0, ::) read as the loopback. Who: `--token`, else `$GATEWAY_TOKEN`, sent as `Authorization: Bearer`
(with `auth.mode: none` no token is needed, and the admin API answers only the gateway's own host).
Standard library only (urllib): a short-lived synchronous command needs no event loop.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from gateway.config import ConfigError, load_config

URL_ENV = "GATEWAY_URL"
TOKEN_ENV = "GATEWAY_TOKEN"
TIMEOUT_S = 30.0
WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # listening everywhere: call the loopback


class RemoteFailed(Exception):
    """A call to the gateway failed; the message is one line saying why (exit 1)."""


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --url and --token, and --config (whose listen address is the default URL) unless already there."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", help="config file whose listen address to call (default: $GATEWAY_CONFIG or ./gateway.yaml)")
    parser.add_argument("--url", help=f"the gateway, e.g. http://gateway:8080 (default: ${URL_ENV}, else listen.host:port of the config)")
    parser.add_argument("--token", help=f"a credential with the role the call needs, sent as a bearer token (default: ${TOKEN_ENV})")


def base_url(args: argparse.Namespace) -> str:
    """The gateway's base URL for these arguments (see the module docstring)."""
    explicit = getattr(args, "url", None) or os.environ.get(URL_ENV)
    if explicit:
        if not explicit.startswith(("http://", "https://")):
            raise RemoteFailed(f"{explicit!r} is not an http:// or https:// URL")
        return str(explicit).rstrip("/")
    try:
        listen = load_config(getattr(args, "config", None)).listen
    except ConfigError as exc:
        raise RemoteFailed(f"{exc} (or give the gateway's address with --url or ${URL_ENV})") from None
    host = WILDCARDS.get(listen.host, listen.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{listen.port}"


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
    """One admin API call; returns the parsed JSON answer, or raises `RemoteFailed` with one line."""
    base = base_url(args)
    url = base + path + (f"?{urlencode(query)}" if query else "")
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - an http(s) URL, checked above
            raw = response.read()
    except urllib.error.HTTPError as error:
        with error:
            raise RemoteFailed(f"{method} {path}: {_refusal(error.code, error.read())}") from None
    except urllib.error.URLError as error:
        raise RemoteFailed(f"cannot reach the gateway at {base}: {_unreachable(error.reason)}") from None
    except (OSError, http.client.HTTPException) as error:  # timeouts, resets, a server that is not HTTP
        raise RemoteFailed(f"no answer from the gateway at {base}: {_one_line(str(error) or type(error).__name__)}") from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise RemoteFailed(f"{method} {path}: the gateway at {base} answered something that is not JSON") from None


def _refusal(status: int, raw: bytes) -> str:
    """The status and the gateway's OpenAI-shaped error (code and message), or the start of whatever came."""
    try:
        error = json.loads(raw)["error"]
        code, message = error.get("code") or error.get("type"), error["message"]
    except (ValueError, KeyError, TypeError, AttributeError):
        text = raw.decode("utf-8", "replace").strip()[:200]
        return _one_line(f"{status} {text}" if text else f"HTTP {status}")
    return _one_line(f"{status} {code}: {message}")


def _unreachable(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused (is it running? set --url or ${URL_ENV})"
    if isinstance(reason, OSError) and reason.strerror:
        return _one_line(reason.strerror)
    return _one_line(str(reason))


def _one_line(text: str) -> str:
    return " ".join(text.split())
