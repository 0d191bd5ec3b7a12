"""A reply from an upstream: status and headers on arrival, then the body whole or chunk by chunk."""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING

from gateway.upstream.errors import InvalidResponse

if TYPE_CHECKING:
    from gateway.upstream.client import UpstreamClient
    from gateway.upstream.connection import UpstreamConnection

MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole reply read into memory (a large embeddings batch is a few MB)
_DECODED = (b"gzip", b"x-gzip", b"deflate")


class UpstreamResponse:
    """Holds its connection until `release()`, which returns it to the pool only if the reply was read to
    the end; anything else (an error, a cancelled read, an abandoned stream) closes it."""

    __slots__ = ("status", "_client", "_connection", "_idle_s", "_deadline", "_decoder", "_released")

    def __init__(self, client: UpstreamClient, connection: UpstreamConnection, idle_s: float, deadline: float) -> None:
        self.status = connection.status
        self._client = client
        self._connection = connection
        self._idle_s = idle_s
        self._deadline = deadline
        self._released = False
        encoding = connection.headers.get(b"content-encoding")
        self._decoder: zlib._Decompress | None = None
        if encoding is not None and encoding.lower() != b"identity":
            if encoding.strip().lower() not in _DECODED:
                raise InvalidResponse(f"a body in an unsupported content encoding {encoding.decode('latin-1')!r}")
            self._decoder = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected

    def header(self, name: bytes) -> str | None:
        """A response header by its lower-case name."""
        value = self._connection.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def read(self, max_bytes: int = MAX_BODY_BYTES) -> bytes:
        raw = await self._connection.read_all(self._idle_s, self._deadline, max_bytes)
        if self._decoder is None:
            return raw
        body = self._decode(raw, max_bytes)
        if len(body) > max_bytes:
            raise InvalidResponse(f"a reply body larger than {max_bytes} bytes once decompressed")
        return body

    async def read_chunk(self) -> bytes:
        """The bytes that arrived since the last call (waiting for some); b"" once the body is complete."""
        while True:
            raw = await self._connection.read_chunk(self._idle_s, self._deadline)
            if self._decoder is None or not raw:
                return raw
            chunk = self._decode(raw, MAX_BODY_BYTES)
            if chunk:  # a compressed read can decode to nothing yet
                return chunk

    @property
    def complete(self) -> bool:
        """The body has arrived to its end: after `release()` the connection carries the next request."""
        return self._connection.complete

    async def drain(self, within_s: float) -> None:
        """Read and drop what is left of the body, for at most `within_s` (raises `ReadTimeout` past it)."""
        deadline = min(self._deadline, asyncio.get_running_loop().time() + within_s)
        while await self._connection.read_chunk(within_s, deadline):
            pass

    def release(self) -> None:
        """Give the connection back (or close it, when the reply was not read to the end); idempotent."""
        if not self._released:
            self._released = True
            self._client.release(self._connection)

    def _decode(self, raw: bytes, max_bytes: int) -> bytes:
        assert self._decoder is not None
        try:
            decoded = self._decoder.decompress(raw, max_bytes + 1)
        except zlib.error as exc:
            raise InvalidResponse(f"a compressed body that does not decode ({exc})") from None
        if self._decoder.unconsumed_tail:
            raise InvalidResponse(f"a reply body larger than {max_bytes} bytes once decompressed")
        return decoded
