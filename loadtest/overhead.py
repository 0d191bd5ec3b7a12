"""Measures what the gateway adds on top of a bare aiohttp passthrough, against the same fast upstream.

One run starts the fast mock upstream (`upstream.py`), the reference passthrough (`passthrough.py`), the
gateway with 1 worker and the gateway with 2 workers (`gateway serve`, a generated config pointing the
models `bench` and `bench-paced` at the upstream), and runs the same workload against each target:

  direct       the upstream itself (the floor every proxy is compared with)
  passthrough  bare aiohttp server + aiohttp client (the reference of issue 2's targets)
  gateway      `gateway serve --workers 1`
  gateway-2w   `gateway serve --workers 2`

Every round (`--rounds`, default 3) starts fresh passthrough and gateway processes and measures the targets
in turn; the table shows the median over rounds. Phases, per target (see loadtest/README.md for the method):
  (a) saturation: closed loop, `--concurrency` keep-alive connections for `--duration` s, non-streamed chat
      and then streamed chat (stream_options.include_usage); req/s, with wrk when installed
  (b) fixed rate: open loop at `--rate` req/s for 2x`--duration` s, non-streamed chat; p50/p99 latency
  (c) streams: open loop at `--stream-rate` req/s on the paced upstream (first event at once, the rest
      `--paced-ms` apart); time to first body byte, and the spread first->last that proves chunk-by-chunk relay
  (d) CPU per request of the proxy process(es): utime+stime from /proc/PID/stat over each phase / requests
  (e) RSS of every proxy process, sampled every 0.25 s through all phases (max reported)

Pinning (2 cores): the load generator, wrk and the upstream share core 0; the proxy under test (passthrough
or the 1-worker gateway) has core 1 to itself, as in the issue ("each proxy pinned to one core"). The
2-worker gateway is left free on both cores: with 2 cores there is no spare core to give it, so that row
reports what --workers 2 does on this machine (memory, req/s under contention), not a scaling figure.

    python loadtest/overhead.py                 # full run: 3 rounds, ~5 minutes
    python loadtest/overhead.py --quick         # smoke run: 1 round of 2 s phases, under a minute
    python loadtest/overhead.py --profile       # + py-spy profiles of passthrough and gateway at saturation

All servers bind 127.0.0.1. Every loop is bounded; all child processes are killed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import uvloop

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from gateway.testing.redis_server import RedisServer  # noqa: E402
RESULTS_DIR = HERE / "results"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

BACKGROUND_WARN = 0.05  # cores used by other processes during a phase before its figures are flagged
LOADGEN_CORE = 0  # load generator, wrk, upstream
PROXY_CORE = 1  # the proxy under test

CHAT_BODY = {
    "model": "bench",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for a benchmark. Answer in one sentence."},
        {"role": "user", "content": "Summarise why a reverse proxy adds latency, in one short sentence please."},
    ],
    "max_tokens": 64,
    "temperature": 0.2,
}
STREAM_BODY = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
PACED_BODY = {**STREAM_BODY, "model": "bench-paced"}
CHAT_PATH = "/v1/chat/completions"
PACED_PATH = "/paced/v1/chat/completions"  # direct and passthrough; the gateway uses model bench-paced
DONE_TAIL = b"data: [DONE]\n\n"


# -- child processes ----------------------------------------------------------------------------------
class Children:
    """Every process this script starts, each leading its own process group, so it and whatever it
    spawned (gateway workers) are stopped together: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, cores: set[int] | None, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        def preexec() -> None:
            if cores is not None:
                os.sched_setaffinity(0, cores)

        handle = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                env=env, preexec_fn=preexec, start_new_session=True,
            )
        finally:
            handle.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group this script created for the child
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group (workers of a dead supervisor)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


CHILDREN = Children()


def _on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- /proc readings ---------------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), after "pid (comm)"
    return total / CLK_TCK


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, CPU ticks of the process and of the children it has waited for)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        table[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))  # utime stime cutime cstime
    return table


