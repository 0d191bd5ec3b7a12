"""Policy directory -> a live engine: read the bundle, verify its signature, load, compile.

All or nothing: any error leaves nothing half-built, and the caller keeps the engine it had.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.model import StreamHold
from gateway.metrics import Metrics
from gateway.policy import text
from gateway.policy.bundle import Bundle, BundleError, read_bundle
from gateway.policy.loader import PolicyError, load_policies
from gateway.policy.policy_set import PolicySet

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from gateway.policy.signing import Approval


class BundleRejected(Exception):
    """The bundle cannot go live; str() is one line naming the file (and line) at fault."""


@dataclass(frozen=True, slots=True)
class CompiledBundle:
    bundle: Bundle
    policies: PolicySet
    approval: Approval | None  # who signed it, when signatures are configured or present


def compile_bundle(
    directory: Path,
    metrics: Metrics,
    *,
    signature_keys: Sequence[Path] = (),
    known_models: Collection[str] = (),
    http: ClientSession | None = None,
    stream_hold: StreamHold = StreamHold(),
) -> CompiledBundle:
    """Blocking (file reads, compilation): run it off the event loop, e.g. with `asyncio.to_thread`.

    With `known_models` (the gateway's configured routes), a fallback to a model nobody serves is an
    error now, not a surprise at request time.
    """
    try:
        bundle = read_bundle(directory)
        approval = _approval(bundle, signature_keys)
        policies = load_policies(bundle)
    except (BundleError, PolicyError) as exc:
        raise BundleRejected(str(exc)) from None
    if known_models:
        for policy in policies:
            for rule in policy.rules:
                if rule.fallback_model is not None and rule.fallback_model not in known_models:
                    raise BundleRejected(
                        f"{rule.source}: fallback.model: {rule.fallback_model!r} is not a configured model "
                        f"(configured: {', '.join(sorted(known_models))})"
                    )
    text.prepare()
    return CompiledBundle(bundle, PolicySet(policies, bundle.version, metrics, http, stream_hold), approval)


def _approval(bundle: Bundle, signature_keys: Sequence[Path]) -> Approval | None:
    if not signature_keys:
        return None
    # pyjwt and cryptography cost a worker several MB: loaded only when signatures are required.
    from gateway.policy.signing import BundleNotSigned, SignatureError, load_public_keys, verify_bundle  # noqa: PLC0415

    try:
        return verify_bundle(bundle, load_public_keys(signature_keys))
    except BundleNotSigned as exc:
        raise BundleRejected(f"{exc} and policies.require_signature is set") from None
    except SignatureError as exc:
        raise BundleRejected(str(exc)) from None
