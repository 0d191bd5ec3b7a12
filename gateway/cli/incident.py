"""`gateway incident status|block|fallback|clear`: the incident switches of a running gateway.

`block` refuses every request (503 `incident_block`) and `fallback MODEL` sends every chat and
completions request to MODEL, for every app or, with `--app`, for one app (an app's switch overrides the
global one). Every instance sharing the store follows within about a second, and the change is audited
with your identity: the command calls the admin API of the gateway at `--url` (default `$GATEWAY_URL`, else
the config's listen address) with `--token` (default `$GATEWAY_TOKEN`), a credential with the admin role.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any
from urllib.parse import quote

from gateway.cli.remote import add_remote_arguments, call


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("incident", help="stop traffic, or force it onto one model, on every instance", description=__doc__)
    actions = parser.add_subparsers(dest="incident_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Any, *, scoped: bool = True) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        add_remote_arguments(sub)
        if scoped:
            sub.add_argument("--app", help="only this app's traffic (default: every app)")
        sub.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
        sub.set_defaults(run=run)
        return sub

    action("status", "the incident switches that are on", _status, scoped=False)
    block = action("block", "refuse every request with 503 incident_block", _block)
    block.add_argument("--reason", required=True, help="why (shown to callers and kept in the audit trail)")
    fallback = action("fallback", "send every chat and completions request to MODEL (embeddings are not moved)", _fallback)
    fallback.add_argument("model", help="a model this gateway serves")
    fallback.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    clear = action("clear", "switch it off: traffic flows as configured again", _clear)
    clear.add_argument("--reason", help="why (kept in the audit trail)")


def _path(app: str | None) -> str:
    return "/admin/incidents/global" if app is None else f"/admin/incidents/apps/{quote(app, safe='')}"


def _status(args: argparse.Namespace) -> int:
    return _show(args, call(args, "GET", "/admin/incidents"))


def _block(args: argparse.Namespace) -> int:
    return _show(args, call(args, "POST", _path(args.app), {"action": "block", "reason": args.reason}))


def _fallback(args: argparse.Namespace) -> int:
    return _show(args, call(args, "POST", _path(args.app), {"action": "fallback", "model": args.model, "reason": args.reason}))


def _clear(args: argparse.Namespace) -> int:
    body = {"action": "clear", **({"reason": args.reason} if args.reason else {})}
    return _show(args, call(args, "POST", _path(args.app), body))


def _show(args: argparse.Namespace, state: Any) -> int:
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        print("\n".join(describe(state)))
    return 0


def describe(state: dict[str, Any]) -> list[str]:
    """The switches as an operator reads them, one line each: the global one first, then each app's."""
    switches = [("global", state.get("global"))] + [(f"app {app}", switch) for app, switch in (state.get("apps") or {}).items()]
    lines = [_line(scope, switch) for scope, switch in switches if switch]
    return lines or ["no incident switch is on: traffic flows as configured"]


def _line(scope: str, switch: dict[str, Any]) -> str:
    action = switch.get("action")
    what = f"fallback -> {switch.get('model')}" if action == "fallback" else str(action)
    since = dt.datetime.fromtimestamp(float(switch.get("since") or 0), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{scope:<20} {what:<28} since {since} by {switch.get('actor')}: {switch.get('reason')}"