def foreign_ticks(table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """The table without this script's process tree and without kernel threads (loopback networking done
    by ksoftirqd is this benchmark's own work)."""
    ours = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return {pid: ticks for pid, (ppid, ticks) in table.items() if pid not in ours and pid != 2 and ppid != 2}


async def accounted(phase: Any) -> dict[str, Any]:
    """Runs a phase and adds `background_cpu`: cores' worth of CPU that processes outside this benchmark
    used meanwhile (processes alive at both ends of the phase, with the children they reaped). Anything
    above a few percent makes req/s and latency of that phase suspect."""
    before, wall = foreign_ticks(process_table()), time.perf_counter()
    result: dict[str, Any] = await phase
    after, wall = foreign_ticks(process_table()), time.perf_counter() - wall
    deltas = {pid: ticks - before[pid] for pid, ticks in after.items() if pid in before and ticks > before[pid]}
    used = sum(deltas.values()) / CLK_TCK
    result["background_cpu"] = round(used / wall, 3) if wall > 0 else None
    top = sorted(deltas, key=deltas.__getitem__, reverse=True)[:3]
    result["background_top"] = [f"{pid} {cmdline(pid)[:60]!r} {deltas[pid] / CLK_TCK:.2f}s" for pid in top]
    return result


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_KB / 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- a minimal HTTP/1.1 client (raw asyncio Protocol, keep-alive, one request in flight) ------------------
class ClientConn(asyncio.Protocol):
    """Sends prebuilt request bytes and parses the reply (Content-Length or chunked) with timestamps:
    `t_first` when the first body byte arrived, `t_done` when the reply was complete."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.future: asyncio.Future[tuple[int, float, float, bytes]] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.state = "head"
        self.status = 0
        self.need = 0
        self.body = bytearray()
        self.t_first = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.future is not None and not self.future.done():
            self.future.set_exception(ConnectionError("server closed the connection"))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, float, float, bytes]]:
        self._reset()
        self.future = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.future

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        buf = self.buf
        while True:
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                del buf[: end + 4]
                self.status = int(head[9:12])
                if b"\r\ntransfer-encoding: chunked" in head:
                    self.state = "size"
                else:
                    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
                    self.need = int(match.group(1)) if match else 0
                    self.state = "fixed"
            elif self.state == "fixed":
                if buf and not self.t_first:
                    self.t_first = now
                if len(buf) < self.need:
                    return
                self.body += buf[: self.need]
                del buf[: self.need]
                self._finish(now)
            elif self.state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                self.need = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                self.state = "data" if self.need else "trailer"
            elif self.state == "data":
                if buf and not self.t_first:
                    self.t_first = now
                if len(buf) < self.need + 2:
                    return
                self.body += buf[: self.need]
                del buf[: self.need + 2]
                self.state = "size"
            elif self.state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish(now)
            if self.state == "idle":
                return

    def _finish(self, now: float) -> None:
        self.state = "idle"
        if self.future is not None and not self.future.done():
            self.future.set_result((self.status, self.t_first or now, now, bytes(self.body)))


def build_request(port: int, path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: */*\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def connect(port: int) -> ClientConn:
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(loop.create_connection(lambda: ClientConn(loop), HOST, port), 5.0)
    return protocol


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, send -> complete
    ttfb: list[float] = field(default_factory=list)  # seconds, send -> first body byte
    spread: list[float] = field(default_factory=list)  # seconds, first body byte -> complete
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    completed: int = 0
    elapsed: float = 0.0


async def upstream_stats(port: int) -> dict[str, int]:
    """The upstream's counters (GET /_stats); the connection used to ask is not counted in the result."""
    conn = await connect(port)
    try:
        status, _first, _done, body = await asyncio.wait_for(conn.request(f"GET /_stats HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()), 5.0)
    finally:
        conn.transport.close()  # type: ignore[union-attr]
    stats = json.loads(body) if status == 200 else {}
    stats["connections_opened"] = stats.get("connections_opened", 1) - 1
    return stats


def _check(status: int, body: bytes, stream: bool) -> str | None:
    if status != 200:
        return f"http_{status}"
    if stream and not body.endswith(DONE_TAIL):
        return "stream_without_done"
    return None


async def timed_request(conn: ClientConn, request: bytes, stream: bool, samples: Samples) -> tuple[float, ...] | None:
    """One request on `conn`, counted in `samples`: (sent, first byte, done) when the reply was good,
    `()` when it was bad, None when the connection failed (the caller stops using it)."""
    sent = time.perf_counter()
    try:
        status, first, done, body = await asyncio.wait_for(conn.request(request), 30.0)
    except (ConnectionError, asyncio.TimeoutError) as exc:
        samples.errors[type(exc).__name__] += 1
        return None
    error = _check(status, body, stream)
    if error:
        samples.errors[error] += 1
        return ()
    samples.completed += 1
    return sent, first, done


async def closed_loop(port: int, request: bytes, stream: bool, concurrency: int, duration: float) -> Samples:
    """`concurrency` connections, each sending the next request when the previous reply is complete."""
    samples = Samples()
    conns = await asyncio.gather(*(connect(port) for _ in range(concurrency)))
    started = time.perf_counter()
    deadline = started + duration

    async def worker(conn: ClientConn) -> None:
        while time.perf_counter() < deadline and not conn.closed:
            timing = await timed_request(conn, request, stream, samples)
            if timing is None:
                return
            if timing:
                sent, _first, done = timing
                samples.latencies.append(done - sent)

    await asyncio.gather(*(worker(conn) for conn in conns))
    samples.elapsed = time.perf_counter() - started
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return samples


async def open_loop(port: int, request: bytes, stream: bool, rate: float, duration: float, max_conns: int = 512) -> Samples:
    """Requests start on schedule (i / rate) whatever the replies do: latency is not hidden by back-off.

    Latency is measured from the moment the request was written (the event loop timer has ~1 ms
    granularity, so the schedule jitters a little; the measurement does not)."""
    samples = Samples()
    idle: list[ClientConn] = [await connect(port) for _ in range(min(16, max_conns))]
    opened = len(idle)
    tasks: set[asyncio.Task[None]] = set()

    async def one(conn: ClientConn) -> None:
        timing = await timed_request(conn, request, stream, samples)
        if timing is None:
            return
        if timing:
            sent, first, done = timing
            samples.latencies.append(done - sent)
            samples.ttfb.append(first - sent)
            samples.spread.append(done - first)
        if not conn.closed:
            idle.append(conn)

    started = time.perf_counter()
    total = int(rate * duration)
    for index in range(total):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle:
            conn = idle.pop()
        elif opened < max_conns:
            conn = await connect(port)
            opened += 1
        else:
            samples.errors["client_backlog"] += 1  # the target is that far behind: counted, not hidden
            continue
        task = asyncio.create_task(one(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=35.0)
    samples.elapsed = time.perf_counter() - started
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return samples


# -- wrk --------------------------------------------------------------------------------------------------
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class WrkResult:
    requests: int
    elapsed: float
    rps: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None


async def run_wrk(wrk: str, port: int, path: str, body: dict[str, Any], concurrency: int, duration: float, workdir: Path) -> WrkResult:
    script = workdir / f"wrk-{abs(hash((path, json.dumps(body))))}.lua"
    script.write_text(WRK_SCRIPT.format(body=_lua_string(json.dumps(body, separators=(",", ":")))))
    seconds = max(1, round(duration))
    argv = ["taskset", "-c", str(LOADGEN_CORE), wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://{HOST}:{port}{path}"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    text = output.decode(errors="replace")
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(3)]
    requests, elapsed = int(match.group(1)), float(match.group(2)) * scale
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(group) for group in socket_errors.groups())

    def percentile(name: str) -> float | None:
        found = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        if not found:
            return None
        return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]

    rps = (requests - errors) / elapsed if elapsed else 0.0
    return WrkResult(requests, elapsed, rps, errors, percentile("50"), percentile("99"))


# -- targets ------------------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None  # None: nothing of ours to measure (never happens today)
    paced_path: str = PACED_PATH
    paced_model: str = "bench-paced"
    workers: list[int] = field(default_factory=list)  # PIDs whose CPU and RSS are the target's

    def pids(self) -> list[int]:
        return self.workers


class RssSampler:
    """Samples the RSS of the given PIDs every `interval` seconds while running (max kept per PID)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.max_mb: dict[int, float] = {}
        self._pids: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def watch(self, pids: list[int]) -> None:
        self._pids = list(pids)

    async def _run(self) -> None:
        while True:
            for pid in self._pids:
                value = rss_mb(pid)
                if value > self.max_mb.get(pid, 0.0):
                    self.max_mb[pid] = value
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} during start-up; log: {log}\n{log.read_text()[-2000:]}")
        try:
            conn = await connect(port)
            status, *_ = await asyncio.wait_for(conn.request(request), 2.0)
            conn.transport.close()  # type: ignore[union-attr]
            if status == 200:
                return
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"port {port} not ready after {timeout:.0f}s; log: {log}")


def shipped_policies(workdir: Path) -> None:
    """The shipped packs, with the example model allow-list extended by the benchmark's model name."""
    target = workdir / "policies"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO / "policies", target)
    allow_list = target / "models.yaml"
    allow_list.write_text(allow_list.read_text().replace('allow: ["mock-*",', 'allow: ["bench*", "mock-*",'))


def gateway_config(path: Path, port: int, upstream_port: int, workdir: Path, redis_url: str | None = None) -> None:
    """The benchmark's gateway config (JSON is YAML): one OpenAI-compatible provider per upstream path."""
    (workdir / "policies").mkdir(exist_ok=True)
    config = {
        "listen": {"host": HOST, "port": port},
        "providers": {
            "bench": {"kind": "openai", "base_url": f"http://{HOST}:{upstream_port}/v1"},
            "bench-paced": {"kind": "openai", "base_url": f"http://{HOST}:{upstream_port}/paced/v1"},
        },
        "models": {
            "bench": {"targets": [{"provider": "bench", "model": "bench"}]},
            "bench-paced": {"targets": [{"provider": "bench-paced", "model": "bench"}]},
        },
        "policies": {"dir": str(workdir / "policies"), "reload": "off"},
        "store": {"local_dir": str(workdir / "store")},
        "limits": {"drain_timeout_s": 2},
    }
    if redis_url is not None:  # the audit trail in a Redis stream (the spool stays empty while Redis is up)
        config["store"] = {"backend": "redis", "redis_url": redis_url, "key_prefix": f"{path.stem}:"}
        config["audit"] = {"spool_dir": str(workdir / "spool")}
    path.write_text(json.dumps(config, indent=2))


async def start_gateway(
    name: str, workers: int, upstream_port: int, workdir: Path, cores: set[int] | None, label: str = "", *,
    policies: bool = False, redis_url: str | None = None,
) -> Target:
    port = free_port()
    config = workdir / f"{name}.yaml"
    home = workdir / name  # each gateway its own policies dir and audit store
    home.mkdir(exist_ok=True)
    if policies:
        shipped_policies(home)
    gateway_config(config, port, upstream_port, home, redis_url)
    log = workdir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)]
    proc = CHILDREN.start(argv, cores=cores, log=log, env=env)
    await wait_ready(port, proc, 30.0, log)
    target = Target(label or name, port, proc, paced_path=CHAT_PATH)
    if workers == 1:
        target.workers = [proc.pid]
    else:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = [pid for pid in children_of(proc.pid) if "spawn_main" in cmdline(pid)]
            if len(found) >= workers:
                target.workers = found[:workers]
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"{name}: expected {workers} worker processes under {proc.pid}")
        await asyncio.sleep(1.0)  # every worker has bound its socket
    return target


