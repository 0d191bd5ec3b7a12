"""Builds a `GatewayConfig` from `gateway.yaml` (or the embedded default) and validates it whole."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from gateway.config.model import (
    AUDIT_CONTENT,
    AUTH_MODES,
    PROVIDER_KINDS,
    STORE_BACKENDS,
    AuditConfig,
    AuthConfig,
    GatewayConfig,
    Limits,
    Listen,
    BALANCE,
    BUDGET_PERIODS,
    JWT_ALGORITHMS,
    LIMIT_DIMENSIONS,
    Budget,
    RateLimit,
    RETRY_ON,
    ApiKey,
    ClaimsMap,
    JwtConfig,
    BreakerSettings,
    ModelRoute,
    PoliciesConfig,
    RetryConfig,
    ReviewConfig,
    RoutingConfig,
    ProviderConfig,
    StoreConfig,
    StreamHold,
    Target,
    UpstreamTimeouts,
    embedded_default,
)
from gateway.config.reader import ConfigError, Section
from gateway.config.yaml_source import YamlError, load_yaml_file
from gateway.secret import Secret
from gateway.upstream.request import Origin, check_header

DEFAULT_CONFIG_PATH = Path("gateway.yaml")
CONFIG_ENV = "GATEWAY_CONFIG"

# Instances holding the defaults (slotted dataclasses keep no class-level default values).
_LISTEN, _LIMITS, _POLICIES, _STORE = Listen(), Limits(), PoliciesConfig(), StoreConfig()


def resolve_config_path(explicit: str | None) -> Path | None:
    """`--config`, else `$GATEWAY_CONFIG`, else `./gateway.yaml` if present; None means embedded default."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_config(explicit: str | None = None) -> GatewayConfig:
    path = resolve_config_path(explicit)
    if path is None:
        return embedded_default()
    try:
        data = load_yaml_file(path)
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, str(path), base_dir=path.parent)


def parse_config(data: object, source: str, base_dir: Path = Path(".")) -> GatewayConfig:
    root = Section(data, "", source)
    listen = _listen(root.section("listen"))
    workers = root.integer("workers", 1, minimum=1)
    limits = _limits(root.section("limits"))
    providers = {name: _provider(name, section) for name, section in root.sections("providers")}
    models = {name: _route(name, section, providers) for name, section in root.sections("models")}
    auth = _auth(root.section("auth"), base_dir)
    routing = _routing(root.section("routing"))
    policies = _policies(root.section("policies"), base_dir)
    store = _store(root.section("store"), base_dir)
    audit = _audit(root.section("audit"), base_dir)
    review = _review(root.section("review"))
    rate_limits = tuple(root.items("rate_limits", _rate_limit))
    budgets = tuple(root.items("budgets", _budget))
    root.finish()
    if not models:
        root.fail("models", "at least one model route is required")
    return GatewayConfig(
        source, listen, workers, limits, providers, models, auth, routing, policies, rate_limits, budgets, store, audit, review,
    )


def _listen(section: Section) -> Listen:
    listen = Listen(host=section.string("host", _LISTEN.host), port=section.integer("port", _LISTEN.port))
    if listen.port > 65535:
        section.fail("port", f"must be at most 65535 (got {listen.port})")
    section.finish()
    return listen


def _limits(section: Section) -> Limits:
    limits = Limits(
        max_body_bytes=section.integer("max_body_bytes", _LIMITS.max_body_bytes, minimum=1),
        request_timeout_s=section.number("request_timeout_s", _LIMITS.request_timeout_s, minimum=0.001),
        drain_timeout_s=section.number("drain_timeout_s", _LIMITS.drain_timeout_s),
        upstream_connections=section.integer("upstream_connections", _LIMITS.upstream_connections, minimum=1),
    )
    section.finish()
    return limits


def _timeouts(section: Section) -> UpstreamTimeouts:
    defaults = UpstreamTimeouts()
    timeouts = UpstreamTimeouts(
        connect_s=section.number("connect_s", defaults.connect_s, minimum=0.001),
        first_byte_s=section.number("first_byte_s", defaults.first_byte_s, minimum=0.001),
        idle_s=section.number("idle_s", defaults.idle_s, minimum=0.001),
    )
    section.finish()
    return timeouts


