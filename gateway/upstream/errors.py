"""What can go wrong talking to an upstream, in the client's own terms.

    UpstreamClientError
     ├── ConnectFailed      no connection: refused, unreachable, DNS, TLS handshake or certificate
     ├── ConnectTimeout     no connection within the connect timeout
     ├── ReadTimeout        .stage: "first_byte" (no headers in time), "idle" (a stalled body) or "deadline"
     ├── ConnectionBroken   the upstream closed or reset the connection before its reply was complete
     └── InvalidResponse    not HTTP/1.x, a body over the size bound, an unknown content encoding

The provider adapter maps each to the most specific `gateway.errors` class; nothing above it sees these.
"""

from __future__ import annotations

from typing import Literal

TimeoutStage = Literal["first_byte", "idle", "deadline"]


class UpstreamClientError(Exception):
    pass


class ConnectFailed(UpstreamClientError):
    pass


class ConnectTimeout(UpstreamClientError):
    pass


class ReadTimeout(UpstreamClientError):
    def __init__(self, stage: TimeoutStage) -> None:
        super().__init__(f"no data before the {stage} timeout")
        self.stage: TimeoutStage = stage


class ConnectionBroken(UpstreamClientError):
    def __init__(self, message: str, *, before_reply: bool) -> None:
        super().__init__(message)
        self.before_reply = before_reply  # no status line had arrived yet


class InvalidResponse(UpstreamClientError):
    pass