# -- phases -------------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 4)


async def saturate(target: Target, args: argparse.Namespace, stream: bool, workdir: Path) -> dict[str, Any]:
    body = STREAM_BODY if stream else CHAT_BODY
    request = build_request(target.port, CHAT_PATH, body)
    # warm-up: connections, caches, the proxy's upstream pool
    await closed_loop(target.port, request, stream, min(args.concurrency, 16), args.warmup)
    pids = target.pids()
    up_before = await upstream_stats(args.upstream_port)
    cpu_before, wall_before = cpu_seconds(pids), time.perf_counter()
    if args.wrk:
        result = await run_wrk(args.wrk, target.port, CHAT_PATH, body, args.concurrency, args.duration, workdir)
        completed, errors, elapsed = result.requests - result.errors, result.errors, result.elapsed
        p50, p99, tool = result.p50_ms, result.p99_ms, "wrk"
    else:
        samples = await closed_loop(target.port, request, stream, args.concurrency, args.duration)
        completed, errors, elapsed = samples.completed, sum(samples.errors.values()), samples.elapsed
        p50, p99, tool = ms(pct(samples.latencies, 50)), ms(pct(samples.latencies, 99)), "python"
    cpu = cpu_seconds(pids) - cpu_before
    wall = time.perf_counter() - wall_before
    up_after = await upstream_stats(args.upstream_port)
    return {
        "upstream_connections_opened": up_after["connections_opened"] - up_before["connections_opened"],
        "tool": tool, "requests": completed, "errors": errors, "seconds": round(elapsed, 3),
        "rps": round(completed / elapsed, 1) if elapsed else 0.0,
        "p50_ms": p50, "p99_ms": p99,
        "cpu_s": round(cpu, 3), "cpu_us_per_req": round(cpu / completed * 1e6, 1) if completed else None,
        "cpu_util": round(cpu / wall, 3) if wall else None,
    }