def _provider(name: str, section: Section) -> ProviderConfig:
    kind = section.choice("kind", PROVIDER_KINDS)
    if kind == "openai":
        base_url = section.string("base_url").rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            section.fail("base_url", f"must be an http:// or https:// URL (got {base_url!r})")
        api_key = section.string("api_key", None)
        provider = ProviderConfig(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=Secret(api_key) if api_key else None,
            headers=section.string_map("headers"),
            timeouts=_timeouts(section.section("timeouts")),
        )
        if any(header.lower() == "authorization" for header in provider.headers):
            section.fail("headers", "set the provider key with api_key, not an Authorization header")
        _check_http(section, provider)
    else:
        provider = ProviderConfig(
            name=name,
            kind=kind,
            latency_ms=section.number("latency_ms", 0.0),
            chunk_delay_ms=section.number("chunk_delay_ms", 0.0),
        )
    section.finish()
    return provider


def _check_http(section: Section, provider: ProviderConfig) -> None:
    """What the upstream client will send must be valid HTTP: caught here, with the key's name."""
    try:
        Origin.of(provider.base_url)
    except ValueError as exc:
        section.fail("base_url", str(exc))
    for name, value in provider.headers.items():
        try:
            check_header(name, value)
        except ValueError as exc:
            section.fail("headers", str(exc))
    if provider.api_key is not None:
        try:
            check_header("authorization", provider.api_key.reveal())
        except ValueError:
            section.fail("api_key", "has a line break or another control character")


def _route(name: str, section: Section, providers: dict[str, ProviderConfig]) -> ModelRoute:
    def target(entry: Section) -> Target:
        provider = entry.string("provider")
        if provider not in providers:
            known = ", ".join(sorted(providers)) or "none configured"
            entry.fail("provider", f"unknown provider {provider!r} (known: {known})")
        found = Target(provider=provider, model=entry.string("model", name), weight=entry.number("weight", 1.0, minimum=0))
        entry.finish()
        return found

    targets: tuple[Target, ...] = tuple(section.items("targets", target))
    if not targets:
        section.fail("targets", "at least one target is required")
    if len(set(targets)) != len(targets):
        section.fail("targets", "the same provider and model are listed twice")
    timeout_s = section.number("timeout_s", None, minimum=0.001)
    attempt_timeout_s = section.number("attempt_timeout_s", None, minimum=0.001)
    if timeout_s is not None and attempt_timeout_s is not None and attempt_timeout_s > timeout_s:
        section.fail("attempt_timeout_s", f"must not exceed timeout_s ({timeout_s:g})")
    balance = section.choice("balance", BALANCE, "ordered")
    if balance == "weighted" and not any(target.weight > 0 for target in targets):
        section.fail("balance", "weighted balancing needs at least one target with a weight above 0")
    route = ModelRoute(name, targets, timeout_s, attempt_timeout_s, _retry(section.section("retry")), balance)
    section.finish()
    return route


def _retry(section: Section) -> RetryConfig:
    defaults = RetryConfig()
    retry_on = section.sequence("retry_on", list(defaults.retry_on))
    unknown = [item for item in retry_on if str(item) not in RETRY_ON]
    if unknown:
        section.fail("retry_on", f"unknown {unknown[0]!r}; known: {', '.join(RETRY_ON)}")
    retry = RetryConfig(
        attempts=section.integer("attempts", defaults.attempts, minimum=1),
        backoff_ms=section.number("backoff_ms", defaults.backoff_ms),
        max_backoff_ms=section.number("max_backoff_ms", defaults.max_backoff_ms),
        retry_on=tuple(str(item) for item in retry_on),
    )
    section.finish()
    return retry


def _dimensions(section: Section) -> tuple[str, ...]:
    per = section.value("per", None)
    per = [per] if isinstance(per, str) else per
    if not per or not isinstance(per, list) or not all(item in LIMIT_DIMENSIONS for item in per):
        section.fail("per", f"must be one or more of {', '.join(LIMIT_DIMENSIONS)} (got {per!r})")
    return tuple(dict.fromkeys(per))


def _globs(section: Section) -> tuple[str, ...]:
    models = section.sequence("models", [])
    if not all(isinstance(model, str) and model for model in models):
        section.fail("models", "must be a list of model names or globs")
    return tuple(models)


