"""Keeps one worker's live policy engine: the first load, then reloads that swap one reference.

A reload (file change, SIGHUP, `POST /admin/policies/reload`) builds and validates the whole new bundle
off the event loop, then swaps `pipeline.policy` in one assignment: an exchange in flight keeps the
engine it started with. A bundle that fails to read, verify or compile changes nothing: the last good
version stays live, and the failure is logged, counted and audited like a success.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.audit.record import RecordBuilder
from gateway.audit.writer import AuditSink
from gateway.config.model import PoliciesConfig
from gateway.metrics import Metrics
from gateway.policy.compiler import BundleRejected, CompiledBundle, compile_bundle
from gateway.policy.engine import NoPolicies
from gateway.tasks import running

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from gateway.pipeline import Pipeline

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool
    version: str
    previous: str
    error: str | None = None
    signer: str | None = None
    policies: int = 0
    rules: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "changed": self.changed, "version": self.version, "previous_version": self.previous,
            "error": self.error, "signed_by": self.signer, "policies": self.policies, "rules": self.rules,
        }


class PolicyReloader:
    def __init__(
        self,
        config: PoliciesConfig,
        pipeline: Pipeline,
        metrics: Metrics,
        audit: AuditSink,
        records: RecordBuilder,
        *,
        known_models: Iterable[str] = (),
        http: ClientSession | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.metrics = metrics
        self.audit = audit
        self.records = records
        self.known_models = frozenset(known_models)
        self.http = http
        self.live: CompiledBundle | None = None
        self._lock = asyncio.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None

    @property
    def enabled(self) -> bool:
        """Without a policy directory the gateway runs with no policies (and says so at start)."""
        return self.config.dir.is_dir() or bool(self.config.signature_keys)

    async def load_initial(self) -> None:
        """The first load: a bad bundle here is fatal (the server must not start unprotected)."""
        if not self.enabled:
            log.warning("no policy directory at %s: running with no policies", self.config.dir)
            self.pipeline.policy = NoPolicies()
            return
        self._fingerprint = await asyncio.to_thread(fingerprint, self.config.dir)
        compiled = await asyncio.to_thread(self._compile)
        self._go_live(compiled)
        self._audit_reload(self.result_of(compiled, previous=None, changed=True), reason="start", actor="gateway")

    async def reload(self, *, reason: str, actor: str = "gateway") -> ReloadResult:
        """Build, validate, swap. Never raises for a bad bundle: the result says what happened."""
        async with self._lock:
            previous = self.pipeline.policy.version
            self._fingerprint = await asyncio.to_thread(fingerprint, self.config.dir)
            try:
                compiled = await asyncio.to_thread(self._compile)
            except BundleRejected as exc:
                result = ReloadResult(ok=False, changed=False, version=previous, previous=previous, error=str(exc))
                log.error("policy reload (%s) failed, keeping version %s: %s", reason, previous[:12], exc)
                self.metrics.policy_loaded("failed", None, None)
                self._audit_reload(result, reason=reason, actor=actor)
                return result
            changed = compiled.bundle.version != previous
            if changed:
                self._go_live(compiled)
                log.info("policy reload (%s): version %s -> %s", reason, previous[:12], compiled.bundle.version[:12])
            else:
                self.metrics.policy_loaded("unchanged", None, None)
            result = self.result_of(compiled, previous=previous, changed=changed)
            if changed:
                self._audit_reload(result, reason=reason, actor=actor)
            return result

    def _compile(self) -> CompiledBundle:
        return compile_bundle(
            self.config.dir, self.metrics, signature_keys=self.config.signature_keys,
            known_models=self.known_models, http=self.http, stream_hold=self.config.stream,
        )

    def _go_live(self, compiled: CompiledBundle) -> None:
        old = self.pipeline.policy.version if self.live is not None else None
        self.live = compiled
        self.pipeline.policy = compiled.policies  # the one swap: in-flight exchanges keep their engine
        self.metrics.policy_loaded("ok", old, compiled.bundle.version)

    def result_of(self, compiled: CompiledBundle, *, previous: str | None, changed: bool) -> ReloadResult:
        policies = compiled.policies
        return ReloadResult(
            ok=True, changed=changed, version=compiled.bundle.version, previous=previous or "",
            signer=compiled.approval.key_id if compiled.approval else None,
            policies=len(policies.policies), rules=policies.rule_count,
        )

    def _audit_reload(self, result: ReloadResult, *, reason: str, actor: str) -> None:
        event: dict[str, object] = {"reason": reason, "actor": actor, **result.as_dict()}
        if self.live is not None and result.ok:
            event["files"] = {file.path: file.digest for file in self.live.bundle.files}
        record = self.records.event_record("policy_reload", self.pipeline.policy.version, event, outcome="ok" if result.ok else "failed")
        self.audit.submit(record)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """With `reload: watch`, poll the directory once a second and reload when anything in it changed."""
        if self.config.reload != "watch" or not self.enabled:
            yield
            return

        async def watch() -> None:
            while True:
                await asyncio.sleep(WATCH_INTERVAL_S)
                try:
                    current = await asyncio.to_thread(fingerprint, self.config.dir)
                except OSError as exc:
                    log.warning("policy watch: %s", exc)
                    continue
                if current != self._fingerprint:
                    await self.reload(reason="file change")

        async with running(watch(), "policy-watch"):
            yield


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Path, size and mtime of every file: cheap to take every second, changes with any edit."""
    if not directory.is_dir():
        return ()
    entries = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            entries.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))

