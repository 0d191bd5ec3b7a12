"""`gateway auth new-key | hash-key`: application keys for `auth.mode: api_key`.

The config keeps only a key's sha256; the key itself is shown once, to hand to the application.
"""

from __future__ import annotations

import argparse
import sys

from gateway.auth.api_keys import key_digest, new_key


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("auth", help="application API keys", description=__doc__)
    actions = parser.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    create = actions.add_parser("new-key", help="make a key for an app and print it with its config entry")
    create.add_argument("--app", required=True, help="the app the key identifies")
    create.add_argument("--tenant", help="its tenant, for policies and limits")
    create.add_argument("--role", action="append", default=[], help="a role (admin, auditor, reviewer); repeatable")
    create.set_defaults(run=_new_key)
    digest = actions.add_parser("hash-key", help="the sha256 of a key read from standard input (for auth.api_keys)")
    digest.set_defaults(run=_hash_key)


def _new_key(args: argparse.Namespace) -> int:
    key = new_key()
    entry = f"{{sha256: {key_digest(key)}, app: {args.app}"
    if args.tenant:
        entry += f", tenant: {args.tenant}"
    if args.role:
        entry += f", roles: [{', '.join(args.role)}]"
    print(f"key (give it to the app, it is not stored anywhere): {key}")
    print(f"config entry for auth.api_keys:  - {entry}}}")
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("gateway: no key on standard input", file=sys.stderr)
        return 1
    print(key_digest(key))
    return 0