def _rate_limit(section: Section) -> RateLimit:
    limit = RateLimit(
        per=_dimensions(section),
        requests_per_minute=section.integer("requests_per_minute", None, minimum=1),
        tokens_per_minute=section.integer("tokens_per_minute", None, minimum=1),
        models=_globs(section),
    )
    section.finish()
    if limit.requests_per_minute is None and limit.tokens_per_minute is None:
        section.fail(None, "sets no limit: requests_per_minute, tokens_per_minute or both")
    return limit


def _budget(section: Section) -> Budget:
    budget = Budget(
        per=_dimensions(section),
        tokens=section.integer("tokens", minimum=1),
        period=section.choice("period", tuple(BUDGET_PERIODS), "day"),
        models=_globs(section),
    )
    section.finish()
    return budget


def _review(section: Section) -> ReviewConfig:
    defaults = ReviewConfig()
    review = ReviewConfig(
        claim_lease_s=section.number("claim_lease_s", defaults.claim_lease_s, minimum=1),
        max_deliveries=section.integer("max_deliveries", defaults.max_deliveries, minimum=1),
        retention_s=section.number("retention_s", defaults.retention_s, minimum=60),
        sweep_s=section.number("sweep_s", defaults.sweep_s, minimum=0.05),
    )
    section.finish()
    return review


def _routing(section: Section) -> RoutingConfig:
    breaker = section.section("breaker")
    defaults = BreakerSettings()
    error_rate = breaker.number("error_rate", defaults.error_rate)
    if not 0 < error_rate <= 1:
        breaker.fail("error_rate", f"must be above 0 and at most 1 (got {error_rate:g})")
    open_s = breaker.number("open_s", defaults.open_s, minimum=0.001)
    try:
        settings = BreakerSettings(
            failures=breaker.integer("failures", defaults.failures, minimum=1),
            error_rate=error_rate,
            window_s=breaker.number("window_s", defaults.window_s, minimum=1),
            min_requests=breaker.integer("min_requests", defaults.min_requests, minimum=1),
            open_s=open_s,
            # a ceiling below the first open time means "never back off further": the open time itself
            max_open_s=max(breaker.number("max_open_s", defaults.max_open_s, minimum=0.001), open_s),
        )
    except ValueError as exc:  # what the value checks above cannot see (an infinite window, say)
        breaker.fail(None, str(exc))
    breaker.finish()
    section.finish()
    return RoutingConfig(breaker=settings)


def _auth(section: Section, base_dir: Path) -> AuthConfig:
    mode = section.choice("mode", AUTH_MODES, "none")
    claims_section = section.section("claims")
    claims = ClaimsMap(
        app=claims_section.string("app", "sub"), tenant=claims_section.string("tenant", "tenant"), roles=claims_section.string("roles", "roles")
    )
    claims_section.finish()
    jwt = _jwt(section.section("jwt"), base_dir) if section.has("jwt") else None
    api_keys = tuple(section.items("api_keys", _api_key))
    section.finish()
    if mode == "jwt" and jwt is None:
        section.fail("mode", "jwt needs auth.jwt: {algorithms, issuer, audience, jwks_file | public_key_file | secret}")
    if mode == "api_key" and not api_keys:
        section.fail("mode", "api_key needs auth.api_keys: [{sha256, app, tenant, roles}]")
    return AuthConfig(mode=mode, jwt=jwt, claims=claims, api_keys=api_keys)


