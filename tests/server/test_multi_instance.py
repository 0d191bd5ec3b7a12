"""Two `gateway serve` processes on one Redis, as on Kubernetes: what one instance does, the other sees.

One scenario, in the order an operator meets these: a review decided on instance B resumes the client
waiting on instance A; a kill switch and an incident switch flipped on one reach the other; a policy change
reaches both; one rate limit is shared; and the audit chains stay one per instance and verify together.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.testing.redis_server import RedisServer
from gateway.testing.upstream import FakeUpstream
from support import GatewayProcess, free_port, local_gateway, run_gateway, sdk_client, wait_until, write_yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "review"))
from review_support import Reviewer, escalate_policy, in_background  # noqa: E402

OPERATOR_KEY, APP_KEY = "sk-operator", "sk-app"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config(tmp_path: Path, name: str, port: int, upstream: FakeUpstream, redis: RedisServer, prefix: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "providers": {"fake": {"kind": "openai", "base_url": upstream.base_url, "api_key": "sk-provider"}},
        "models": {
            "gpt-test": {"targets": [{"provider": "fake", "model": "fake-model"}]},
            "gpt-limited": {"targets": [{"provider": "fake", "model": "fake-model"}]},
        },
        "auth": {"mode": "api_key", "api_keys": [
            {"sha256": _sha(OPERATOR_KEY), "app": "ops", "roles": ["admin", "reviewer", "auditor"]},
            {"sha256": _sha(APP_KEY), "app": "billing"},
        ]},
        "rate_limits": [{"per": "app", "requests_per_minute": 4, "models": ["gpt-limited"]}],
        "policies": {"dir": str(tmp_path / "policies"), "reload": "watch"},
        "store": {"backend": "redis", "redis_url": redis.url, "key_prefix": prefix, "local_dir": str(directory / "var")},
        "audit": {"spool_dir": str(directory / "spool")},
    }
    return write_yaml(directory / "gateway.yaml", json.dumps(config))  # JSON is YAML


def _ask(gateway: Any, key: str, text: str = "hello", model: str = "gpt-test") -> Any:
    with sdk_client(gateway, api_key=key) as client:
        return client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])


@pytest.mark.timeout(180)
def test_two_instances_on_one_redis(tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer, redis_prefix: str) -> None:
    escalate_policy(tmp_path / "policies", wait_s=30)
    ports = free_port(), free_port()
    configs = [_config(tmp_path, name, port, upstream, redis_server, redis_prefix) for name, port in zip("ab", ports, strict=True)]
    with GatewayProcess(tmp_path / "a", "--config", str(configs[0])) as first, GatewayProcess(tmp_path / "b", "--config", str(configs[1])) as second:
        a, b = local_gateway(ports[0]), local_gateway(ports[1])
        first.wait_ready(a.url)
        second.wait_ready(b.url)
        operator_a, operator_b = Reviewer(a.url, OPERATOR_KEY), Reviewer(b.url, OPERATOR_KEY)

        # A review decided on B resumes the client waiting on A.
        waiting = in_background(lambda: _ask(a, APP_KEY, "please refund 900 dollars"))
        item = operator_b.wait_for_item(queue="finance", state="pending")
        assert operator_b.decide(item["id"], "approve", comment="ok")[0] == 200
        answer = waiting.result(timeout=20)
        assert answer.parse().choices[0].message.content and answer.headers["x-gateway-decision"] == "escalate"

        # A kill switch flipped on A reaches B; an incident switch flipped on B reaches A.
        status, _ = operator_a.call("POST", "/admin/routes/gpt-test/targets/0/disable", {"reason": "drill"})
        assert status == 200
        wait_until(lambda: operator_b.call("GET", "/admin/routes")[1]["routes"]["gpt-test"][0]["disabled"], timeout=5, what="kill switch on B")
        operator_a.call("POST", "/admin/routes/gpt-test/targets/0/enable", {})
        assert operator_b.call("POST", "/admin/incidents/global", {"action": "block", "reason": "drill"})[0] == 200

        def blocked_on_a() -> bool:
            with pytest.raises(openai.APIStatusError) as refused:
                _ask(a, APP_KEY)
            return refused.value.status_code == 503

        wait_until(blocked_on_a, timeout=5, what="incident block on A")
        assert operator_b.call("POST", "/admin/incidents/global", {"action": "clear"})[0] == 200
        wait_until(lambda: _ask(a, APP_KEY).status_code == 200, timeout=5, what="incident cleared on A")

        # A policy change reaches both (each watches its policy directory: a ConfigMap on Kubernetes).
        before = _ask(a, APP_KEY).headers["x-gateway-policy-version"]
        escalate_policy(tmp_path / "policies", word="chargeback", wait_s=30)

        def versions() -> set[str] | None:
            seen = {_ask(gateway, APP_KEY).headers["x-gateway-policy-version"] for gateway in (a, b)}
            return seen if len(seen) == 1 and before not in seen else None

        assert wait_until(versions, timeout=10, what="the new policy version on both instances")

        # One rate limit across both: 4 requests a minute for the app on gpt-limited, wherever they land.
        statuses = []
        for gateway in (a, b, a, b, a):
            try:
                statuses.append(_ask(gateway, APP_KEY, model="gpt-limited").status_code)
            except openai.RateLimitError:
                statuses.append(429)
        assert statuses == [200, 200, 200, 200, 429]

    # One hash chain per instance, and together they verify.
    verified = run_gateway("audit", "verify", "--config", str(configs[0]), "--json", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["instances"] == 2 and report["records"] >= 10


@pytest.mark.timeout(120)
def test_the_workers_of_one_instance_share_the_local_review_queue(tmp_path: Path, upstream: FakeUpstream) -> None:
    """`--workers 2` on the local store: the waiting request, the reviewer's calls and the app's fetch each
    land on whichever worker the kernel picks, and all of them see one queue."""
    escalate_policy(tmp_path / "policies", wait_s=30)
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "providers": {"fake": {"kind": "openai", "base_url": upstream.base_url}},
        "models": {"gpt-test": {"targets": [{"provider": "fake", "model": "fake-model"}]}},
        "policies": {"dir": str(tmp_path / "policies")},
        "store": {"local_dir": str(tmp_path / "var")},
    }
    path = write_yaml(tmp_path / "gateway.yaml", json.dumps(config))
    with GatewayProcess(tmp_path, "--config", str(path), "--workers", "2") as gateway:
        local = local_gateway(port)
        gateway.wait_ready(local.url)
        reviewer = Reviewer(local.url)
        for _ in range(3):  # each round: new connections, so new draws of the workers
            waiting = in_background(lambda: _ask(local, "unused", "please refund 900 dollars"))
            item = reviewer.wait_for_item(queue="finance", state="pending")
            assert reviewer.call("POST", f"/admin/reviews/{item['id']}/claim")[0] == 200
            assert reviewer.decide(item["id"], "approve")[0] == 200
            assert waiting.result(timeout=20).parse().choices[0].message.content
        for _ in range(6):  # every worker lists the same three decided reviews
            assert len(reviewer.items(state="approved")) == 3
    assert len(upstream.received) == 3
