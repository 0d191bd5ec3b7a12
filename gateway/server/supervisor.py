"""Runs `workers` processes that share one port through SO_REUSEPORT, and stops them together.

The supervisor prepares the Prometheus multiprocess directory before any worker starts, forwards SIGHUP
(policy reload) and SIGTERM/SIGINT to the workers (each reloads or drains on its own), replaces a worker
that dies unexpectedly, and exits 0 once all workers have stopped after a signal.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.context import SpawnProcess

from prometheus_client import multiprocess

from gateway.config.model import GatewayConfig
from gateway.http.admin import SUPERVISOR_ENV
from gateway.metrics import MULTIPROC_ENV
from gateway.server.worker import run_worker

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0
QUICK_DEATH_S = 5.0  # a worker dying sooner than this after its start is failing, not crashing
MAX_QUICK_DEATHS = 3


def _worker_main(config: GatewayConfig, log_level: int) -> None:
    logging.basicConfig(level=log_level, format=f"%(asctime)s worker-{os.getpid()} %(levelname)s %(name)s: %(message)s")
    run_worker(config, reuse_port=True)


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # spawn, not fork: each worker imports prometheus_client fresh, after the multiprocess env is set.
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[SpawnProcess] = []
        self._started_at: dict[int, float] = {}
        self._stopping = False

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._forward_reload)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        try:
            self._workers = [self._start() for _ in range(self.config.workers)]
            log.info("supervisor %d started %d workers on http://%s:%d", os.getpid(), len(self._workers), self.config.listen.host, self.config.listen.port)
            return self._watch()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _start(self) -> SpawnProcess:
        process = self._context.Process(target=_worker_main, args=(self.config, logging.getLogger().level), daemon=False)
        process.start()
        self._started_at[id(process)] = time.monotonic()
        return process

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("supervisor: %s received, draining %d workers", signal.Signals(signum).name, len(self._workers))
        for process in self._workers:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)

    def _forward_reload(self, _signum: int, _frame: object) -> None:
        """SIGHUP (from an operator, or a worker that took an admin reload): every worker reloads."""
        for process in self._workers:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGHUP)

    def _watch(self) -> int:
        failed = False
        quick_deaths = 0
        while self._workers:
            time.sleep(0.2)
            for index, process in enumerate(list(self._workers)):
                if process.is_alive():
                    continue
                multiprocess.mark_process_dead(process.pid)
                if self._stopping:
                    self._workers.remove(process)
                    failed = failed or process.exitcode != 0
                    continue
                lived = time.monotonic() - self._started_at.pop(id(process), 0.0)
                quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_S else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    log.error("workers keep failing at start (last exit code %s); stopping", process.exitcode)
                    self._workers.remove(process)
                    self._on_signal(signal.SIGTERM, None)
                    failed = True
                    continue
                log.error("worker %s exited with %s; starting a replacement", process.pid, process.exitcode)
                time.sleep(RESTART_BACKOFF_S)
                self._workers[index] = self._start()
        return 1 if failed else 0
