"""`gateway policy check|test|explain|schema|sign|keygen`: policy bundles from the command line.

The directory is the positional DIR, else `policies.dir` of the config (`--config`, `$GATEWAY_CONFIG`,
`./gateway.yaml`), else `./policies`, so CI and the server always read the same bundle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.config import load_config
from gateway.config.model import embedded_default
from gateway.exchange import Endpoint, Principal
from gateway.metrics import Metrics
from gateway.policy.bundle import read_bundle
from gateway.policy.compiler import BundleRejected, CompiledBundle, compile_bundle
from gateway.policy.diff import describe, diff_bundles
from gateway.policy.explain import explain
from gateway.policy.schema import policy_schema
from gateway.policy.stages import parse_instant
from gateway.policy.suite import run_suite


class CommandFailed(Exception):
    """A policy command's one-line failure (exit 1)."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("policy", help="check, test, explain and sign policy bundles", description=__doc__)
    actions = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Any, *, directory: bool = True) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="config file whose policies.dir, signature keys and models to use")
        if directory:
            sub.add_argument("dir", nargs="?", help="policy directory (default: policies.dir of the config)")
        sub.set_defaults(run=run)
        return sub

    action("check", "validate and compile the bundle; exit 1 with file:line on the first error", _check)
    test = action("test", "run the tests inside the policy files; exit 1 on any failure", _test)
    test.add_argument("--format", choices=("text", "json"), default="text")
    explain_parser = action("explain", "which rules apply to a request body and which fire, and why", _explain)
    explain_parser.add_argument("--request", required=True, help="a JSON request body (or - for stdin)")
    explain_parser.add_argument("--route", default="/v1/chat/completions", choices=[f"/v1/{e.value}" for e in Endpoint])
    explain_parser.add_argument("--app", default="anonymous", help="the calling app, for match.apps")
    explain_parser.add_argument("--request-id", help="the request id, which picks staged rules' rollout side (default: a fresh one)")
    explain_parser.add_argument("--at", help="the time of the request (RFC 3339, e.g. 2025-07-01T00:00:00Z), for staged rules' until (default: now)")
    explain_parser.add_argument("--format", choices=("text", "json"), default="text")
    action("schema", "print the JSON Schema of the policy format (for editors)", _schema, directory=False)
    difference = action("diff", "rules added, removed and changed between two bundles (for change review)", _diff, directory=False)
    difference.add_argument("old", help="the bundle now live (a directory)")
    difference.add_argument("new", help="the proposed bundle (a directory)")
    difference.add_argument("--format", choices=("text", "json"), default="text")
    sign = action("sign", "sign the bundle (Ed25519 JWS in DIR/bundle.jws)", _sign)
    sign.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    sign.add_argument("--signer", help="who approves, e.g. an email; recorded in the signature")
    keygen = action("keygen", "create an Ed25519 key pair for signing bundles", _keygen, directory=False)
    keygen.add_argument("private_key", help="where to write the private key (PEM, mode 0600)")
    keygen.add_argument("public_key", help="where to write the public key (PEM)")


def _directory(args: argparse.Namespace) -> tuple[Path, Any]:
    config = load_config(args.config)
    return (Path(args.dir) if getattr(args, "dir", None) else config.policies.dir), config


def _compile(args: argparse.Namespace, *, verify_signature: bool = True) -> CompiledBundle:
    """The bundle as the server would load it: signature keys from the config, and fallback models
    checked against the configured routes (when there is a config file: the embedded default's mock
    routes say nothing about where a bundle will be deployed)."""
    directory, config = _directory(args)
    if not directory.is_dir():
        raise CommandFailed(f"{directory}: policy directory not found")
    keys = config.policies.signature_keys if verify_signature else ()
    models = config.models if config.source != embedded_default().source else ()
    try:
        return compile_bundle(directory, Metrics(), signature_keys=keys, known_models=models)
    except BundleRejected as exc:
        raise CommandFailed(str(exc)) from None


