"""A worker tunes the garbage collector before serving, so its pauses stay off the request path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.server.worker import YOUNG_GC_THRESHOLD
from support import free_port

PROBE = """
import asyncio, gc, os, signal, sys
from gateway.config import load_config
from gateway.server.worker import serve_forever

async def main() -> None:
    ready = asyncio.Event()
    serving = asyncio.create_task(serve_forever(load_config(sys.argv[1]), reuse_port=False, ready=ready))
    await ready.wait()
    print("frozen", gc.get_freeze_count(), "young", len(gc.get_objects()), "threshold", gc.get_threshold()[0], flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own drain path ends it
    await serving

asyncio.run(main())
"""


def test_worker_freezes_the_startup_heap_and_collects_young_objects_less_often(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"listen: {{host: 127.0.0.1, port: {free_port()}}}\nstore: {{local_dir: {tmp_path / 'store'}}}\n"
        "providers: {mock: {kind: mock}}\nmodels: {m: {targets: [{provider: mock}]}}\n"
    )
    done = subprocess.run([sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, frozen, _, young, _, threshold = done.stdout.split()
    assert int(frozen) > 20_000  # modules, the app, its components: everything built before the first request
    assert int(young) < int(frozen) // 10
    assert int(threshold) == YOUNG_GC_THRESHOLD > 700  # no young collections every ~100 requests