async def fixed_rate(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    request = build_request(target.port, CHAT_PATH, CHAT_BODY)
    await open_loop(target.port, request, False, args.rate, args.warmup)
    pids = target.pids()
    up_before = await upstream_stats(args.upstream_port)
    cpu_before = cpu_seconds(pids)
    samples = await open_loop(target.port, request, False, args.rate, args.duration * 2)
    cpu = cpu_seconds(pids) - cpu_before
    up_after = await upstream_stats(args.upstream_port)
    return {
        "upstream_connections_opened": up_after["connections_opened"] - up_before["connections_opened"],
        "rate": args.rate, "requests": samples.completed, "errors": dict(samples.errors), "seconds": round(samples.elapsed, 3),
        "p50_ms": ms(pct(samples.latencies, 50)), "p90_ms": ms(pct(samples.latencies, 90)),
        "p99_ms": ms(pct(samples.latencies, 99)), "max_ms": ms(max(samples.latencies, default=None)),
        "mean_ms": ms(statistics.fmean(samples.latencies)) if samples.latencies else None,
        "cpu_us_per_req": round(cpu / samples.completed * 1e6, 1) if samples.completed else None,
    }


async def streams(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    body = {**PACED_BODY, "model": target.paced_model}
    request = build_request(target.port, target.paced_path, body)
    await open_loop(target.port, request, True, args.stream_rate, args.warmup)
    up_before = await upstream_stats(args.upstream_port)
    samples = await open_loop(target.port, request, True, args.stream_rate, args.duration)
    up_after = await upstream_stats(args.upstream_port)
    expected_spread_ms = args.paced_ms * (args.chunks + 3)  # events after the first: N content, finish, usage, [DONE]
    return {
        "rate": args.stream_rate, "requests": samples.completed, "errors": dict(samples.errors),
        "upstream_connections_opened": up_after["connections_opened"] - up_before["connections_opened"],
        "ttfb_p50_ms": ms(pct(samples.ttfb, 50)), "ttfb_p99_ms": ms(pct(samples.ttfb, 99)),
        "ttfb_mean_ms": ms(statistics.fmean(samples.ttfb)) if samples.ttfb else None,
        "spread_p50_ms": ms(pct(samples.spread, 50)), "expected_spread_ms": expected_spread_ms,
        # chunk by chunk: the first event reached the client long before the last one left the upstream
        "relayed_incrementally": bool(samples.spread) and (pct(samples.spread, 50) or 0) * 1000 > 0.8 * expected_spread_ms,
    }


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The load generator's own garbage collector must not stall reply handling (it would show up as
    proxy latency): collect before a phase, then keep the collector off while the phase runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def measure(target: Target, args: argparse.Namespace, workdir: Path, sampler: RssSampler) -> dict[str, Any]:
    sampler.watch(target.pids())
    with no_gc_pauses():
        return await _measure(target, args, workdir, sampler)


async def _measure(target: Target, args: argparse.Namespace, workdir: Path, sampler: RssSampler) -> dict[str, Any]:
    print(f"  {target.name}: saturation (chat) ...", flush=True)
    chat = await accounted(saturate(target, args, False, workdir))
    print(f"    {chat['rps']:.0f} req/s, {chat['cpu_us_per_req']} us CPU/req, errors {chat['errors']}", flush=True)
    print(f"  {target.name}: saturation (stream) ...", flush=True)
    stream = await accounted(saturate(target, args, True, workdir))
    print(f"    {stream['rps']:.0f} streams/s, {stream['cpu_us_per_req']} us CPU/stream, errors {stream['errors']}", flush=True)
    print(f"  {target.name}: fixed rate {args.rate:g} req/s ...", flush=True)
    fixed = await accounted(fixed_rate(target, args))
    print(f"    p50 {fixed['p50_ms']} ms, p99 {fixed['p99_ms']} ms, errors {fixed['errors']}", flush=True)
    print(f"  {target.name}: paced streams at {args.stream_rate:g}/s ...", flush=True)
    ttfb = await accounted(streams(target, args))
    print(f"    TTFB p50 {ttfb['ttfb_p50_ms']} ms, p99 {ttfb['ttfb_p99_ms']} ms, spread {ttfb['spread_p50_ms']} ms, "
          f"upstream connections opened {ttfb['upstream_connections_opened']} for {ttfb['requests']} streams, errors {ttfb['errors']}", flush=True)
    rss = [round(sampler.max_mb.get(pid, 0.0), 1) for pid in target.pids()]  # per worker, in worker order
    background = max(phase["background_cpu"] or 0.0 for phase in (chat, stream, fixed, ttfb))
    if background > BACKGROUND_WARN:
        print(f"    warning: other processes used up to {background:.2f} cores during {target.name}'s phases: "
              "req/s and latency are suspect (CPU per request much less so)", flush=True)
    return {"saturation_chat": chat, "saturation_stream": stream, "fixed_rate": fixed, "streams": ttfb, "rss_max_mb": rss}


# -- py-spy ---------------------------------------------------------------------------------------------
async def profile(target: Target, args: argparse.Namespace, workdir: Path, stamp: str) -> dict[str, Any] | None:
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("  py-spy not installed (pip install py-spy): no profile", flush=True)
        return None
    pid = target.pids()[0]
    out = RESULTS_DIR / f"profile-{target.name}-{stamp}.txt"
    seconds = max(8, round(args.duration))
    # Blocking mode (py-spy pauses the process for each sample): slower for the target, but every stack is
    # consistent; --nonblocking reads stacks while they change and garbles async call chains.
    argv = ["taskset", "-c", str(LOADGEN_CORE), pyspy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
            "--threads", "--duration", str(seconds), "--output", str(out)]
    spy = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        await asyncio.sleep(0.5)
        stream = args.profile == "stream"
        body = STREAM_BODY if stream else CHAT_BODY
        if args.wrk:
            await run_wrk(args.wrk, target.port, CHAT_PATH, body, args.concurrency, seconds + 1, workdir)
        else:
            await closed_loop(target.port, build_request(target.port, CHAT_PATH, body), stream, args.concurrency, seconds + 1)
        await asyncio.wait_for(spy.wait(), 30)
    finally:
        if spy.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spy.pid, signal.SIGKILL)
            await spy.wait()
    if not out.exists():
        print(f"  py-spy wrote nothing for {target.name}: {(await spy.stderr.read()).decode()[-500:] if spy.stderr else ''}", flush=True)
        return None
    summary = summarise_profile(out)
    summary["file"] = str(out.relative_to(REPO))
    return summary


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/gateway/", "/loadtest/", "/lib/python3"):
        index = path.find(marker)
        if index >= 0:
            path = path[index + len(marker):] if marker != "/gateway/" else "gateway/" + path[index + len(marker):]
            break
    return f"{match.group('func')} ({path})"


