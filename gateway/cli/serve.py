"""`gateway serve`: run the gateway (the embedded default when there is no config file)."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from gateway.auth import build_authenticator
from gateway.config import ConfigError, load_config, with_overrides
from gateway.config.model import GatewayConfig
from gateway.metrics import Metrics
from gateway.policy.compiler import compile_bundle
from gateway.server.supervisor import Supervisor
from gateway.server.worker import run_worker

log = logging.getLogger("gateway")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("serve", help="run the gateway", description=__doc__)
    parser.add_argument("--config", help="config file (default: $GATEWAY_CONFIG or ./gateway.yaml; none: embedded default)")
    parser.add_argument("--host", help="listen address (overrides listen.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    parser.add_argument("--workers", type=_positive, help="worker processes sharing the port (overrides workers)")
    parser.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "INFO"), choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.set_defaults(run=run)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = with_overrides(load_config(args.config), args.host, args.port, args.workers)
    _check_port_free(config)
    _check_policies(config)
    _check_auth(config)
    if config.source == "<embedded default>":
        log.info("no config file: embedded default (built-in mock provider, local audit in %s)", config.store.local_dir)
    if config.workers == 1:
        run_worker(config, reuse_port=False)
        return 0
    return Supervisor(config).run()


def _check_policies(config: GatewayConfig) -> None:
    """Refuse to start on a bundle that does not load (each worker loads it again on its own)."""
    if config.policies.dir.is_dir() or config.policies.signature_keys:
        compiled = compile_bundle(
            config.policies.dir, Metrics(), signature_keys=config.policies.signature_keys, known_models=config.models
        )
        log.info("policies: %d rules in %s, version %s", compiled.policies.rule_count, config.policies.dir, compiled.bundle.version[:12])


def _check_auth(config: GatewayConfig) -> None:
    """Read the JWT keys once here, so a missing or unusable key file stops the start with one line."""
    try:
        build_authenticator(config.auth)
    except ValueError as exc:
        raise ConfigError(f"{config.source}: auth.jwt: {exc}") from None


def _check_port_free(config: GatewayConfig) -> None:
    """Fail fast with one clear line, before any worker starts, when the address is taken.

    Workers bind with SO_REUSEPORT, which would otherwise let a second gateway share a port silently.
    """
    host, port = config.listen.host, config.listen.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
