"""Connection-level protection under uvicorn: deadlines for slow clients and a connection cap.

uvicorn bounds the idle time between requests on a kept-alive connection, but nothing else: a
connection that is opened and sends nothing, or trickles its headers or body a byte at a time,
stays open for as long as the client likes, and file descriptors run out long before memory.
`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with three more rules:

- a request's headers must arrive within `header_timeout_s` of the connection opening (or of
  the previous response): an idle connection is then closed, a half-sent request gets 408;
- its body must arrive within `body_timeout_s` of its headers, else 408;
- at most `max_connections` are open per process: past it, the longest-idle connection (no
  request begun for half the header deadline or more) is closed to make room, and only where
  none is idle is the new one refused (503 with Retry-After, then closed). A connection opened
  a moment ago is not idle but about to send its request.

The deadlines are checked by one sweep per process a few times a second, not by a timer per
request: the per-request cost is two attribute writes and a clock read.

And new connections are accepted promptly under load. uvloop accepts about one pending
connection per loop iteration while its loop is busy (measured: with 2-ms callbacks queued, 72
of 1,024 pending connections in 2 s; the stock asyncio loop took all of them in 0.3 s), so past
capacity a burst of new clients — and the health probe behind them — waited seconds in the
listen queue. A second reader on the listening socket accepts every pending connection each
time it is readable and hands each to the same protocol.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import resource
import socket
import stat
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.settings import Settings

log = logging.getLogger(__name__)

# Descriptors a process needs besides its connections: model files, logs, metrics, the loop.
_RESERVED_FDS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, max(0.05, min(self.header_timeout_s, self.body_timeout_s) / 4))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `dlwp serve` passes into uvicorn's Config to run the guarded protocol."""
    limits = ConnectionLimits(
        settings.header_timeout_s, settings.body_timeout_s, connection_cap(settings.max_connections)
    )
    # A partial of a module-level class pickles, so `--workers N` (spawned processes) works.
    return {"http": functools.partial(GuardedHttpToolsProtocol, limits=limits)}


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered to what the process's descriptor limit can hold."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - _RESERVED_FDS:
        return wanted
    cap = max(1, soft - _RESERVED_FDS)
    log.warning("DLWP_MAX_CONNECTIONS=%d lowered to %d: the open-file limit is %d (ulimit -n)",
                wanted, cap, soft)  # fmt: skip
    return cap


