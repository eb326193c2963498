"""`dlwp serve`: a supervisor process that binds the port and keeps its workers running.

The supervisor imports no model code. It binds the listening socket itself and starts
`DLWP_WORKERS` worker processes (`service.process.worker`) that all serve it. It then watches
them:
- a worker that dies (killed, out of memory, crashed) is replaced, after a back-off when it
  dies soon after starting; with several workers its live gauges leave the summed metrics
  (prometheus_client's `multiprocess.mark_process_dead`);
- a worker that cannot start (exit code 3: a model repository it cannot serve) stops the server,
  which exits 3.

On SIGTERM every worker drains (readiness 503 for `DLWP_DRAIN_SECONDS`, then stop accepting
and answer everything accepted) and the supervisor exits 0 once all have. Ctrl+C (SIGINT) skips
the window; a second Ctrl+C stops the workers at once. Whatever happens, workers still running
past the stop's budget (`service.process.budget`) are killed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from service.observability.logs import configure_logging
from service.observability.metrics import MULTIPROC_ENV
from service.process import worker
from service.process.budget import shutdown_budget
from service.settings import Settings

log = logging.getLogger(__name__)

# A worker that dies sooner than this after starting is restarted after a growing pause.
SHORT_LIFE_S = 10.0
BACKOFF_S = (0.5, 30.0)  # first pause, longest pause
LISTEN_BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), shared by the workers; ValueError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(LISTEN_BACKLOG)
    return sock


@dataclass
class _Slot:
    process: BaseProcess | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # in a row
    start_at: float = field(default=0.0)  # when to (re)start it, while it has no process


class Supervisor:
    def __init__(self, settings: Settings, listener: socket.socket) -> None:
        self.settings = settings
        self.listener = listener
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot() for _ in range(settings.workers)]
        self.stop_signal: int | None = None
        self.stop_deadline = float("inf")
        self.exit_code = 0

    def run(self) -> int:
        """Serve until stopped; the process's exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        host, port = self.listener.getsockname()[:2]
        log.info("listening on http://%s:%d with %d worker%s", host, port, len(self.slots),
                 "s" if len(self.slots) > 1 else "")  # fmt: skip
        while True:
            now = time.monotonic()
            if self.stop_signal is None:
                for slot in self.slots:
                    if slot.process is None and now >= slot.start_at:
                        self._start(slot)
            running = [slot.process for slot in self.slots if slot.process is not None]
            if self.stop_signal is not None and not running:
                return self.exit_code
            if now > self.stop_deadline:
                self._kill_all(running)
            wait([process.sentinel for process in running], timeout=0.5)
            for slot in self.slots:
                if slot.process is not None and slot.process.exitcode is not None:
                    self._reap(slot)

    def _start(self, slot: _Slot) -> None:
        slot.process = self.context.Process(
            target=worker.run, args=(self.listener, os.getpid()), name="dlwp-worker"
        )
        slot.process.start()
        slot.started_at = time.monotonic()

    def _reap(self, slot: _Slot) -> None:
        process, slot.process = slot.process, None
        assert process is not None and process.pid is not None
        pid, code = process.pid, process.exitcode
        process.close()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if self.stop_signal is not None:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL):
                self.exit_code = self.exit_code or 1
            return
        if code == worker.STARTUP_FAILURE:
            log.error("a worker could not start (exit code 3, its log says why): stopping")
            self.exit_code = worker.STARTUP_FAILURE
            self._begin_stop(signal.SIGINT)
            return
        lived = time.monotonic() - slot.started_at
        slot.quick_deaths = slot.quick_deaths + 1 if lived < SHORT_LIFE_S else 0
        pause = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** (slot.quick_deaths - 1)) \
            if slot.quick_deaths else 0.0  # fmt: skip
        log.error("worker %d died (%s) after %.1f s; starting another%s", pid,
                  _describe(code), lived, f" in {pause:g} s" if pause else "")  # fmt: skip
        slot.start_at = time.monotonic() + pause

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self._begin_stop(signum)
        elif signum == signal.SIGINT:  # a second Ctrl+C: stop now, accepted requests or not
            self._send(signal.SIGINT)

    def _begin_stop(self, signum: int) -> None:
        self.stop_signal = signum
        budget = shutdown_budget(self.settings)
        drain = signum == signal.SIGTERM
        self.stop_deadline = time.monotonic() + budget.total_s - (0 if drain else budget.drain_s)
        # The workers' copies keep the port open until each one's drain ends; this one must
        # not hold it after the last of them closed theirs (connections would queue unserved).
        self.listener.close()
        self._send(worker.DRAIN_SIGNAL if drain else signal.SIGTERM)

    def _send(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    os.kill(slot.process.pid, signum)

    def _kill_all(self, running: list[BaseProcess]) -> None:
        log.error("%d workers still running past the stop's budget: killing them", len(running))
        self.exit_code = self.exit_code or 1
        for process in running:
            process.kill()
        self.stop_deadline = float("inf")


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def serve(settings: Settings) -> int:
    """Run the server until it is stopped: the exit code for `dlwp serve`."""
    configure_logging(settings.log_level)
    listener = bind(settings.host, settings.port)
    try:
        return Supervisor(settings, listener).run()
    finally:
        listener.close()
