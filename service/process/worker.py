"""One worker process: the app under uvicorn on the supervisor's listening socket.

uvicorn runs through its public API only: `uvicorn.Server(config).run(sockets=[...])` with a
socket the supervisor bound, a stop asked for by setting `should_exit`, uvicorn's own graceful
shutdown (stop accepting, let each request in progress finish with `Connection: close`, close
idle connections, up to `timeout_graceful_shutdown`) and then the app's lifespan shutdown.

Signals, all sent by the supervisor (a worker sits in its own process group, so a terminal's
Ctrl+C reaches the supervisor alone):
- SIGUSR1: drain. Readiness answers 503 at once, the worker keeps serving for
  `DLWP_DRAIN_SECONDS`, then stops accepting (HTTP and gRPC together) and finishes.
- SIGTERM: stop accepting now and finish (uvicorn's own handler). A second SIGINT: stop at once.
A worker whose supervisor is gone stops by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn

from service.process.budget import shutdown_budget
from service.process.drain import DRAIN
from service.process.requests import RequestGuard
from service.settings import Settings

log = logging.getLogger(__name__)

DRAIN_SIGNAL = signal.SIGUSR1
STARTUP_FAILURE = 3  # uvicorn's own exit code when the app's start-up fails
_PARENT_CHECK_S = 1.0


def run(listener: socket.socket, supervisor_pid: int) -> None:
    """Serve on `listener` until told to stop (the target of the supervisor's processes)."""
    # First: without a handler SIGUSR1 would kill the process. One that arrives while the app
    # is being built is kept for the worker to act on.
    early: list[int] = []
    signal.signal(DRAIN_SIGNAL, lambda signum, frame: early.append(signum))
    os.setpgid(0, 0)
    try:
        settings = Settings()
        config = build(settings, listener)
    except Exception:  # a setting or a repository this worker cannot serve: no use retrying
        log.exception("the worker could not start")
        raise SystemExit(STARTUP_FAILURE) from None
    guard = config.app
    assert isinstance(guard, RequestGuard)
    server = uvicorn.Server(config)
    worker = _Worker(server, guard, settings.drain_seconds)
    signal.signal(DRAIN_SIGNAL, worker.on_drain_signal)
    if early:
        worker.on_drain_signal(DRAIN_SIGNAL, None)
    threading.Thread(target=worker.watch_parent, args=(supervisor_pid,), daemon=True,
                     name="watch-supervisor").start()  # fmt: skip
    # uvicorn re-raises the signal that stopped it once it has restored the handlers it found:
    # these let the process end normally (exit 0) after a graceful stop.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _stopped_already)
    server.run(sockets=[listener])
    worker.report()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def build(settings: Settings, listener: socket.socket | None) -> uvicorn.Config:
    """The worker's uvicorn configuration, its app built and wrapped in the `RequestGuard`."""
    from service.process.app import create_app
    from service.process.transport import uvicorn_options

    return uvicorn.Config(
        RequestGuard(create_app(settings), settings.body_timeout_s),
        loop="uvloop",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=shutdown_budget(settings).finish_s,
        **uvicorn_options(settings, listener),
    )


def _stopped_already(signum: int, frame: FrameType | None) -> None:
    """The stop is done: nothing left to do for the signal that asked for it."""


class _Worker:
    def __init__(self, server: uvicorn.Server, guard: RequestGuard, drain_s: float) -> None:
        self.server = server
        self.guard = guard
        self.drain_s = drain_s
        self.signal_at: float | None = None
        self.answered_at_signal = 0
        self.unanswered_at_signal = 0

    def on_drain_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_at is not None:
            return
        DRAIN.begin()
        self.signal_at = time.monotonic()
        self.answered_at_signal = self.guard.answered
        self.unanswered_at_signal = self.guard.unanswered
        # Logged and timed off the signal handler.
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _drain(self) -> None:
        log.info("draining: readiness answers 503, %d requests in progress; %s",
                 self.guard.in_flight, f"serving {self.drain_s:g} s more before refusing "
                 "connections" if self.drain_s else "refusing new connections now")  # fmt: skip
        time.sleep(self.drain_s)
        self.stop()

    def stop(self) -> None:
        log.info("refusing new connections; finishing the %d requests in progress",
                 self.guard.in_flight)  # fmt: skip
        DRAIN.stop_accepting()  # gRPC stops taking calls with HTTP
        self.server.should_exit = True

    def watch_parent(self, supervisor_pid: int) -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(_PARENT_CHECK_S)
        log.warning("the supervisor (pid %d) is gone: stopping", supervisor_pid)
        self.stop()

    def report(self) -> None:
        if self.signal_at is None:
            return
        unanswered = self.guard.unanswered - self.unanswered_at_signal + self.guard.in_flight
        log.info("drain done in %.2f s: %d requests answered since the signal; %d unanswered",
                 time.monotonic() - self.signal_at, self.guard.answered - self.answered_at_signal,
                 unanswered)  # fmt: skip
