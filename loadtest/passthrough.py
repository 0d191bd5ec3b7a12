"""The reference proxy of the benchmark: a bare aiohttp server + aiohttp client passthrough, on uvloop.

No framework logic at all: every POST body is forwarded as-is to the same path on the upstream through one
pooled `aiohttp.ClientSession` (keep-alive), and the reply comes back with its status and content type;
SSE replies are relayed chunk by chunk as they arrive (`iter_any`, one `write` per received chunk). This
is the baseline that the gateway's performance targets (issue 2, "Performance") are measured against:
whatever the gateway costs beyond this is the gateway's own work.

Server and client settings mirror the gateway's where they affect cost (no access log, connector limit
1024, no per-host limit, `User-Agent` not added), so the difference measured is the gateway's logic.

    python loadtest/passthrough.py --port 9200 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.rel_url.raw_path_qs
    headers = {"content-type": request.headers.get("content-type", "application/json")}
    async with session.post(url, data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("content-type", "application/json")
        if not content_type.startswith("text/event-stream"):
            data = await upstream.read()
            return web.Response(status=upstream.status, body=data, headers={"content-type": content_type})
        response = web.StreamResponse(status=upstream.status, headers={"content-type": content_type, "cache-control": "no-cache"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def build_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")

    async def client_session(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=30)
        app[SESSION] = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(client_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{tail:.*}", forward)
    return app


async def serve(host: str, port: int, upstream: str) -> None:
    runner = web.AppRunner(await build_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print(f"passthrough listening on http://{host}:{port} -> {upstream}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100", help="upstream base (scheme://host:port)")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the benchmark passthrough binds loopback addresses only")
    uvloop.run(serve(args.host, args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
