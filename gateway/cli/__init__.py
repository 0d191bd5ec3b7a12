"""The `gateway` command: one module per subcommand group, dispatched from here.

Failures exit 1 with a one-line reason (no traceback); usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import audit, auth, incident, policy, review, serve
from gateway.cli.audit import AuditCommandFailed
from gateway.cli.policy import CommandFailed
from gateway.cli.remote import RemoteFailed
from gateway.config import ConfigError
from gateway.policy.compiler import BundleRejected


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="AI runtime-control gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands)
    policy.register(commands)
    audit.register(commands)
    auth.register(commands)
    incident.register(commands)
    review.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, CommandFailed, AuditCommandFailed, BundleRejected, RemoteFailed) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gateway: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
