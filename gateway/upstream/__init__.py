"""The upstream HTTP/1.1 client: pooled keep-alive connections to model providers, on asyncio + httptools.

Why not aiohttp's `ClientSession` (which the gateway still uses for policy webhooks): profiling the proxy
hot path showed a third of the worker's event-loop time inside `ClientSession` for one POST (URL and
header objects, cookie jar, tracing hooks, auto headers, a response object with a stream reader). A
provider always posts JSON to the same few URLs with the same headers, so this client sends a request head
rendered once per provider with a single write, parses the reply with httptools (llhttp, the parser of
Node.js), and hands body bytes straight to the reader. It does exactly what the provider adapters need:

- `UpstreamClient` (client.py): the pool: keep-alive connections per origin, a limit across origins,
  connect timeouts, TLS with SNI and certificate checks, idle connections expired after `keepalive_s`.
- `UpstreamConnection` (connection.py): one connection's protocol; waits with the first-byte, idle and
  whole-call deadlines on one timer; pauses the socket when a reader falls behind (backpressure).
- `UpstreamResponse` (response.py): status, headers, the body whole or chunk by chunk, gzip/deflate.
- `Origin` and `RequestHead` (request.py): where a provider's base URL points, and its pre-rendered heads.
- errors.py: the few failures, which the provider maps to `gateway.errors` classes.
"""

from gateway.upstream.client import UpstreamClient
from gateway.upstream.errors import (
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    InvalidResponse,
    ReadTimeout,
    UpstreamClientError,
)
from gateway.upstream.request import Origin, RequestHead
from gateway.upstream.response import UpstreamResponse

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionBroken",
    "InvalidResponse",
    "Origin",
    "ReadTimeout",
    "RequestHead",
    "UpstreamClient",
    "UpstreamClientError",
    "UpstreamResponse",
]
