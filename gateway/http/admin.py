"""Admin endpoints: the live policy bundle, and reloading it (`/admin/policies`, `/admin/policies/reload`).

Every admin endpoint needs the admin role (see `Authenticator.may`); refusals are OpenAI-shaped 403s.
"""

from __future__ import annotations

import os
import signal

from aiohttp import web

from gateway.errors import Forbidden, GatewayError
from gateway.http.headers import reply_headers, request_error
from gateway.pipeline import Pipeline
from gateway.policy.policy_set import PolicySet
from gateway.policy.reloader import PolicyReloader

SUPERVISOR_ENV = "GATEWAY_SUPERVISOR_PID"  # set by the supervisor: reloads must reach every worker


class AdminHandlers:
    def __init__(self, pipeline: Pipeline, reloader: PolicyReloader) -> None:
        self.pipeline = pipeline
        self.reloader = reloader

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/policies", self.policies),
            web.post("/admin/policies/reload", self.reload),
        ]

    def _authorize(self, request: web.Request, role: str) -> None:
        principal = self.pipeline.auth.authenticate(request.headers)
        if not self.pipeline.auth.may(principal, role, request.remote):
            raise Forbidden(f"This endpoint needs the {role} role.", code=f"{role}_required")

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