def _jwt(section: Section, base_dir: Path) -> JwtConfig:
    algorithms = section.sequence("algorithms")
    if not algorithms or not all(isinstance(name, str) for name in algorithms):
        section.fail("algorithms", "must be a non-empty list, e.g. [RS256]")
    unknown = [name for name in algorithms if name not in JWT_ALGORITHMS]
    if unknown:
        section.fail("algorithms", f"{unknown[0]!r} is not allowed; choose from {', '.join(JWT_ALGORITHMS)} ('none' never)")
    symmetric = {name.startswith("HS") for name in algorithms}
    if len(symmetric) > 1:
        section.fail("algorithms", "do not mix HS* with public-key algorithms: that is how key-confusion attacks work")
    secret = section.string("secret", None)
    jwks_file = section.string("jwks_file", None)
    public_key_file = section.string("public_key_file", None)
    sources = [name for name, value in (("secret", secret), ("jwks_file", jwks_file), ("public_key_file", public_key_file)) if value]
    if len(sources) != 1:
        section.fail(None, "needs exactly one key source: jwks_file, public_key_file or secret")
    if secret and True not in symmetric:
        section.fail("secret", "a shared secret goes with HS256/384/512 only")
    if (jwks_file or public_key_file) and True in symmetric and public_key_file:
        section.fail("public_key_file", "a public key goes with RS*, PS*, ES* or EdDSA, not HS*")
    config = JwtConfig(
        algorithms=tuple(algorithms),
        issuer=section.string("issuer", None),
        audience=section.string("audience", None),
        jwks_file=base_dir / jwks_file if jwks_file else None,
        public_key_file=base_dir / public_key_file if public_key_file else None,
        secret=Secret(secret) if secret else None,
        leeway_s=section.number("leeway_s", 30.0),
    )
    section.finish()
    return config


def _api_key(section: Section) -> ApiKey:
    digest = section.string("sha256").lower()
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        section.fail("sha256", "must be the 64-hex-digit sha256 of the key (gateway auth hash-key prints it)")
    roles = section.sequence("roles", [])
    if not all(isinstance(role, str) for role in roles):
        section.fail("roles", "must be a list of role names")
    key = ApiKey(sha256=digest, app=section.string("app"), tenant=section.string("tenant", None), roles=tuple(roles))
    section.finish()
    return key


def _policies(section: Section, base_dir: Path) -> PoliciesConfig:
    keys: tuple[Path, ...] = ()
    if section.has("require_signature"):
        signature = section.section("require_signature")
        listed = signature.sequence("keys")
        if not listed or not all(isinstance(key, str) and key for key in listed):
            signature.fail("keys", "must be a non-empty list of public key files (PEM, Ed25519)")
        keys = tuple(base_dir / key for key in listed)
        signature.finish()
    stream_section = section.section("stream")
    stream = StreamHold(
        window_chars=stream_section.integer("window_chars", _POLICIES.stream.window_chars, minimum=1),
        max_hold_ms=stream_section.number("max_hold_ms", _POLICIES.stream.max_hold_ms, minimum=1),
    )
    stream_section.finish()
    policies = PoliciesConfig(
        dir=base_dir / section.string("dir", str(_POLICIES.dir)),
        reload=section.choice("reload", ("watch", "off"), _POLICIES.reload),
        signature_keys=keys,
        stream=stream,
    )
    section.finish()
    return policies


def _store(section: Section, base_dir: Path) -> StoreConfig:
    backend = section.choice("backend", STORE_BACKENDS, _STORE.backend)
    store = StoreConfig(
        backend=backend,
        local_dir=base_dir / section.string("local_dir", str(_STORE.local_dir)),
        redis_url=section.string("redis_url", _STORE.redis_url),
        key_prefix=section.string("key_prefix", _STORE.key_prefix),
    )
    section.finish()
    return store


def _audit(section: Section, base_dir: Path) -> AuditConfig:
    defaults = AuditConfig()
    hmac_key = section.string("hmac_key", None)
    audit = AuditConfig(
        stream=section.string("stream", defaults.stream),
        maxlen=section.integer("maxlen", defaults.maxlen, minimum=1),
        spool_dir=base_dir / section.string("spool_dir", str(defaults.spool_dir)),
        content=section.choice("content", AUDIT_CONTENT, defaults.content),
        hmac_key=Secret(hmac_key) if hmac_key else None,
        on_unavailable=section.choice("on_unavailable", ("closed", "open"), defaults.on_unavailable),
        queue_size=section.integer("queue_size", defaults.queue_size, minimum=1),
        spool_max_bytes=section.integer("spool_max_bytes", defaults.spool_max_bytes, minimum=1024),
    )
    section.finish()
    return audit


def with_overrides(config: GatewayConfig, host: str | None, port: int | None, workers: int | None) -> GatewayConfig:
    """Apply `gateway serve --host/--port/--workers`, which win over the file."""
    listen = dataclasses.replace(
        config.listen,
        host=host if host is not None else config.listen.host,
        port=port if port is not None else config.listen.port,
    )
    return dataclasses.replace(config, listen=listen, workers=workers or config.workers)