def summarise_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Shares of the event-loop thread's samples, from py-spy's raw output (collapsed stacks, --threads):

    self       the function on top of the stack
    inclusive  the function anywhere on the stack
    gateway    the innermost frame in gateway/ code (entry points excluded): what a gateway function costs
               with the library calls it makes; samples with none are the framework's own (aiohttp, asyncio)
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    innermost: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        raw = [frame for frame in stack.split(";") if frame.strip()]
        thread = "all"
        if raw and raw[0].startswith("thread ("):
            thread = raw[0].rsplit(":", 1)[-1].strip()
            raw = raw[1:]
        threads[thread] += samples
        if thread not in ("MainThread", "all"):
            continue
        total += samples
        frames = [_frame_key(frame) for frame in raw]
        if frames:
            own[frames[-1]] += samples
        for key in set(frames):
            inclusive[key] += samples
        ours = [key for key in frames if key.split(" (", 1)[-1].startswith("gateway/") and not _ENTRY_POINTS.search(key)]
        innermost[ours[-1] if ours else "(framework only: aiohttp, asyncio, uvloop)"] += samples

    def shares(counter: collections.Counter[str], limit: int) -> list[list[Any]]:
        return [[key, round(100 * value / total, 1) if total else 0.0] for key, value in counter.most_common(limit)]

    return {
        "samples": total,
        "threads": dict(threads),
        "self": shares(own, top),
        "inclusive": shares(inclusive, top * 2),
        "gateway": shares(innermost, top),
    }


_ENTRY_POINTS = re.compile(r"\(gateway/(__main__|cli/|server/)")