# The phase a connection is in, and since when (loop time): what the sweep checks.
_AWAITING_HEADERS, _READING_BODY, _HANDLING = 0, 1, 2


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.phase = _AWAITING_HEADERS
        self.phase_since = 0.0
        self.request_begun = False  # bytes of a request arrived, its headers not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.phase_since = self.loop.time()
        _Sweeper.ensure(self.server_state, self.loop, self.limits)
        if self.server_state not in _ACCEPTORS:
            _ACCEPTORS[self.server_state] = _Acceptor.start(self)
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            self.refuse(503, "too many open connections; retry later", b"retry-after: 1\r\n")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.request_begun = True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.phase = _READING_BODY
        self.phase_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = _HANDLING

    def shutdown(self) -> None:
        acceptor = _ACCEPTORS.get(self.server_state)
        if acceptor is not None:
            acceptor.stop()  # the server stops accepting: so does the second reader
        super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.phase = _AWAITING_HEADERS
        self.phase_since = self.loop.time()
        self.request_begun = False

    def check_deadline(self, now: float) -> None:
        """Close the connection if its current phase has run past its deadline."""
        if self.transport.is_closing():
            return
        if self.phase == _AWAITING_HEADERS:
            if now - self.phase_since <= self.limits.header_timeout_s:
                return
            if self.request_begun:
                self.refuse(408, f"the request's headers did not arrive within "
                            f"{self.limits.header_timeout_s:g} s")  # fmt: skip
            else:
                self.transport.close()  # idle: nobody is waiting for an answer
        elif self.phase == _READING_BODY and now - self.phase_since > self.limits.body_timeout_s:
            if self.cycle is not None and self.cycle.response_started:
                self.transport.close()  # answered already (e.g. 413 by Content-Length)
            else:
                self.refuse(408, f"the request's body did not arrive within "
                            f"{self.limits.body_timeout_s:g} s of its headers")  # fmt: skip

    def refuse(self, status: int, message: str, extra_headers: bytes = b"") -> None:
        """Answer `{"error": message}` with `status` outside any request cycle, then close."""
        body = orjson.dumps({"error": message})
        reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n%s" % (status, reason, len(body), extra_headers, body)
        )
        self.transport.close()  # the app, if it waits for this body, sees the client leave

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection; False if none has been idle long enough."""
        idle_since = self.loop.time() - self.limits.header_timeout_s / 2
        idle = [
            connection
            for connection in self.connections
            if isinstance(connection, GuardedHttpToolsProtocol)
            and connection.phase == _AWAITING_HEADERS
            and not connection.request_begun
            and connection.phase_since <= idle_since
            and not connection.transport.is_closing()
        ]
        if not idle:
            return False
        min(idle, key=lambda connection: connection.phase_since).transport.close()
        return True


class _Sweeper:
    """Checks every connection's deadline a few times a second while any is open."""

    def __init__(
        self, state: ServerState, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits
    ) -> None:
        self.state = state
        self.loop = loop
        self.interval_s = limits.sweep_interval_s
        self.loop.call_later(self.interval_s, self.sweep)

    @classmethod
    def ensure(
        cls, state: ServerState, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits
    ) -> None:
        if state not in _SWEEPERS:
            _SWEEPERS[state] = cls(state, loop, limits)

    def sweep(self) -> None:
        if not self.state.connections:
            del _SWEEPERS[self.state]  # the next connection starts a new sweep
            return
        now = self.loop.time()
        for connection in list(self.state.connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.check_deadline(now)
        self.loop.call_later(self.interval_s, self.sweep)


class _Acceptor:
    """Accepts every pending connection on the server's listening socket when it is readable."""

    BURST = 512  # at most this many per callback, so one burst cannot hold the loop for long

    def __init__(
        self,
        listener: socket.socket,
        original_fd: int,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.listener = listener
        self.original_fd = original_fd
        self.identity = _identity(original_fd)
        self.loop = loop
        self.factory = factory
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self.accept)

    def stop(self) -> None:
        if self.listener.fileno() != -1:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()

    @classmethod
    def start(cls, first: GuardedHttpToolsProtocol) -> _Acceptor | None:
        """Find the listening socket `first` came through, and read it too (Linux; else None)."""
        if first.server is None or first.server[1] is None:
            return None
        found = _listening_socket(first.server[1], first.server[0])
        if found is None:
            return None
        listener, original_fd = found
        factory = functools.partial(
            type(first),
            config=first.config,
            server_state=first.server_state,
            app_state=first.app_state,
            limits=first.limits,
        )
        try:
            return cls(listener, original_fd, first.loop, factory)
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("accepting through uvicorn's own listener only: %s", error)
            listener.close()
            return None

    def accept(self) -> None:
        if _identity(self.original_fd) != self.identity:
            self.stop()  # uvicorn closed its listener (shutting down): stop accepting too
            return
        for _ in range(self.BURST):
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of descriptors, or the listener closed
                log.warning("accept failed: %s", error)
                return
            self.loop.create_task(self._connect(connection))

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, connection)
        except OSError:
            connection.close()


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _listening_socket(port: int, host: str) -> tuple[socket.socket, int] | None:
    """A duplicate of this process's socket listening on `port` (at `host` or any address),
    and the descriptor it duplicates."""
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return None
    for fd in descriptors:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            candidate = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            name = candidate.getsockname()
            if (
                candidate.type == socket.SOCK_STREAM
                and candidate.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and isinstance(name, tuple)
                and name[1] == port
                and name[0] in (host, "0.0.0.0", "::")
            ):
                return candidate, fd
        except OSError:
            pass
        candidate.close()
    return None


_SWEEPERS: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()
_ACCEPTORS: weakref.WeakKeyDictionary[ServerState, _Acceptor | None] = weakref.WeakKeyDictionary()
