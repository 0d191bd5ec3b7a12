"""Admin endpoints: the live policy bundle and its reload, one exchange read back from the audit trail,
the routes' kill switches and the incident switches.

Every admin endpoint needs its role (`roles.guarded`); refusals are OpenAI-shaped 403s.
"""

from __future__ import annotations

import os
import signal
import time

from aiohttp import web

from gateway.audit.reader import AuditReader, unique
from gateway.errors import InvalidRequest, NotFound, UnknownModel
from gateway.exchange import Principal
from gateway.http.headers import reply_headers, request_error
from gateway.http.request_body import read_json_object
from gateway.http.roles import actor, guarded
from gateway.pipeline import Pipeline
from gateway.policy.policy_set import PolicySet
from gateway.policy.reloader import PolicyReloader
from gateway.routing.incidents import ACTIONS, Incident, IncidentStore, scope_of
from gateway.routing.switches import Switch, SwitchStore

SUPERVISOR_ENV = "GATEWAY_SUPERVISOR_PID"  # set by the supervisor: reloads must reach every worker


class AdminHandlers:
    def __init__(
        self, pipeline: Pipeline, reloader: PolicyReloader, audit: AuditReader, switches: SwitchStore, incidents: IncidentStore
    ) -> None:
        self.pipeline = pipeline
        self.reloader = reloader
        self.audit = audit
        self.switches = switches
        self.incidents = incidents

    def routes(self) -> list[web.RouteDef]:
        pipeline = self.pipeline
        return [
            web.get("/admin/policies", guarded(pipeline, self.policies, "admin")),
            web.post("/admin/policies/reload", guarded(pipeline, self.reload, "admin")),
            web.get("/admin/audit/{request_id}", guarded(pipeline, self.audit_record, "admin", "auditor")),
            web.get("/admin/routes", guarded(pipeline, self.routes_state, "admin")),
            web.post("/admin/routes/{model}/targets/{index}/disable", guarded(pipeline, self.disable_target, "admin")),
            web.post("/admin/routes/{model}/targets/{index}/enable", guarded(pipeline, self.enable_target, "admin")),
            web.get("/admin/incidents", guarded(pipeline, self.incidents_state, "admin")),
            web.post("/admin/incidents/global", guarded(pipeline, self.set_incident, "admin")),
            web.post("/admin/incidents/apps/{app}", guarded(pipeline, self.set_incident, "admin")),
        ]

    async def policies(self, request: web.Request, _: Principal) -> web.Response:
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

    async def reload(self, request: web.Request, principal: Principal) -> web.Response:
        """Reload now. The answer is this worker's result; the supervisor passes it on to the others."""
        result = await self.reloader.reload(reason="admin request", actor=actor(principal, request))
        supervisor = os.environ.get(SUPERVISOR_ENV)
        if supervisor and result.ok:
            os.kill(int(supervisor), signal.SIGHUP)
        status = 200 if result.ok else 422
        return web.json_response(result.as_dict(), status=status, headers=reply_headers(request, self.pipeline))


    async def audit_record(self, request: web.Request, _: Principal) -> web.Response:
        """One exchange reconstructed: every record with its request id (the exchange, reviews), oldest first."""
        request_id = request.match_info["request_id"]
        records = list(unique(await self.audit.find(request_id)))
        if not records:
            missing = NotFound(f"No audit record for request {request_id!r}.", code="audit_record_not_found")
            return request_error(request, self.pipeline, missing)
        return web.json_response({"request_id": request_id, "records": records}, headers=reply_headers(request, self.pipeline))


    async def routes_state(self, request: web.Request, _: Principal) -> web.Response:
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

    async def disable_target(self, request: web.Request, principal: Principal) -> web.Response:
        return await self._switch(request, actor(principal, request), disable=True)

    async def enable_target(self, request: web.Request, principal: Principal) -> web.Response:
        return await self._switch(request, actor(principal, request), disable=False)

    async def _switch(self, request: web.Request, who: str, *, disable: bool) -> web.Response:
        """Flip a kill switch: stored (every worker and instance follows within a second), applied here at
        once, and audited with who did it and why."""
        model, index, label = self._target_of(request)
        reason = _reason_in(await read_json_object(request), required=disable, doing="disable a target")
        if disable:
            await self.switches.disable(Switch(model, index, label, reason, who, time.time()))
        else:
            await self.switches.enable((model, index))
        self.pipeline.router.apply_switches(await self.switches.load())
        event = {"action": "disable_target" if disable else "enable_target", "model": model, "index": index, "target": label, "reason": reason, "actor": who}
        pipeline = self.pipeline
        pipeline.audit.submit(pipeline.records.event_record("admin_action", pipeline.policy.version, event))
        body = {"model": model, "index": index, "target": label, "disabled": disable, "reason": reason}
        return web.json_response(body, headers=reply_headers(request, self.pipeline))

    async def incidents_state(self, request: web.Request, _: Principal) -> web.Response:
        """The incident switches this worker applies (every worker and instance follows a change within a second)."""
        return web.json_response(self.pipeline.incidents.state.as_dict(), headers=reply_headers(request, self.pipeline))

    async def set_incident(self, request: web.Request, principal: Principal) -> web.Response:
        """Switch the global or an app's incident control to block or fallback, or clear it: stored (every
        worker and instance follows within a second), applied here at once, and audited with who and why.

        Body: `{"action": "block" | "fallback" | "clear", "model": "..." (fallback), "reason": "..."}`.
        """
        app = request.match_info.get("app")  # None: the global switch
        body = await read_json_object(request)
        unknown = sorted(set(body) - {"action", "model", "reason"})
        if unknown:
            raise InvalidRequest(f"Unknown field {unknown[0]!r}: the body takes action, model and reason.", param=unknown[0], code="unknown_field")
        action = body.get("action")
        if action not in (*ACTIONS, "clear"):
            raise InvalidRequest("'action' must be \"block\", \"fallback\" or \"clear\".", param="action", code="invalid_value")
        model = body.get("model")
        if action == "fallback":
            if not isinstance(model, str) or not model:
                raise InvalidRequest("A fallback needs the model to send traffic to: {\"model\": \"...\"}.", param="model", code="missing_field")
            if model not in self.pipeline.router.routes:
                known = ", ".join(sorted(self.pipeline.router.routes))
                raise UnknownModel(f"The model {model!r} is not served by this gateway (known: {known}).", param="model")
        elif model is not None:
            raise InvalidRequest("'model' is only for action \"fallback\".", param="model", code="invalid_value")
        reason = _reason_in(body, required=action != "clear", doing=f"{action} traffic")
        who = actor(principal, request)
        if action == "clear":
            await self.incidents.clear(app)
        else:
            await self.incidents.switch_on(Incident(app, action, model, reason, who, time.time()))
        self.pipeline.incidents.apply(await self.incidents.load())
        scope = scope_of(app)
        event = {"action": f"incident_{action}", "scope": scope, "app": app, "model": model, "reason": reason, "actor": who}
        pipeline = self.pipeline
        pipeline.audit.submit(pipeline.records.event_record("admin_action", pipeline.policy.version, event))
        body = {"scope": scope, "action": action, **pipeline.incidents.state.as_dict()}
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


def _reason_in(body: dict[str, object], *, required: bool, doing: str) -> str:
    """`{"reason": "..."}`: a switch without a reason is an incident nobody can explain later."""
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("'reason' must be a string.", param="reason", code="invalid_type")
    if required and not (reason or "").strip():
        raise InvalidRequest(f"Say why: {{\"reason\": \"...\"}} is required to {doing}.", param="reason", code="missing_field")
    return (reason or "").strip()[:500]


def _switch_view(switch: Switch | None) -> dict[str, object] | None:
    if switch is None:
        return None
    return {"reason": switch.reason, "actor": switch.actor, "since": switch.since}


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
                {
                    "id": rule.id, "phase": sorted(rule.phases), "check": rule.check.kind, "action": rule.action, "mode": rule.mode,
                    "stage": None if rule.stage is None else {**rule.stage.as_dict(), "schedule": rule.stage.describe()},
                }
                for rule in policy.rules
            ],
        }
        for policy in engine.policies
    ]
