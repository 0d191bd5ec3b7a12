"""Shared fixtures: a fake upstream and the gateway, both real servers on 127.0.0.1 in a background loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
import socket
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.config import parse_config
from gateway.testing.redis_server import RedisServer
from gateway.testing.threads import GatewayServer, LoopThread
from gateway.testing.upstream import FakeUpstream
from support import async_sdk_client, fake_provider, sdk_client


@pytest.fixture(scope="session")
def server_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def upstream(server_loop: LoopThread) -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    server_loop.run(fake.start())
    yield fake
    server_loop.run(fake.close())


def base_config(upstream: FakeUpstream, tmp_path: Path) -> dict[str, Any]:
    """A config with the fake upstream as `fake` (model gpt-test) and the built-in mock (mock-gpt)."""
    return {
        "providers": {
            "fake": fake_provider(upstream.base_url),
            "mock": {"kind": "mock"},
        },
        "models": {
            "gpt-test": {"targets": [{"provider": "fake", "model": "fake-model"}]},
            "mock-gpt": {"targets": [{"provider": "mock"}]},
            "mock-embedding": {"targets": [{"provider": "mock"}]},
        },
        "store": {"local_dir": str(tmp_path / "store")},
        "limits": {"drain_timeout_s": 5},
        "policies": {"dir": str(tmp_path / "policies")},  # absent unless a test writes policies there
    }


GatewayFactory = Callable[..., GatewayServer]


@pytest.fixture
def make_gateway(server_loop: LoopThread, upstream: FakeUpstream, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Starts a gateway; `overrides` are merged (one level deep) into `base_config`."""
    started: list[GatewayServer] = []

    def factory(**overrides: Any) -> GatewayServer:
        data = base_config(upstream, tmp_path)
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        server = GatewayServer(parse_config(data, "test-config"))
        server_loop.run(server.start())
        started.append(server)
        return server

    yield factory
    for server in started:
        server_loop.run(server.stop())


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> GatewayServer:
    return make_gateway()


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    """The official SDK, pointed at the gateway; retries off so every failure is seen once."""
    with sdk_client(gateway) as sdk:
        yield sdk


@pytest.fixture
async def async_client(gateway: GatewayServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official async SDK, pointed at the gateway; retries off."""
    client = async_sdk_client(gateway)
    yield client
    await client.close()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """Where the gateways of `make_gateway` keep their local store (audit.jsonl)."""
    return tmp_path / "store"


@pytest.fixture
def backup(server_loop: LoopThread) -> Iterator[FakeUpstream]:
    """A second fake upstream: the fallback target of routing tests."""
    fake = FakeUpstream()
    server_loop.run(fake.start())
    yield fake
    server_loop.run(fake.close())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (tests keep apart by key prefix); outage tests start their own."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so tests sharing the session's Redis never see each other's keys."""
    return f"t{abs(hash(request.node.nodeid)) % 10**10}:"


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A listener on 127.0.0.1 whose accept queue is full: new connections are never established."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
