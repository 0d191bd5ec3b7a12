"""The app factory: builds every component once per worker and wires them into an aiohttp application.

Components are passed explicitly (no module globals); long-lived resources (the upstream connection pool,
the audit writer) live in `cleanup_ctx` and are torn down in reverse order after requests have drained.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.audit.keys import load_or_create_hmac_key
from gateway.audit.record import RecordBuilder, instance_id
from gateway.audit.backends import LocalFileBackend
from gateway.audit.reader import reader_for
from gateway.audit.writer import AuditWriter, open_spool
from gateway.auth import build_authenticator
from gateway.config.model import GatewayConfig
from gateway.http.admin import AdminHandlers
from gateway.http.console import ConsoleHandlers
from gateway.http.ops import OpsHandlers
from gateway.ids import IdGenerator
from gateway.http.proxy import ProxyHandlers
from gateway.http.reviews import ReviewHandlers
from gateway.limits.counters import CounterStore, LocalCounters, RedisCounters
from gateway.limits.limiter import Limiter
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.review.service import ReviewService
from gateway.review.local_store import LocalReviewStore
from gateway.review.store import ReviewStore
from gateway.policy.engine import NoPolicies
from gateway.policy.reloader import PolicyReloader
from gateway.providers import build_provider
from gateway.routing.incidents import IncidentGate, following, incident_store
from gateway.routing.router import Router
from gateway.routing.switches import LocalSwitchStore, RedisSwitchStore, SwitchStore
from gateway.upstream import UpstreamClient

log = logging.getLogger(__name__)

RELOADER = web.AppKey("reloader", PolicyReloader)


def counter_store(config: GatewayConfig) -> CounterStore:
    """Rate-limit and budget counters: shared in Redis, or per process on the local store."""
    if config.store.backend == "redis" and (config.rate_limits or config.budgets):
        return RedisCounters(config.store.redis_url, config.store.key_prefix)
    return LocalCounters()


def switch_store(config: GatewayConfig) -> SwitchStore:
    """Kill switches live in the same store as the audit trail, so they reach the same instances."""
    if config.store.backend == "redis":
        return RedisSwitchStore(config.store.redis_url, config.store.key_prefix)
    return LocalSwitchStore(config.store.local_dir)


def build_audit_writer(config: GatewayConfig, metrics: Metrics) -> AuditWriter:
    """The local file (embedded default), or the Redis stream with the durable spool behind it."""
    store, audit = config.store, config.audit
    if store.backend == "redis":
        from gateway.audit.redis_stream import RedisStreamBackend  # noqa: PLC0415 - redis loads only when used

        backend = RedisStreamBackend(store.redis_url, store.key_prefix + audit.stream, audit.maxlen)
        spool_dir, spool_bytes = audit.spool_dir, audit.spool_max_bytes
        return AuditWriter(backend, queue_size=audit.queue_size, metrics=metrics, spool=lambda: open_spool(spool_dir, spool_bytes))
    return AuditWriter(LocalFileBackend(store.local_dir), queue_size=audit.queue_size, metrics=metrics)


def review_store(config: GatewayConfig) -> ReviewStore:
    """The review queue: shared in Redis, or by this instance's workers in a file of the local store."""
    review = config.review
    if config.store.backend == "redis":
        from gateway.review.redis_store import RedisReviewStore  # noqa: PLC0415 - redis loads only when used

        return RedisReviewStore(config.store.redis_url, config.store.key_prefix, review.max_deliveries, retention_s=review.retention_s)
    return LocalReviewStore(config.store.local_dir, review.max_deliveries, retention_s=review.retention_s)


