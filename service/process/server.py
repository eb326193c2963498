"""Running uvicorn so that a stop loses nothing: a drain window, then every accepted request.

On SIGTERM a worker keeps serving for `DLWP_DRAIN_SECONDS` while readiness answers 503 (so a
balancer or Kubernetes stops sending), then stops accepting connections, answers every request
it had accepted (queued rows included) and exits 0. Ctrl+C (SIGINT) skips the window; a second
Ctrl+C stops at once. With several workers, uvicorn's supervisor passes the signal on to each,
and each drains the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

from service.process.drain import DRAIN
from service.settings import Settings

log = logging.getLogger(__name__)

# A connection with no request in progress after the listener closed is closed once seen idle
# this long and this many times (each look follows a turn of the loop that reads sockets): bytes
# a client sent just before are read and parsed first, however busy the loop was.
IDLE_GRACE_S = 0.3
IDLE_LOOKS = 3


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float = 0.0) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._exit_at: float | None = None
        self._signal_at = 0.0
        self._in_flight_at_signal = 0
        self._requests_at_signal = 0
        self._announce: str | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn's own handler would stop at once and re-raise the signal on the way out (so
        # the process would die of it); this one drains, then exits 0.
        if self._exit_at is not None:
            if sig == signal.SIGINT:  # a second Ctrl+C: stop now, accepted requests or not
                self.should_exit = self.force_exit = True
            return
        window = self.drain_seconds if sig == signal.SIGTERM else 0.0
        DRAIN.begin()
        self._signal_at = time.monotonic()
        self._exit_at = self._signal_at + window
        self._in_flight_at_signal = _in_flight(self.server_state.connections)
        self._requests_at_signal = self.server_state.total_requests
        # Logged from the loop, not from inside the signal handler.
        self._announce = (
            f"{signal.Signals(sig).name}: draining: readiness answers 503, "
            f"{self._in_flight_at_signal} requests in progress; "
            + (f"serving {window:g} s more before refusing connections" if window else
               "refusing new connections now")
        )  # fmt: skip

    async def on_tick(self, counter: int) -> bool:
        if self._announce is not None:
            log.info("%s", self._announce)
            self._announce = None
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._announce is not None:
            log.info("%s", self._announce)
        # Connections waiting in the listen backlog were accepted by the kernel on our behalf
        # (their clients have sent their requests): take them all, then close the listener at
        # once, so nothing is left to be reset.
        backlog = _take_backlog(list(sockets or []) + [s for v in self.servers for s in v.sockets])
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await self._serve_taken(backlog)
        connections = self.server_state.connections
        answered_at_stop = self.server_state.total_requests  # counts finished responses
        log.info("refusing new connections; finishing the %d requests in progress",
                 _in_flight(connections))  # fmt: skip
        finished = await self._finish_accepted(self.config.timeout_graceful_shutdown or 30.0)
        for task in self.server_state.tasks:
            task.cancel(msg="the graceful stop ran out of time")
        unfinished = _in_flight(connections)
        for connection in list(connections):
            connection.shutdown()
        for server in self.servers:
            await server.wait_closed()
        answered = self.server_state.total_requests
        log.info(
            "drain done in %.2f s: %d requests answered since the signal, %d of them after "
            "refusing new connections; %d unanswered",
            time.monotonic() - self._signal_at, answered - self._requests_at_signal,
            answered - answered_at_stop, unfinished,
        )  # fmt: skip
        if not finished:
            log.error("the graceful stop timed out with %d requests unanswered", unfinished)
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _serve_taken(self, connections: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state,
                app_state=self.lifespan.state, _loop=loop,
            )  # fmt: skip

        for connection in connections:
            try:
                await loop.connect_accepted_socket(protocol, connection)
            except OSError:  # the client has gone already
                connection.close()

    async def _finish_accepted(self, timeout_s: float) -> bool:
        """Let every request in progress finish (its response says Connection: close) and close
        idle connections; True once none is left, False at the timeout or on a forced exit."""
        deadline = time.monotonic() + timeout_s
        idle_since: dict[Any, tuple[float, int]] = {}
        while self.server_state.connections or self.server_state.tasks:
            now = time.monotonic()
            if self.force_exit or now > deadline:
                return False
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    cycle.keep_alive = False
                    idle_since.pop(connection, None)
                else:
                    since, looks = idle_since.get(connection, (now, 0))
                    idle_since[connection] = (since, looks + 1)
                    if looks + 1 >= IDLE_LOOKS and now - since >= IDLE_GRACE_S:
                        connection.shutdown()  # closes one with no request in progress
            await asyncio.sleep(0.02)
        return True


def _take_backlog(listeners: list[Any]) -> list[socket.socket]:
    """Accept every connection queued on the listening sockets, without blocking."""
    taken = []
    for listener in listeners:
        with socket.socket(fileno=os.dup(listener.fileno())) as sock:
            sock.setblocking(False)
            while True:
                try:
                    connection, _ = sock.accept()
                except OSError:  # nothing more queued (BlockingIOError), or already closed
                    break
                taken.append(connection)
    return taken


def _in_flight(connections: set[Any]) -> int:
    return sum(
        1
        for c in connections
        if getattr(c, "cycle", None) is not None and not c.cycle.response_complete
    )


class _Supervisor(multiprocess.Multiprocess):
    def terminate_all(self) -> None:
        # The workers keep accepting until each one's drain ends. The supervisor's own copy of
        # the listening socket must not keep it open after the last worker closed theirs: new
        # connections would queue where nobody accepts them, then be reset.
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


class _DrainingProcess(multiprocess.Process):
    """A uvicorn worker process that runs the draining server."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            # Built in the worker: its settings come from the environment it inherited.
            self._server = DrainingServer(self.config, Settings().drain_seconds)
        return self._server


def serve(config: uvicorn.Config, settings: Settings) -> None:
    """Run `config` like `uvicorn.run` would, with the draining server in every worker."""
    if config.workers > 1:
        # The supervisor builds each worker (first start, restart, SIGHUP) from this
        # module-level name; the class travels to the spawned child by reference.
        setattr(multiprocess, "Process", _DrainingProcess)  # noqa: B010
        _Supervisor(config, sockets=[config.bind_socket()]).run()
        return
    config.load_app()
    server = DrainingServer(config, settings.drain_seconds)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE
