"""Incident controls: an operator stops all traffic, or forces it onto one named model, for every app or
for one app, and every worker and instance obeys within about a second.

There is at most one global switch and one switch per app; an app's switch overrides the global one for
that app. A switch is `block` (every exchange is refused with 503 `incident_block` before any policy
check or provider call) or `fallback` (every chat and completions exchange is sent to the switch's model,
whatever model it asked for). Embeddings are never moved: another model's vectors would not match the
caller's index, so they pass unchanged under `fallback` and are refused only under `block`.

Switches are stored like the route kill switches (see `shared_table`): `store.local_dir/incidents.json`
with the local store, or the Redis hash `<key_prefix>incidents` (field `global` or `app:NAME`) with
changes announced on the `<key_prefix>incidents` channel. Each worker applies the whole state as one
immutable snapshot. While Redis is unreachable a worker keeps the last state it saw; one that starts
while Redis is down serves with no switch until Redis is back (so does a new worker after a restart).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.model import GatewayConfig
from gateway.errors import ServiceUnavailable
from gateway.exchange import Decision, Endpoint, Exchange
from gateway.metrics import Metrics
from gateway.routing.router import Router
from gateway.routing.shared_table import Codec, LocalTable, RedisTable, Table

log = logging.getLogger(__name__)

INCIDENTS_FILE = "incidents.json"
ACTIONS = ("block", "fallback")
GLOBAL = "global"
POLICY = "incident"  # the `policy` of the audit decision an incident switch adds to an exchange


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident switch: what it does, to whom, why, who switched it on and when."""

    app: str | None  # None: the global switch
    action: str  # block | fallback
    model: str | None  # fallback: the public model every exchange goes to
    reason: str
    actor: str
    since: float

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown incident action {self.action!r}")
        if self.action == "fallback" and not self.model:
            raise ValueError("a fallback switch needs a model")

    @property
    def scope(self) -> str:
        return scope_of(self.app)

    def view(self) -> dict[str, Any]:
        return {"action": self.action, "model": self.model, "reason": self.reason, "actor": self.actor, "since": self.since}


def scope_of(app: str | None) -> str:
    """The switch's key: `global`, or `app:NAME` (so an app called "global" is not the global switch)."""
    return GLOBAL if app is None else f"app:{app}"


def _load(item: dict[str, Any]) -> Incident:
    return Incident(**item)


CODEC: Codec[str, Incident] = Codec(key=lambda incident: incident.scope, field=lambda key: key, dump=asdict, load=_load)


@dataclass(frozen=True, slots=True)
class IncidentState:
    """Every switch that is on, as one snapshot."""

    everywhere: Incident | None = None
    apps: Mapping[str, Incident] = field(default_factory=dict)

    @classmethod
    def of(cls, incidents: Iterable[Incident]) -> IncidentState:
        everywhere, apps = None, {}
        for incident in incidents:
            if incident.app is None:
                everywhere = incident
            else:
                apps[incident.app] = incident
        return cls(everywhere, apps)

    @property
    def active(self) -> bool:
        return self.everywhere is not None or bool(self.apps)

    def for_app(self, app: str) -> Incident | None:
        """The switch that applies to an app's exchanges: its own, else the global one."""
        return self.apps.get(app, self.everywhere)

    def as_dict(self) -> dict[str, Any]:
        return {
            "global": self.everywhere.view() if self.everywhere else None,
            "apps": {app: incident.view() for app, incident in sorted(self.apps.items())},
        }


class IncidentStore:
    """The incident switches in their shared table."""

    def __init__(self, table: Table[str, Incident]) -> None:
        self.table = table

    async def load(self) -> dict[str, Incident]:
        return await self.table.load()

    async def switch_on(self, incident: Incident) -> None:
        """Sets the switch of the incident's scope (replacing the one there)."""
        await self.table.put(incident)

    async def clear(self, app: str | None) -> None:
        await self.table.remove(scope_of(app))

    def watching(self, apply: Callable[[dict[str, Incident]], None]) -> contextlib.AbstractAsyncContextManager[None]:
        return self.table.watching(apply)


class LocalIncidentStore(IncidentStore):
    def __init__(self, directory: Path) -> None:
        self.path = directory / INCIDENTS_FILE
        super().__init__(LocalTable(self.path, CODEC, "incidents"))


class RedisIncidentStore(IncidentStore):
    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(RedisTable(url, f"{prefix}incidents", f"{prefix}incidents", CODEC, "incidents"))


def incident_store(config: GatewayConfig) -> IncidentStore:
    """In the same store as the audit trail and the kill switches, so they reach the same instances."""
    if config.store.backend == "redis":
        return RedisIncidentStore(config.store.redis_url, config.store.key_prefix)
    return LocalIncidentStore(config.store.local_dir)


class IncidentGate:
    """The admission step that applies the switches to each exchange (one per worker; see the pipeline)."""

    def __init__(self, router: Router, metrics: Metrics) -> None:
        self.router = router
        self.metrics = metrics
        self.state = IncidentState()
        self._idle = True  # no switch on: the whole cost per exchange is this one check
        self._published: set[tuple[str, str]] = set()

    def apply(self, incidents: Mapping[str, Incident]) -> None:
        """Take the switches' new state (from this worker's admin call, or another worker's or instance's)."""
        state = IncidentState.of(incidents.values())
        self.state, self._idle = state, not state.active
        on = {(incident.scope, incident.action) for incident in incidents.values()}
        for scope, action in self._published | on:
            self.metrics.incident_switch(scope, action, (scope, action) in on)
        self._published |= on

    def admit(self, exchange: Exchange) -> None:
        """Block the exchange (503 `incident_block`), or move it to the forced model, when a switch covers its app."""
        if self._idle:
            return
        incident = self.state.for_app(exchange.principal.app)
        if incident is None:
            return
        if incident.action == "block":
            exchange.decisions.append(_decision(incident, "block", _detail(incident)))
            exchange.decision = "block"
            whom = "to this gateway" if incident.app is None else f"for app {incident.app!r}"
            raise ServiceUnavailable(f"An operator has stopped traffic {whom}: {incident.reason}", code="incident_block")
        if exchange.endpoint is Endpoint.EMBEDDINGS:
            return
        assert incident.model is not None  # a fallback switch always names its model
        asked = exchange.route.name if exchange.route is not None else exchange.model
        exchange.fell_back = True  # pinned: a policy's own fallback may not move it off the forced model
        if asked == incident.model:
            return
        self.router.fall_back(exchange, incident.model)
        exchange.decision = "fallback"
        exchange.decisions.append(_decision(incident, "fallback", f"{asked} -> {incident.model}; {_detail(incident)}"))


def _decision(incident: Incident, action: str, detail: str) -> Decision:
    """The audit decision: `gateway audit show` prints it as `request: incident/<scope> -> <action> ... <detail>`."""
    return Decision(policy=POLICY, rule=incident.scope, phase="request", action=action, mode="enforce", verdict=action, detail=detail)


def _detail(incident: Incident) -> str:
    return f"{incident.reason} (by {incident.actor})"


@contextlib.asynccontextmanager
async def following(store: IncidentStore, gate: IncidentGate) -> AsyncIterator[None]:
    """For the app's lifetime: the switches loaded before the first request, then followed as they change."""
    async with store.watching(gate.apply):
        try:
            gate.apply(await store.load())
        except Exception as exc:  # noqa: BLE001 - Redis may be down at start: the watcher applies them once it is back
            log.warning("incident switches not loaded yet (%s: %s); retrying in the background", type(exc).__name__, exc)
        yield
