"""The gateway on the Redis store: every exchange in the stream, readable, verifiable, and never lost."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import redis

from gateway.audit.backends import RECORD_FIELD
from gateway.testing.redis_server import RedisServer
from support import get, metric_sum, parse_metrics, run_gateway, sdk_client, wait_until, write_yaml


def redis_store(server: RedisServer, prefix: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "store": {"backend": "redis", "redis_url": server.url, "key_prefix": prefix},
        "audit": {"spool_dir": str(tmp_path / "spool")},
    }


def stream_records(server: RedisServer, key: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(server.url)
    try:
        return [orjson.loads(fields[RECORD_FIELD]) for _, fields in client.xrange(key)]
    finally:
        client.close()


def cli_config(tmp_path: Path, server: RedisServer, prefix: str) -> Path:
    return write_yaml(
        tmp_path / "cli.yaml",
        f"providers: {{mock: {{kind: mock}}}}\nmodels: {{mock-gpt: {{targets: [{{provider: mock}}]}}}}\n"
        f"store: {{backend: redis, redis_url: '{server.url}', key_prefix: '{prefix}'}}\n",
    )


def test_exchanges_are_in_the_stream_and_the_cli_reads_them(make_gateway: Any, redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    gateway = make_gateway(**redis_store(redis_server, redis_prefix, tmp_path))
    with sdk_client(gateway) as client:
        raws = [client.chat.completions.with_raw_response.create(model="mock-gpt", messages=[{"role": "user", "content": f"hi {n}"}]) for n in range(5)]
    ids = [raw.headers["x-request-id"] for raw in raws]
    key = redis_prefix + "audit"
    wait_until(lambda: {r.get("request_id") for r in stream_records(redis_server, key)} >= set(ids), what="the exchanges in the stream")
    config = cli_config(tmp_path, redis_server, redis_prefix)

    tail = run_gateway("audit", "tail", "--config", str(config), "-n", "3", cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert [line.split()[1] for line in tail.stdout.splitlines()] == ids[-3:]

    show = run_gateway("audit", "show", ids[0], "--config", str(config), cwd=tmp_path)
    assert show.returncode == 0 and ids[0] in show.stdout and "attempt    mock/mock-gpt status=200" in show.stdout
    as_json = json.loads(run_gateway("audit", "show", ids[0], "--config", str(config), "--json", cwd=tmp_path).stdout)
    assert as_json[0]["request_id"] == ids[0] and as_json[0]["seq"] >= 1

    filtered = run_gateway("audit", "tail", "--config", str(config), "--filter", f"request_id={ids[2]}", "--json", cwd=tmp_path)
    assert [json.loads(line)["request_id"] for line in filtered.stdout.splitlines()] == [ids[2]]

    verified = run_gateway("audit", "verify", "--config", str(config), cwd=tmp_path)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: ")

    admin = get(f"{gateway.url}/admin/audit/{ids[1]}").json()
    assert [r["request_id"] for r in admin["records"]] == [ids[1]]
    assert get(f"{gateway.url}/admin/audit/no-such-request").status == 404


def test_verify_finds_a_deleted_record_and_an_edited_export(make_gateway: Any, redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    gateway = make_gateway(**redis_store(redis_server, redis_prefix, tmp_path))
    with sdk_client(gateway) as client:
        for n in range(6):
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"hi {n}"}])
    key = redis_prefix + "audit"
    wait_until(lambda: len(stream_records(redis_server, key)) >= 6, what="six records")
    config = cli_config(tmp_path, redis_server, redis_prefix)
    export = run_gateway("audit", "export", "--since", "1h", "--config", str(config), cwd=tmp_path)
    lines = export.stdout.splitlines()
    assert len(lines) >= 6
    edited = json.loads(lines[2])
    edited["http_status"] = 500
    lines[2] = json.dumps(edited)
    (tmp_path / "edited.jsonl").write_text("\n".join(lines) + "\n")
    broken = run_gateway("audit", "verify", "--file", "edited.jsonl", cwd=tmp_path)
    assert broken.returncode == 1 and "edited" in broken.stderr
    client = redis.Redis.from_url(redis_server.url)
    entries = client.xrange(key)
    client.xdel(key, entries[3][0])
    client.close()
    deleted = run_gateway("audit", "verify", "--config", str(config), cwd=tmp_path)
    assert deleted.returncode == 1 and "BROKEN" in deleted.stderr


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    server = RedisServer(persistent=True).start()
    yield server
    server.close()


def test_requests_keep_being_served_and_no_record_is_lost_when_redis_dies(make_gateway: Any, outage_redis: RedisServer, tmp_path: Path) -> None:
    gateway = make_gateway(**redis_store(outage_redis, "gw:", tmp_path))
    ids = []
    with sdk_client(gateway) as client:
        for n in range(300):
            if n == 100:
                outage_redis.stop()
            if n == 200:
                outage_redis.start()
            raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=[{"role": "user", "content": f"n {n}"}])
            assert raw.http_response.status_code == 200
            ids.append(raw.headers["x-request-id"])
    wait_until(lambda: {r["request_id"] for r in stream_records(outage_redis, "gw:audit")} >= set(ids), timeout=30, what="every record in the stream")
    config = cli_config(tmp_path, outage_redis, "gw:")
    verified = run_gateway("audit", "verify", "--config", str(config), "--json", cwd=tmp_path)
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"], report
    exchanges = {r["id"] for r in stream_records(outage_redis, "gw:audit") if r["kind"] == "exchange"}
    assert len(exchanges) == 300  # one per request: none lost, replayed duplicates collapse by id
    samples = get(f"{gateway.url}/metrics").body.decode()
    assert 'gateway_audit_records_total{outcome="spooled"}' in samples


CANARIES = ["sk-canary-6f1d2e3c4b5a69788796a5b4c3d2e1f0", "canary.person@example.org", "AKIACANARY0123456789"]


def test_no_prompt_or_reply_text_reaches_redis_or_the_logs(make_gateway: Any, redis_server: RedisServer, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway(**redis_store(redis_server, redis_prefix, tmp_path))
    with sdk_client(gateway) as client:
        for canary in CANARIES:
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"remember {canary}"}])
            stream = client.chat.completions.create(model="mock-gpt", stream=True, messages=[{"role": "user", "content": f"and {canary}"}])
            assert canary in "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    key = redis_prefix + "audit"
    wait_until(lambda: len(stream_records(redis_server, key)) >= 2 * len(CANARIES), what="the records")
    client = redis.Redis.from_url(redis_server.url)
    dump = []
    for name in client.scan_iter(match=f"{redis_prefix}*"):
        dump.append(name)
        kind = client.type(name)
        if kind == b"stream":
            dump.extend(value for _, fields in client.xrange(name) for pair in fields.items() for value in pair)
        elif kind == b"string":
            dump.append(client.get(name) or b"")
    client.close()
    blob = b"\n".join(dump)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for canary in CANARIES:
        assert canary.encode() not in blob
        assert canary not in logs
    assert b"request_hmac" in blob  # the content is there, as digests


def test_when_even_the_spool_is_full_on_unavailable_decides(make_gateway: Any, outage_redis: RedisServer, tmp_path: Path) -> None:
    outage_redis.stop()
    tight = {"spool_dir": str(tmp_path / "spool"), "spool_max_bytes": 1024, "queue_size": 3}
    closed = make_gateway(store={"backend": "redis", "redis_url": outage_redis.url, "key_prefix": "c:"}, audit={**tight, "on_unavailable": "closed"})
    statuses = []
    with sdk_client(closed) as client:
        for n in range(12):
            try:
                client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"n {n}"}])
                statuses.append(200)
            except openai.APIStatusError as error:
                assert error.response.json()["error"]["code"] == "audit_unavailable"
                statuses.append(error.status_code)
            time.sleep(0.05)
    assert statuses[0] == 200 and 503 in statuses
    assert get(f"{closed.url}/readyz").json()["checks"]["audit"] == "backlogged"
    served = statuses.count(200)
    outage_redis.start()
    wait_until(lambda: len(stream_records(outage_redis, "c:audit")) >= 12, timeout=20, what="every record, 503s included")
    exchanges = [r for r in stream_records(outage_redis, "c:audit") if r["kind"] == "exchange"]
    assert sorted(r["http_status"] for r in exchanges).count(200) == served


def test_on_unavailable_open_serves_and_counts(make_gateway: Any, outage_redis: RedisServer, tmp_path: Path) -> None:
    outage_redis.stop()
    tight = {"spool_dir": str(tmp_path / "spool"), "spool_max_bytes": 1024, "queue_size": 3}
    gateway = make_gateway(store={"backend": "redis", "redis_url": outage_redis.url, "key_prefix": "o:"}, audit={**tight, "on_unavailable": "open"})
    with sdk_client(gateway) as client:
        for n in range(12):
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"n {n}"}])
            time.sleep(0.05)
    backlogged = lambda: metric_sum(parse_metrics(get(f"{gateway.url}/metrics").body.decode()), "gateway_audit_backlogged_exchanges_total")  # noqa: E731
    wait_until(lambda: backlogged() > 0, what="exchanges counted as served with a full backlog")
    outage_redis.start()
    wait_until(lambda: len([r for r in stream_records(outage_redis, "o:audit") if r["kind"] == "exchange"]) == 12, timeout=20, what="all twelve records")