async def build_app(config: GatewayConfig) -> web.Application:
    """Must run inside the worker's event loop (the client sessions bind to it)."""
    metrics = Metrics()
    limits = config.limits
    upstream = UpstreamClient(limits.upstream_connections)  # the providers' pool; each prepares its origin
    providers = {name: build_provider(provider, upstream) for name, provider in config.providers.items()}
    # Policy webhooks (remote checks) go through aiohttp: any URL, off the provider hot path.
    connector = aiohttp.TCPConnector(limit=limits.upstream_connections, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300)
    session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
    router = Router(config.models, providers, metrics, default_timeout_s=limits.request_timeout_s, breaker=config.routing.breaker)

    instance = instance_id()
    hmac_key = load_or_create_hmac_key(config.audit.hmac_key, config.store.local_dir)
    audit = build_audit_writer(config, metrics)
    ids = IdGenerator()
    records = RecordBuilder(instance, config.audit.content, hmac_key, ids)
    limiter = Limiter(config.rate_limits, config.budgets, counter_store(config))
    pipeline = Pipeline(
        build_authenticator(config.auth), NoPolicies(), router, audit, records, metrics, ids,
        audit_fail_open=config.audit.on_unavailable == "open", limiter=limiter, incidents=IncidentGate(router, metrics),
    )
    reviews = ReviewService(
        review_store(config), audit, records, metrics, config.review,
        policy_version=lambda: pipeline.policy.version, resume_lease_s=limits.request_timeout_s + 30,
    )
    pipeline.reviews = reviews
    reloader = PolicyReloader(config.policies, pipeline, metrics, audit, records, known_models=config.models, http=session)
    await reloader.load_initial()  # a bad bundle fails the start (BundleRejected), before any port opens

    app = web.Application(client_max_size=limits.max_body_bytes, handler_args={"max_field_size": 16 * 1024})

    async def upstream_session(_: web.Application) -> AsyncIterator[None]:
        yield
        for provider in providers.values():
            await provider.close()
        await upstream.close()
        await session.close()

    async def metrics_flush(_: web.Application) -> AsyncIterator[None]:
        async with metrics.flushing():
            yield

    async def audit_writer(_: web.Application) -> AsyncIterator[None]:
        await audit.start()
        yield
        await audit.close()  # torn down first (reverse order): the last records flush before anything closes

    audit_reader = reader_for(config)
    switches = switch_store(config)
    try:
        router.apply_switches(await switches.load())
    except Exception as exc:  # noqa: BLE001 - Redis may be down at start: the watcher applies them once it is back
        log.warning("route kill switches not loaded yet (%s: %s); retrying in the background", type(exc).__name__, exc)

    async def switch_watch(_: web.Application) -> AsyncIterator[None]:
        async with switches.watching(router.apply_switches):
            yield

    incidents = incident_store(config)

    async def incident_watch(_: web.Application) -> AsyncIterator[None]:
        async with following(incidents, pipeline.incidents):  # loaded before the port opens, then followed
            yield

    async def review_sweeper(_: web.Application) -> AsyncIterator[None]:
        async with reviews.running():
            yield

    async def release_waiting_reviews(_: web.Application) -> None:
        reviews.drain()  # on_shutdown runs before the drain waits for in-flight requests

    async def audit_reading(_: web.Application) -> AsyncIterator[None]:
        yield
        await audit_reader.close()

    async def policy_watch(_: web.Application) -> AsyncIterator[None]:
        async with reloader.watching():
            yield

    async def limit_charges(_: web.Application) -> AsyncIterator[None]:
        async with limiter.charging():
            yield

    app.cleanup_ctx.extend((
        upstream_session, metrics_flush, audit_writer, audit_reading, review_sweeper, policy_watch, switch_watch, incident_watch, limit_charges,
    ))
    app[RELOADER] = reloader
    app.on_shutdown.append(release_waiting_reviews)

    proxy = ProxyHandlers(pipeline, config)
    ops = OpsHandlers(pipeline, instance)
    app.add_routes(proxy.routes())
    app.add_routes(ops.routes())
    app.add_routes(AdminHandlers(pipeline, reloader, audit_reader, switches, incidents).routes())
    app.add_routes(ReviewHandlers(pipeline, reviews).routes())
    app.add_routes(ConsoleHandlers(pipeline, reviews).routes())
    app.router.add_route("*", "/{tail:.*}", ops.not_found)
    return app
