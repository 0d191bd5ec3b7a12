"""Graceful shutdown of `gateway serve`: SIGTERM stops accepting, lets open streams finish, then exits 0."""

from __future__ import annotations

import json
from pathlib import Path

from support import GatewayProcess, connection_refused, free_port, local_gateway, read_audit, sdk_client, wait_until, write_yaml

# 14 content chunks at 100 ms each: a stream takes about 1.5 s, long enough to signal the server mid-stream.
PROMPT = "one two three four five six seven eight nine ten eleven twelve"
CONFIG = """\
providers:
  mock: {kind: mock, chunk_delay_ms: 100}
models:
  mock-gpt: {targets: [{provider: mock}]}
limits: {drain_timeout_s: 15}
store: {local_dir: store}
"""


def test_sigterm_drains_an_open_stream_and_exits_0(tmp_path: Path) -> None:
    write_yaml(tmp_path / "gw.yaml", CONFIG)
    port = free_port()
    process = GatewayProcess(tmp_path, "--config", "gw.yaml", "--port", str(port))
    try:
        process.wait_ready(f"http://127.0.0.1:{port}")
        with sdk_client(local_gateway(port)) as client:
            with client.chat.completions.with_streaming_response.create(
                model="mock-gpt", messages=[{"role": "user", "content": PROMPT}], stream=True, extra_headers={"x-request-id": "drain-1"}
            ) as response:
                lines = response.iter_lines()
                first = next(line for line in lines if line)
                assert first.startswith("data: {")
                process.terminate()  # mid-stream
                wait_until(lambda: connection_refused("127.0.0.1", port), timeout=10, what="the listener to close")
                assert process.process.poll() is None  # still draining the open stream
                rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert not any('"error"' in line for line in rest)
        text = "".join(
            choice["delta"].get("content") or ""
            for line in [first, *rest[:-1]]
            for choice in json.loads(line[len("data: ") :])["choices"]
        )
        assert text == "Mock reply: " + PROMPT
        assert process.wait() == 0
        records = [r for r in read_audit(tmp_path / "store") if r["request_id"] == "drain-1"]
        assert len(records) == 1
        assert (records[0]["outcome"], records[0]["http_status"]) == ("ok", 200)
        assert "Traceback" not in process.stderr
    finally:
        process.kill()


def test_sigterm_when_idle_exits_0_promptly(tmp_path: Path) -> None:
    write_yaml(tmp_path / "gw.yaml", CONFIG)
    port = free_port()
    process = GatewayProcess(tmp_path, "--config", "gw.yaml", "--port", str(port))
    try:
        process.wait_ready(f"http://127.0.0.1:{port}")
        with sdk_client(local_gateway(port)) as client:  # an idle keep-alive connection must not hold the shutdown up
            client.models.list()
            process.terminate()
            assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr
    finally:
        process.kill()