# -- report ---------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def compute_summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    direct = results.get("direct")
    rows: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        fixed, ttfb = result["fixed_rate"], result["streams"]
        row = {
            "rps": result["saturation_chat"]["rps"],
            "stream_rps": result["saturation_stream"]["rps"],
            "cpu_us_per_req": result["saturation_chat"]["cpu_us_per_req"],
            "cpu_us_per_stream": result["saturation_stream"]["cpu_us_per_req"],
            "cpu_us_per_req_at_rate": fixed["cpu_us_per_req"],
            "p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"],
            "ttfb_p50_ms": ttfb["ttfb_p50_ms"], "ttfb_p99_ms": ttfb["ttfb_p99_ms"],
            "relayed_incrementally": ttfb["relayed_incrementally"],
            # upstream connections the target opened while relaying paced streams (reuse: ~0)
            "stream_upstream_conns": ttfb["upstream_connections_opened"],
            "rss_max_mb": max(result["rss_max_mb"], default=None),
            "background_cpu": max(result[phase]["background_cpu"] or 0.0 for phase in ("saturation_chat", "saturation_stream", "fixed_rate", "streams")),
            "errors": result["saturation_chat"]["errors"] + result["saturation_stream"]["errors"]
            + sum(fixed["errors"].values()) + sum(ttfb["errors"].values()),
        }
        if direct is not None and name != "direct":
            d_fixed, d_ttfb = direct["fixed_rate"], direct["streams"]
            row["added_p50_ms"] = _sub(fixed["p50_ms"], d_fixed["p50_ms"])
            row["added_p99_ms"] = _sub(fixed["p99_ms"], d_fixed["p99_ms"])
            row["ttfb_overhead_ms"] = _sub(ttfb["ttfb_p50_ms"], d_ttfb["ttfb_p50_ms"])
        rows[name] = row
    summary: dict[str, Any] = {"rows": rows}
    reference, gateway = rows.get("passthrough"), rows.get("gateway")
    if reference and gateway:
        ratios = {
            "throughput": _div(gateway["rps"], reference["rps"]),
            "cpu_per_request": _div(gateway["cpu_us_per_req"], reference["cpu_us_per_req"]),
            "cpu_per_request_at_rate": _div(gateway["cpu_us_per_req_at_rate"], reference["cpu_us_per_req_at_rate"]),
            "cpu_per_stream": _div(gateway["cpu_us_per_stream"], reference["cpu_us_per_stream"]),
            "added_latency_p50": _div(gateway.get("added_p50_ms"), reference.get("added_p50_ms")),
            "added_latency_p99": _div(gateway.get("added_p99_ms"), reference.get("added_p99_ms")),
            "ttfb_difference_ms": _sub(gateway["ttfb_p50_ms"], reference["ttfb_p50_ms"]),
        }
        worker_rss = [value for name in ("gateway", "gateway-2w") if name in results for value in results[name]["rss_max_mb"]]
        targets = {
            "throughput >= 0.70x passthrough": _ok(ratios["throughput"], lambda v: v >= 0.70),
            "CPU per request <= 1.4x passthrough": _ok(ratios["cpu_per_request"], lambda v: v <= 1.4),
            "added latency p50 <= 1.3x passthrough": _ok(ratios["added_latency_p50"], lambda v: v <= 1.3),
            "added latency p99 <= 1.3x passthrough": _ok(ratios["added_latency_p99"], lambda v: v <= 1.3),
            "stream TTFB within 0.5 ms of passthrough": _ok(ratios["ttfb_difference_ms"], lambda v: v <= 0.5),
            "streams relayed chunk by chunk": gateway["relayed_incrementally"],
            "RSS < 80 MB per worker under load": bool(worker_rss) and max(worker_rss) < 80,
        }
        summary["ratios"] = ratios
        summary["targets"] = targets
    redis_row = rows.get("gateway-redis")
    if gateway and redis_row:
        summary["redis_audit"] = {
            "throughput_vs_gateway": _div(redis_row["rps"], gateway["rps"]),
            "cpu_us_per_req_added": _sub(redis_row["cpu_us_per_req"], gateway["cpu_us_per_req"]),
            "added_p50_vs_gateway": _div(redis_row.get("added_p50_ms"), gateway.get("added_p50_ms")),
        }
    enforcing = rows.get("gateway-policies")
    if gateway and enforcing:
        summary["policies"] = {
            "throughput_vs_gateway": _div(enforcing["rps"], gateway["rps"]),
            "cpu_us_per_req_added": _sub(enforcing["cpu_us_per_req"], gateway["cpu_us_per_req"]),
            "cpu_per_request_vs_passthrough": _div(enforcing["cpu_us_per_req"], reference["cpu_us_per_req"]) if reference else None,
            "added_p50_ms_vs_gateway": _sub(enforcing.get("added_p50_ms"), gateway.get("added_p50_ms")),
            "ttfb_difference_ms_vs_gateway": _sub(enforcing["ttfb_p50_ms"], gateway["ttfb_p50_ms"]),
        }
    return summary


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b or b <= 0 else round(a / b, 3)


def _ok(value: float | None, test: Any) -> bool | None:
    return None if value is None else bool(test(value))


def print_report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    rows = summary["rows"]
    header = ["target", "req/s", "streams/s", "CPU us/req", "CPU us/stream", "CPU us/req@rate",
              f"p50@{args.rate:g}", f"p99@{args.rate:g}", "+p50", "+p99", "TTFB p50", "TTFB +", "up.conns", "RSS MB", "errors", "bg CPU"]
    table = [header]
    for name, row in rows.items():
        table.append([
            name, _fmt(row["rps"], 0), _fmt(row["stream_rps"], 0),
            _fmt(row["cpu_us_per_req"], 0) if name != "direct" else f"({_fmt(row['cpu_us_per_req'], 0)})",
            _fmt(row["cpu_us_per_stream"], 0) if name != "direct" else f"({_fmt(row['cpu_us_per_stream'], 0)})",
            _fmt(row["cpu_us_per_req_at_rate"], 0) if name != "direct" else f"({_fmt(row['cpu_us_per_req_at_rate'], 0)})",
            _fmt(row["p50_ms"], 3), _fmt(row["p99_ms"], 3),
            _fmt(row.get("added_p50_ms"), 3), _fmt(row.get("added_p99_ms"), 3),
            _fmt(row["ttfb_p50_ms"], 3), _fmt(row.get("ttfb_overhead_ms"), 3), _fmt(row["stream_upstream_conns"]),
            _fmt(row["rss_max_mb"], 1) if name != "direct" else f"({_fmt(row['rss_max_mb'], 1)})", str(row["errors"]),
            f"{row['background_cpu']:.2f}" + ("!" if row["background_cpu"] > BACKGROUND_WARN else ""),
        ])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print()
    print("latencies in ms; (direct): CPU and RSS of the upstream itself; +: added vs direct; "
          "up.conns: upstream connections opened during the paced-stream phase (a pooling proxy: ~0);\n"
          f"bg CPU: cores used by other processes during the target's phases (max; '!' above {BACKGROUND_WARN}: figures suspect)")
    for index, line in enumerate(table):
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(line, widths))))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    if summary.get("per_round"):
        print()
        print("per round (CPU us/req at saturation; gateway/passthrough ratios):")
        for number, one in enumerate(summary["per_round"], start=1):
            cells = [f"{name} {values['cpu_us_per_req']:.0f}" for name, values in one["cpu"].items() if values.get("cpu_us_per_req") is not None]
            ratio = one.get("ratios", {})
            print(f"  round {number}: " + ", ".join(cells)
                  + f"; throughput {_fmt(ratio.get('throughput'), 3)}, CPU {_fmt(ratio.get('cpu_per_request'), 3)}")
    if "ratios" in summary:
        ratios = summary["ratios"]
        print()
        print("gateway (1 worker) vs passthrough:")
        print(f"  throughput ratio          {_fmt(ratios['throughput'], 3)}   (target >= 0.70)")
        print(f"  CPU per request ratio     {_fmt(ratios['cpu_per_request'], 3)}   (target <= 1.4; at {args.rate:g} req/s: {_fmt(ratios['cpu_per_request_at_rate'], 3)}; per stream: {_fmt(ratios['cpu_per_stream'], 3)})")
        print(f"  added latency ratio p50   {_fmt(ratios['added_latency_p50'], 3)}   (target <= 1.3)")
        print(f"  added latency ratio p99   {_fmt(ratios['added_latency_p99'], 3)}   (target <= 1.3)")
        print(f"  stream TTFB difference    {_fmt(ratios['ttfb_difference_ms'], 3)} ms (target <= 0.5 ms)")
        print()
        for name, ok in summary["targets"].items():
            print(f"  [{'met ' if ok else 'MISS' if ok is not None else ' ?  '}] {name}")
    if "redis_audit" in summary:
        cost = summary["redis_audit"]
        print()
        print("gateway with the audit trail in Redis vs the local file (1 worker each):")
        print(f"  throughput ratio          {_fmt(cost['throughput_vs_gateway'], 3)}")
        print(f"  CPU per request added     {_fmt(cost['cpu_us_per_req_added'], 0)} us")
        print(f"  added latency p50 ratio   {_fmt(cost['added_p50_vs_gateway'], 3)}   (target <= 1.10)")
    if "policies" in summary:
        cost = summary["policies"]
        print()
        print("gateway enforcing the shipped policy packs vs the gateway with none (1 worker each):")
        print(f"  throughput ratio          {_fmt(cost['throughput_vs_gateway'], 3)}")
        print(f"  CPU per request added     {_fmt(cost['cpu_us_per_req_added'], 0)} us (vs passthrough: {_fmt(cost['cpu_per_request_vs_passthrough'], 3)}x)")
        print(f"  added latency p50         {_fmt(cost['added_p50_ms_vs_gateway'], 3)} ms; stream TTFB {_fmt(cost['ttfb_difference_ms_vs_gateway'], 3)} ms")


