"""Where a provider's base URL points, and the request heads rendered once per provider and endpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF or other control characters


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port: what a pooled connection is keyed by."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @classmethod
    def of(cls, url: str) -> tuple[Origin, str]:
        """The origin of an http(s) URL and its path without the trailing slash ("" for none)."""
        parts = urlsplit(url)
        if parts.username or parts.password:  # not echoed: the URL holds a secret
            raise ValueError("a base URL takes no credentials: set the provider key with api_key")
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise ValueError(f"a base URL takes no query, fragment or credentials: {url!r}")
        port = parts.port  # raises ValueError for a port out of range
        if port == 0:
            raise ValueError(f"port 0 in a base URL: {url!r}")
        return cls(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]), parts.path.rstrip("/")


def check_header(name: str, value: str) -> None:
    """Raises ValueError unless `name: value` is a valid HTTP/1.1 header line (no CR/LF smuggling)."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")
    if not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"the value of header {name!r} has a line break or another control character")


class RequestHead:
    """Everything of an HTTP/1.1 request before its length, rendered once: each request then costs one
    bytes formatting (length, request id, body) and one write."""

    __slots__ = ("_prefix",)

    def __init__(self, origin: Origin, method: str, path: str, headers: Mapping[str, str]) -> None:
        lines = [f"{method} {path or '/'} HTTP/1.1", f"host: {origin.host_header}"]
        for name, value in headers.items():
            check_header(name, value)
            lines.append(f"{name}: {value}")
        lines.append("content-length: ")
        self._prefix = "\r\n".join(lines).encode("latin-1")

    def render(self, body: bytes, request_id: str = "") -> bytes:
        """The whole request; `request_id` (a checked token, see `request_id_of`) goes in `x-request-id`."""
        if request_id:
            return b"%s%d\r\nx-request-id: %s\r\n\r\n%s" % (self._prefix, len(body), request_id.encode(), body)
        return b"%s%d\r\n\r\n%s" % (self._prefix, len(body), body)
