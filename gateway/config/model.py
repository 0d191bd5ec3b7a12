"""The validated configuration: frozen value objects built once at start-up and shared read-only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from gateway.secret import Secret

PROVIDER_KINDS = ("openai", "mock")
AUTH_MODES = ("none", "api_key", "jwt")
STORE_BACKENDS = ("local", "redis")
AUDIT_CONTENT = ("none", "hmac", "redacted", "full")


@dataclass(frozen=True, slots=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests and streams may finish
    upstream_connections: int = 1024  # pooled connections per worker, across all providers


@dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    """Per-provider deadlines; the route's `timeout_s` bounds the whole attempt on top of these."""

    connect_s: float = 10.0
    first_byte_s: float = 120.0  # until the response headers arrive
    idle_s: float = 60.0  # between two reads of the body or two stream chunks


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str = ""
    api_key: Secret | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeouts: UpstreamTimeouts = UpstreamTimeouts()
    # mock only: simulated latency, so benchmarks and tests can exercise slow upstreams in-process
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str
    weight: float = 1.0  # share of first attempts with `balance: weighted`

    @property
    def label(self) -> str:
        """How the target appears in `x-gateway-target`, metrics and audit records."""
        return f"{self.provider}/{self.model}"


RETRY_ON = ("connect_error", "timeout", "429", "5xx", "bad_response")
BALANCE = ("ordered", "weighted")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retries of one target before the route moves on to the next (attempts counts the first try)."""

    attempts: int = 1
    backoff_ms: float = 200.0
    max_backoff_ms: float = 5000.0
    retry_on: tuple[str, ...] = ("connect_error", "timeout", "429", "5xx")


@dataclass(frozen=True, slots=True)
class ModelRoute:
    name: str
    targets: tuple[Target, ...]
    timeout_s: float | None = None  # the whole exchange's upstream deadline, retries and fallbacks included
    attempt_timeout_s: float | None = None  # one attempt's deadline (within timeout_s)
    retry: RetryConfig = RetryConfig()
    balance: str = "ordered"  # ordered: targets in order; weighted: the first attempt by weight, then in order


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a target's circuit breaker opens and for how long (one breaker per provider/model, per worker).

    Consecutive failures catch a target that went down; the error rate catches one that fails a
    share of requests while still answering some (which resets the consecutive count). `min_requests`
    keeps a quiet target from opening on a handful of unlucky calls.
    """

    failures: int = 5
    error_rate: float = 0.5
    window_s: float = 30.0
    min_requests: int = 20
    open_s: float = 30.0
    max_open_s: float = 300.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError(f"failures must be at least 1, got {self.failures}")
        if not 0 < self.error_rate <= 1:
            raise ValueError(f"error_rate must be in (0, 1], got {self.error_rate}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be at least 1, got {self.min_requests}")
        for name in ("window_s", "open_s", "max_open_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s ({self.max_open_s}) must not be below open_s ({self.open_s})")


LIMIT_DIMENSIONS = ("app", "tenant", "model")
BUDGET_PERIODS = {"hour": 3600, "day": 86400, "month": 31 * 86400}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and tokens per minute, counted separately for each value of the `per` dimensions."""

    per: tuple[str, ...]
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    models: tuple[str, ...] = ()  # globs over the public model; empty: every model


@dataclass(frozen=True, slots=True)
class Budget:
    """Tokens (prompt and completion, as the provider reports them) per period, per `per` value."""

    per: tuple[str, ...]
    tokens: int
    period: str = "day"
    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    breaker: BreakerSettings = BreakerSettings()


JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True, slots=True)
class ClaimsMap:
    """Which token claims name the caller's app, tenant and roles (for policies, audit and role checks)."""

    app: str = "sub"
    tenant: str = "tenant"
    roles: str = "roles"


@dataclass(frozen=True, slots=True)
class JwtConfig:
    algorithms: tuple[str, ...]
    issuer: str | None = None
    audience: str | None = None
    jwks_file: Path | None = None  # keys by kid (RSA, EC, OKP, oct)
    public_key_file: Path | None = None  # one PEM public key
    secret: Secret | None = None  # HS* shared secret
    leeway_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One application key, stored as its sha256 (`gateway auth hash-key` prints it): never the key itself."""

    sha256: str
    app: str
    tenant: str | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    mode: str = "none"
    jwt: JwtConfig | None = None
    claims: ClaimsMap = ClaimsMap()
    api_keys: tuple[ApiKey, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamHold:
    """How response rules hold back streamed text: a window of characters, and a bound on the time."""

    window_chars: int = 256
    max_hold_ms: float = 500.0


@dataclass(frozen=True, slots=True)
class PoliciesConfig:
    dir: Path = Path("policies")
    reload: str = "watch"
    signature_keys: tuple[Path, ...] = ()  # require_signature.keys: bundles must be signed by one of these
    stream: StreamHold = StreamHold()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    backend: str = "local"
    local_dir: Path = Path("var")
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "gw:"


@dataclass(frozen=True, slots=True)
class AuditConfig:
    stream: str = "audit"
    maxlen: int = 10_000_000
    spool_dir: Path = Path("var/spool")
    content: str = "hmac"
    hmac_key: Secret | None = None
    on_unavailable: str = "closed"
    queue_size: int = 10_000
    spool_max_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReviewConfig:
    """The human review queue (escalate rules); the queue itself lives in the store."""

    claim_lease_s: float = 300.0  # how long a reviewer holds a claimed item before others may take it
    max_deliveries: int = 5  # claims without a decision before an item is dead-lettered
    retention_s: float = 86400.0  # how long a decided review (and the result the app fetches) is kept
    sweep_s: float = 1.0  # how often each worker applies on_timeout to overdue reviews


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    source: str = "<embedded default>"
    listen: Listen = Listen()
    workers: int = 1
    limits: Limits = Limits()
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: dict[str, ModelRoute] = field(default_factory=dict)
    auth: AuthConfig = AuthConfig()
    routing: RoutingConfig = RoutingConfig()
    policies: PoliciesConfig = PoliciesConfig()
    rate_limits: tuple[RateLimit, ...] = ()
    budgets: tuple[Budget, ...] = ()
    store: StoreConfig = StoreConfig()
    audit: AuditConfig = AuditConfig()
    review: ReviewConfig = ReviewConfig()


MOCK_MODELS = ("mock-gpt", "mock-embedding")


def embedded_default() -> GatewayConfig:
    """What `gateway serve` runs with no config file: everything local, nothing to install or pay for."""
    mock = ProviderConfig(name="mock", kind="mock")
    return GatewayConfig(
        providers={"mock": mock},
        models={name: ModelRoute(name=name, targets=(Target("mock", name),)) for name in MOCK_MODELS},
    )
