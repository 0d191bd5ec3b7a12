"""Admin endpoints: the live policy bundle and its reload, and one exchange read back from the audit trail.

Every admin endpoint needs its role (see `Authenticator.may`); refusals are OpenAI-shaped 403s.
"""

from __future__ import annotations

import os
import signal

from aiohttp import web

from gateway.audit.reader import AuditReader, unique
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.http.headers import reply_headers, request_error
from gateway.pipeline import Pipeline
from gateway.policy.policy_set import PolicySet
from gateway.policy.reloader import PolicyReloader

SUPERVISOR_ENV = "GATEWAY_SUPERVISOR_PID"  # set by the supervisor: reloads must reach every worker


class AdminHandlers:
    def __init__(self, pipeline: Pipeline, reloader: PolicyReloader, audit: AuditReader) -> None:
        self.pipeline = pipeline
        self.reloader = reloader
        self.audit = audit

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/policies", self.policies),
            web.post("/admin/policies/reload", self.reload),
            web.get("/admin/audit/{request_id}", self.audit_record),
        ]

    def _authorize(self, request: web.Request, *roles: str) -> None:
        principal = self.pipeline.auth.authenticate(request.headers)
        if not any(self.pipeline.auth.may(principal, role, request.remote) for role in roles):
            raise Forbidden(f"This endpoint needs the {' or '.join(roles)} role.", code=f"{roles[0]}_required")

    async def policies(self, request: web.Request) -> web.Response:
        """The live bundle: version, signer, and each policy with its rules (no patterns, no tests)."""
        try:
            self._authorize(request, "admin")
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
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
        try:
            self._authorize(request, "admin")
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
        result = await self.reloader.reload(reason="admin request", actor=_actor(request))
        supervisor = os.environ.get(SUPERVISOR_ENV)
        if supervisor and result.ok:
            os.kill(int(supervisor), signal.SIGHUP)
        status = 200 if result.ok else 422
        return web.json_response(result.as_dict(), status=status, headers=reply_headers(request, self.pipeline))


    async def audit_record(self, request: web.Request) -> web.Response:
        """One exchange reconstructed: every record with its request id (the exchange, reviews), oldest first."""
        try:
            self._authorize(request, "admin", "auditor")
        except GatewayError as error:
            return request_error(request, self.pipeline, error)
        request_id = request.match_info["request_id"]
        records = list(unique(await self.audit.find(request_id)))
        if not records:
            missing = NotFound(f"No audit record for request {request_id!r}.", code="audit_record_not_found")
            return request_error(request, self.pipeline, missing)
        return web.json_response({"request_id": request_id, "records": records}, headers=reply_headers(request, self.pipeline))


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