def source_info() -> dict[str, Any]:
    """Which gateway code was measured: the commit, and a digest of gateway/ as it is on disk (it may be
    ahead of the commit)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "gateway").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    info: dict[str, Any] = {"gateway_tree_sha256": digest.hexdigest()[:16]}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "gateway"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        info["gateway_uncommitted_changes"] = [line[3:] for line in changed.splitlines()]
    return info


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for module in ("aiohttp", "uvloop", "orjson", "multidict", "yarl"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(), **versions}


# -- main ---------------------------------------------------------------------------------------------------------
async def start_passthrough(upstream_port: int, workdir: Path, cores: set[int] | None) -> Target:
    port = free_port()
    log = workdir / "passthrough.log"
    proc = CHILDREN.start([sys.executable, str(HERE / "passthrough.py"), "--port", str(port), "--upstream", f"http://{HOST}:{upstream_port}"],
                          cores=cores, log=log)
    await wait_ready(port, proc, 15.0, log)
    return Target("passthrough", port, proc, workers=[proc.pid])


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    os.sched_setaffinity(0, {LOADGEN_CORE})
    cores = set(range(os.cpu_count() or 1))
    proxy_cores = {PROXY_CORE} if len(cores) >= 2 else None
    upstream_port = free_port()
    args.upstream_port = upstream_port
    upstream_log = workdir / "upstream.log"
    upstream = CHILDREN.start(
        [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port), "--chunks", str(args.chunks), "--paced-ms", str(args.paced_ms),
         "--terminator-gap-ms", str(args.terminator_gap_ms)],
        cores={LOADGEN_CORE}, log=upstream_log,
    )
    await wait_ready(upstream_port, upstream, 15.0, upstream_log)
    redis = RedisServer().start() if "gateway-redis" in args.targets else None
    if redis is not None and redis.process is not None:
        os.sched_setaffinity(redis.process.pid, {LOADGEN_CORE})  # shares the load generator's core
    direct = Target("direct", upstream_port, upstream, workers=[upstream.pid])
    rounds: list[dict[str, dict[str, Any]]] = []
    profiles: dict[str, Any] = {}
    sampler = RssSampler()
    sampler.start()
    try:
        # Each round starts fresh proxy processes: CPU per request differs by up to ~10% from one process
        # start to the next on this VM (memory layout), so the medians over rounds are what is reported.
        # The targets take turns within a round, so a slow spell of the machine hits all of them.
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}", flush=True)
            targets = [direct] if "direct" in args.targets else []
            if "passthrough" in args.targets:
                targets.append(await start_passthrough(upstream_port, workdir, proxy_cores))
            gateways = (("gateway", 1, proxy_cores), ("gateway-policies", 1, proxy_cores), ("gateway-redis", 1, proxy_cores), ("gateway-2w", 2, cores))
            for name, workers, pin in gateways:
                if name in args.targets:
                    print(f"  starting {name} (gateway serve --workers {workers}) ...", flush=True)
                    targets.append(await start_gateway(
                        f"{name}-r{number + 1}", workers, upstream_port, workdir, pin, label=name,
                        policies=name == "gateway-policies", redis_url=redis.url if redis and name == "gateway-redis" else None,
                    ))
            try:
                rounds.append({target.name: await measure(target, args, workdir, sampler) for target in targets})
                if args.profile and number == args.rounds - 1:
                    for target in targets:
                        if target.name in ("gateway", "passthrough"):
                            print(f"  profiling {target.name} with py-spy ...", flush=True)
                            profiles[target.name] = await profile(target, args, workdir, args.stamp)
            finally:
                for target in targets:
                    if target is not direct and target.proc is not None:
                        CHILDREN.stop(target.proc)
    finally:
        await sampler.stop()
        if redis is not None:
            redis.close()
    results = {name: median_result([one[name] for one in rounds]) for name in rounds[0]} if rounds else {}
    return {"results": results, "rounds": rounds if args.rounds > 1 else [], "profiles": profiles}


def median_result(values: list[Any]) -> Any:
    """Per-round results merged: numbers by their median, error counts summed, flags all-true."""
    first = values[0]
    if len(values) == 1:
        return first
    if isinstance(first, dict):
        merged: dict[str, Any] = {}
        for key in first:
            column = [value.get(key) for value in values if isinstance(value, dict)]
            if key == "errors" and all(isinstance(item, dict) for item in column):
                total: collections.Counter[str] = collections.Counter()
                for item in column:
                    total.update(item)
                merged[key] = dict(total)
            elif key == "errors":
                merged[key] = sum(item or 0 for item in column)
            elif key == "rss_max_mb":  # per worker: the largest seen in any round
                merged[key] = [max(worker) for worker in zip(*column)]
            else:
                merged[key] = median_result(column)
        return merged
    if isinstance(first, bool):
        return all(values)
    if all(isinstance(value, int) for value in values):
        return int(statistics.median_low(values))
    if all(isinstance(value, (int, float)) for value in values):
        return statistics.median(values)
    return first


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase and round (fixed rate: twice this; default 4)")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed request rate of the latency phase (default 200 req/s)")
    parser.add_argument("--stream-rate", type=float, default=50.0, help="paced streams per second in the TTFB phase (default 50)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections in the saturation phases (default 64)")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each phase (default 0.5)")
    parser.add_argument("--chunks", type=int, default=5, help="content chunks per upstream stream (default 5)")
    parser.add_argument("--paced-ms", type=float, default=5.0, help="gap between events of a paced stream (default 5)")
    parser.add_argument("--terminator-gap-ms", type=float, default=0.0,
                        help="paced streams: the upstream ends the HTTP body this long after [DONE] (default 0: together)")
    parser.add_argument("--targets", default="direct,passthrough,gateway,gateway-policies,gateway-redis,gateway-2w",
                        help="comma-separated subset to run (gateway-policies: 1 worker enforcing the shipped packs; "
                        "gateway-redis: 1 worker with the audit trail in a local Redis)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="saturation client: wrk when installed (auto), or the built-in one")
    parser.add_argument("--profile", nargs="?", const="chat", choices=("chat", "stream"),
                        help="also record py-spy profiles (raw collapsed stacks) of gateway and passthrough at saturation, of plain chat (the default) or streamed chat")
    parser.add_argument("--rounds", type=int, default=None, help="rounds, each with fresh proxy processes, targets in turns; medians reported (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (2 s phases)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (configs, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = set(args.targets) - {"direct", "passthrough", "gateway", "gateway-policies", "gateway-redis", "gateway-2w"}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    if not 1 <= args.concurrency <= 1000 or not 0 < args.rate <= 20000 or not 0 < args.duration <= 600:
        parser.error("out of range: --concurrency 1..1000, --rate 0..20000, --duration 0..600")
    wrk = shutil.which("wrk")
    if args.loadgen == "wrk" and not wrk:
        parser.error("wrk is not installed (apt-get install wrk), use --loadgen python")
    args.wrk = wrk if args.loadgen in ("auto", "wrk") else None
    if args.wrk and not shutil.which("taskset"):
        args.wrk = None
    args.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores; pinning disabled, figures will mix load generator and proxy", file=sys.stderr)
    RESULTS_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    atexit.register(CHILDREN.stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    started = time.monotonic()
    print(f"overhead run {args.stamp}: phases of {args.duration:g}s, concurrency {args.concurrency}, rate {args.rate:g} req/s, "
          f"saturation client {'wrk' if args.wrk else 'built-in (python)'}; workdir {workdir}", flush=True)
    try:
        outcome = uvloop.run(run(args, workdir))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping child processes", file=sys.stderr)
        return 130
    finally:
        CHILDREN.stop_all()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = compute_summary(outcome["results"])
    if outcome["rounds"]:
        per_round = []
        for one in outcome["rounds"]:
            partial = compute_summary(one)
            per_round.append({
                "cpu": {name: {"cpu_us_per_req": row["cpu_us_per_req"], "rps": row["rps"]} for name, row in partial["rows"].items() if name != "direct"},
                "ratios": partial.get("ratios", {}),
            })
        summary["per_round"] = per_round
    print_report(summary, args)
    for name, prof in outcome["profiles"].items():
        if not prof:
            continue
        print(f"\npy-spy {name}: {prof['samples']} event-loop samples ({prof['file']})")
        print("  by innermost gateway function (with the library calls it makes):" if name.startswith("gateway") else "  top self time:")
        for key, share in (prof["gateway"] if name.startswith("gateway") else prof["self"])[:15]:
            print(f"  {share:5.1f}%  {key}")
    document = {
        "timestamp": args.stamp,
        "command": " ".join([Path(sys.argv[0]).name if sys.argv else "overhead.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "source": source_info(),
        "settings": {key: getattr(args, key) for key in ("duration", "rate", "stream_rate", "concurrency", "warmup", "chunks", "paced_ms", "terminator_gap_ms", "targets", "rounds", "quick")},
        "loadgen": "wrk" if args.wrk else "python",
        "pinning": {"loadgen_and_upstream": [LOADGEN_CORE], "passthrough_and_gateway_1w": [PROXY_CORE], "gateway_2w": "unpinned (all cores)"},
        "wall_seconds": round(time.monotonic() - started, 1),
        **outcome, "summary": summary,
    }
    out = RESULTS_DIR / f"overhead-{args.stamp}.json"
    out.write_text(json.dumps(document, indent=2))
    print(f"\nresults: {out.relative_to(REPO)} ({document['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