def _check(args: argparse.Namespace) -> int:
    compiled = _compile(args)
    policies = compiled.policies
    signed = f", signed by {compiled.approval.key_id}" if compiled.approval else ""
    print(f"ok: {len(policies.policies)} policies, {policies.rule_count} rules, version {compiled.bundle.version}{signed}")
    return 0


def _test(args: argparse.Namespace) -> int:
    compiled = _compile(args)
    report = asyncio.run(run_suite(compiled.policies))
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.passed else 1
    for result in report.results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.policy}: {result.name}")
        for failure in result.failures:
            print(f"      {result.source}: {failure}")
    for problem in report.problems:
        print(f"FAIL  {problem}")
    failed = sum(not result.passed for result in report.results)
    print(f"{len(report.results) - failed} passed, {failed} failed" + (f", {len(report.problems)} coverage problems" if report.problems else ""))
    return 0 if report.passed else 1


def _explain(args: argparse.Namespace) -> int:
    compiled = _compile(args)
    raw = sys.stdin.buffer.read() if args.request == "-" else Path(args.request).read_bytes()
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandFailed(f"{args.request}: not valid JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("model"), str):
        raise CommandFailed(f"{args.request}: must be a JSON object with a model")
    endpoint = Endpoint(args.route.removeprefix("/v1/"))
    try:
        at = parse_instant(args.at) if args.at is not None else None
    except ValueError as exc:
        raise CommandFailed(f"--at {exc}") from None
    result = asyncio.run(explain(compiled.policies, endpoint, request, Principal(app=args.app), request_id=args.request_id, at=at))
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(f"policy version {result['policy_version']}")
    if any(rule["step"] for rule in result["rules"]):
        print(f"request id {result['request_id']} at {result['at']} (staged rules depend on both)")
    for rule in result["rules"]:
        state = "FIRES" if rule["fired"] else ("quiet" if rule["applies"] else "n/a  ")
        mode = _mode_text(rule)
        detail = f"  ({rule['detail']})" if rule["detail"] else ""
        print(f"  {state}  {rule['policy']}/{rule['rule']}: {rule['check']} -> {rule['action']}{mode}{detail}")
    verdict = result["verdict"]
    print(f"verdict: {verdict['action']}" + (f" (rule {verdict['rule']})" if verdict["rule"] else ""))
    return 0


def _mode_text(rule: dict[str, Any]) -> str:
    """`[monitor]` for a monitored rule; a staged rule also names its step and schedule."""
    if rule["step"]:
        return f" [{rule['mode']}, step {rule['step']}: {rule['stage']}]"
    return "" if rule["mode"] == "enforce" else f" [{rule['mode']}]"


def _diff(args: argparse.Namespace) -> int:
    bundles = []
    for directory in (args.old, args.new):
        path = Path(directory)
        if not path.is_dir():
            raise CommandFailed(f"{path}: policy directory not found")
        try:
            bundles.append(compile_bundle(path, Metrics()).bundle)  # both must load: reviewing a broken bundle is moot
        except BundleRejected as exc:
            raise CommandFailed(str(exc)) from None
    result = diff_bundles(*bundles)
    print(json.dumps(result.as_dict(), indent=2) if args.format == "json" else "\n".join(describe(result)))
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return 0


def _sign(args: argparse.Namespace) -> int:
    from gateway.policy import signing  # noqa: PLC0415 - pyjwt and cryptography only for the commands that sign

    compiled = _compile(args, verify_signature=False)  # never sign a bundle that does not load
    bundle = read_bundle(compiled.bundle.root)
    try:
        path = signing.write_signature(bundle, signing.sign_bundle(bundle, Path(args.key), signer=args.signer))
    except signing.SignatureError as exc:
        raise CommandFailed(str(exc)) from None
    print(f"signed version {bundle.version}: {path}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from gateway.policy import signing  # noqa: PLC0415 - as in _sign

    try:
        key_id = signing.generate_keypair(Path(args.private_key), Path(args.public_key))
    except signing.SignatureError as exc:
        raise CommandFailed(str(exc)) from None
    print(f"key id {key_id}: private key {args.private_key}, public key {args.public_key}")
    return 0
