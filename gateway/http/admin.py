"""Admin endpoints: the live policy bundle and its reload, one exchange read back from the audit trail, and
the routes' kill switches.

Every admin endpoint needs its role (see `Authenticator.may`); refusals are OpenAI-shaped 403s.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable

import orjson

from aiohttp import web

from gateway.audit.reader import AuditReader, unique
from gateway.errors import Forbidden, GatewayError, InvalidRequest, NotFound
from gateway.http.headers import reply_headers, request_error
from gateway.pipeline import Pipeline
from gateway.policy.policy_set import PolicySet
from gateway.policy.reloader import PolicyReloader
from gateway.routing.switches import Switch, SwitchStore

Handler = Callable[[web.Request], Awaitable[web.Response]]

SUPERVISOR_ENV = "GATEWAY_SUPERVISOR_PID"  # set by the supervisor: reloads must reach every worker


class AdminHandlers:
    def __init__(self, pipeline: Pipeline, reloader: PolicyReloader, audit: AuditReader, switches: SwitchStore) -> None:
        self.pipeline = pipeline
        self.reloader = reloader
        self.audit = audit
        self.switches = switches

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/policies", self._guard(self.policies, "admin")),
            web.post("/admin/policies/reload", self._guard(self.reload, "admin")),
            web.get("/admin/audit/{request_id}", self._guard(self.audit_record, "admin", "auditor")),
            web.get("/admin/routes", self._guard(self.routes_state, "admin")),
            web.post("/admin/routes/{model}/targets/{index}/disable", self._guard(self.disable_target, "admin")),
            web.post("/admin/routes/{model}/targets/{index}/enable", self._guard(self.enable_target, "admin")),
        ]

    def _guard(self, handler: Handler, *roles: str) -> Handler:
        """The handler behind its role check; any GatewayError it raises becomes the OpenAI-shaped answer."""

        async def guarded(request: web.Request) -> web.Response:
            try:
                self._authorize(request, *roles)
                return await handler(request)
            except GatewayError as error:
                return request_error(request, self.pipeline, error)

        return guarded

    def _authorize(self, request: web.Request, *roles: str) -> None:
        principal = self.pipeline.auth.authenticate(request.headers)
        if not any(self.pipeline.auth.may(principal, role, request.remote) for role in roles):
            raise Forbidden(f"This endpoint needs the {' or '.join(roles)} role.", code=f"{roles[0]}_required")

    async def policies(self, request: web.Request) -> web.Response:
        """The live bundle: version, signer, and each policy with its rules (no patterns, no tests)."""
        engine = self.pipeline.policy
        live = self.reloader.live
        body: dict[str, object] = {
            "version": engine.version,
            "directory": str(self.reloader.config.dir),
            "reload": self.reloader.config.reload,
            "signed_by": live.approval.key_id if live and live.approval else None,
            "files": [file.path for file in live.bundle.files] if live else [],
            "policies": _describe(engine) if isinstance(engine, PolicySet) else [],
        }
        return web.json_response(body, headers=reply_headers(request, self.pipeline))

    async def reload(self, request: web.Request) -> web.Response:
        """Reload now. The answer is this worker's result; the supervisor passes it on to the others."""
        result = await self.reloader.reload(reason="admin request", actor=_actor(request))
        supervisor = os.environ.get(SUPERVISOR_ENV)
        if supervisor and result.ok:
            os.kill(int(supervisor), signal.SIGHUP)
        status = 200 if result.ok else 422
        return web.json_response(result.as_dict(), status=status, headers=reply_headers(request, self.pipeline))


    async def audit_record(self, request: web.Request) -> web.Response:
        """One exchange reconstructed: every record with its request id (the exchange, reviews), oldest first."""
        request_id = request.match_info["request_id"]
        records = list(unique(await self.audit.find(request_id)))
        if not records:
            missing = NotFound(f"No audit record for request {request_id!r}.", code="audit_record_not_found")
            return request_error(request, self.pipeline, missing)
        return web.json_response({"request_id": request_id, "records": records}, headers=reply_headers(request, self.pipeline))


    async def routes_state(self, request: web.Request) -> web.Response:
        """Every route's targets: weight, circuit breaker, and kill switch (who disabled it, why, since when)."""
        router = self.pipeline.router
        routes = {
            name: [
                {
                    "index": index, "target": target.label, "weight": target.weight,
                    "breaker": router.breakers[target.label].state if target.label in router.breakers else None,
                    "disabled": _switch_view(router.switches.get((name, index))),
                }
                for index, target in enumerate(route.targets)
            ]
            for name, route in router.routes.items()
        }
        return web.json_response({"routes": routes}, headers=reply_headers(request, self.pipeline))

    async def disable_target(self, request: web.Request) -> web.Response:
        return await self._switch(request, disable=True)

    async def enable_target(self, request: web.Request) -> web.Response:
        return await self._switch(request, disable=False)

    async def _switch(self, request: web.Request, *, disable: bool) -> web.Response:
        """Flip a kill switch: stored (every worker and instance follows within a second), applied here at
        once, and audited with who did it and why."""
        model, index, label = self._target_of(request)
        reason = await _reason(request, required=disable)
        actor = _actor(request)
        if disable:
            await self.switches.disable(Switch(model, index, label, reason, actor, time.time()))
        else:
            await self.switches.enable((model, index))
        self.pipeline.router.apply_switches(await self.switches.load())
        event = {"action": "disable_target" if disable else "enable_target", "model": model, "index": index, "target": label, "reason": reason, "actor": actor}
        pipeline = self.pipeline
        pipeline.audit.submit(pipeline.records.event_record("admin_action", pipeline.policy.version, event))
        body = {"model": model, "index": index, "target": label, "disabled": disable, "reason": reason}
        return web.json_response(body, headers=reply_headers(request, self.pipeline))

    def _target_of(self, request: web.Request) -> tuple[str, int, str]:
        model = request.match_info["model"]
        route = self.pipeline.router.routes.get(model)
        if route is None:
            raise NotFound(f"No route for model {model!r}.", code="model_not_found")
        try:
            index = int(request.match_info["index"])
        except ValueError:
            index = -1
        if not 0 <= index < len(route.targets):
            raise NotFound(f"Route {model!r} has no target {request.match_info['index']!r} (0-{len(route.targets) - 1}).", code="target_not_found")
        return model, index, route.targets[index].label


async def _reason(request: web.Request, *, required: bool) -> str:
    """`{"reason": "..."}`: a kill switch without a reason is an incident nobody can explain later."""
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be JSON: {\"reason\": \"...\"}.", code="invalid_json") from None
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("'reason' must be a string.", param="reason", code="invalid_type")
    if required and not (reason or "").strip():
        raise InvalidRequest("Say why: {\"reason\": \"...\"} is required to disable a target.", param="reason", code="missing_field")
    return (reason or "").strip()[:500]


def _switch_view(switch: Switch | None) -> dict[str, object] | None:
    if switch is None:
        return None
    return {"reason": switch.reason, "actor": switch.actor, "since": switch.since}


def _actor(request: web.Request) -> str:
    return f"admin@{request.remote or 'unknown'}"


def _describe(engine: PolicySet) -> list[dict[str, object]]:
    return [
        {
            "name": policy.name,
            "owner": policy.owner,
            "description": policy.description,
            "mode": policy.mode,
            "priority": policy.priority,
            "source": policy.source,
            "rules": [
                {"id": rule.id, "phase": sorted(rule.phases), "check": rule.check.kind, "action": rule.action, "mode": rule.mode}
                for rule in policy.rules
            ],
        }
        for policy in engine.policies
    ]
