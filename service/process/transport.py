"""The one module that reaches into uvicorn: a header deadline, a connection cap, prompt accepting.

uvicorn has no public option for these (checked against 0.54): it bounds the idle time between
requests on a kept-alive connection, but a connection that is opened and sends nothing, or
trickles its headers a byte at a time, stays open as long as the client likes, and descriptors
run out long before memory; its `limit_concurrency` answers a plain 503 to every request,
health probes included, and never closes an idle connection to make room. So this module
subclasses uvicorn's httptools protocol (`uvicorn.protocols.http.httptools_impl`, not a
documented API) and relies on its hooks and attributes; it is pinned to the uvicorn versions it
was tested with (`SUPPORTED_UVICORN`). Outside that range `uvicorn_options` falls back to
uvicorn's stock protocol with its public `limit_concurrency`, and says so in the log;
tests/process/test_transport.py fails on such an upgrade until the pin is re-tested.

`GuardedHttpToolsProtocol` adds:

- a request's headers must arrive within `header_timeout_s` of the connection opening (or of
  the previous response): an idle connection is then closed, a half-sent request gets 408;
- at most `max_connections` are open per process: past it, the longest-idle connection (no
  request begun for half the header deadline or more) is closed to make room, and only where
  none is idle is the new one refused (503 with Retry-After, then closed);
- new connections are accepted promptly under load. uvloop accepts about one pending connection
  per loop iteration while its loop is busy (with 2-ms callbacks queued, 72 of 1,024 pending
  connections in 2 s; the stock asyncio loop took all of them in 0.3 s), so past capacity a burst
  of new clients, and the health probe behind them, waited seconds in the listen queue. A
  second reader on the worker's own listening socket (handed in, never searched for) accepts
  every pending connection each time it is readable.

The body deadline is not here: `service.process.requests` does it as ASGI middleware.
The deadlines are checked by one sweep per process a few times a second, not by a timer per
request: the per-request cost is two attribute writes and a clock read.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import resource
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from service.settings import Settings

log = logging.getLogger(__name__)

# uvicorn releases this module was tested with: [low, high).
SUPPORTED_UVICORN = ((0, 54), (0, 55))

# Descriptors a process needs besides its connections: model files, logs, metrics, the loop.
_RESERVED_FDS = 64


def uvicorn_version() -> tuple[int, ...]:
    release = importlib.metadata.version("uvicorn").split("+")[0]
    return tuple(int(part) for part in release.split(".")[:3] if part.isdigit())


def supported(version: tuple[int, ...] | None = None) -> bool:
    """Whether `version` (default: the installed uvicorn) is in the tested range."""
    low, high = SUPPORTED_UVICORN
    return low <= (version or uvicorn_version()) < high


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    max_connections: int
    listener: socket.socket | None = None  # read by the second acceptor, when given

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, max(0.05, self.header_timeout_s / 4))


def uvicorn_options(settings: Settings, listener: socket.socket | None) -> dict[str, Any]:
    """What a worker passes into uvicorn's Config for the connection-level protections."""
    cap = connection_cap(settings.max_connections)
    if not supported():
        low, high = SUPPORTED_UVICORN
        log.warning(
            "uvicorn %s is outside the versions the connection guard was tested with "
            "(>=%s, <%s): serving without header deadlines or idle eviction; at most %d "
            "requests at once (uvicorn's limit_concurrency)",
            ".".join(map(str, uvicorn_version())), ".".join(map(str, low)),
            ".".join(map(str, high)), cap,
        )  # fmt: skip
        return {"limit_concurrency": cap}
    limits = ConnectionLimits(settings.header_timeout_s, cap, listener)
    protocol: Callable[..., asyncio.Protocol] = _guarded_protocol()
    return {"http": functools.partial(protocol, limits=limits)}


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
_AWAITING_HEADERS, _READING, _HANDLING = 0, 1, 2


@functools.cache
def _guarded_protocol() -> type[Any]:
    # Imported only inside the tested range: the class it extends is uvicorn's own.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
            _Sweeper.ensure(self.connections, self.loop, self.limits)
            if self.limits.listener is not None:
                _Acceptor.ensure(self)
            if len(self.connections) > self.limits.max_connections and not self._evict_idle():
                self.refuse(503, "too many open connections; retry later", b"retry-after: 1\r\n")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.request_begun = True

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.phase = _READING  # the body's deadline is the ASGI middleware's

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.phase = _HANDLING

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.phase = _AWAITING_HEADERS
            self.phase_since = self.loop.time()
            self.request_begun = False

        def shutdown(self) -> None:
            _Acceptor.stop_for(self.limits.listener)  # the server stops accepting: so do we
            super().shutdown()

        def check_deadline(self, now: float) -> None:
            """Close the connection if its headers are overdue."""
            if self.phase != _AWAITING_HEADERS or self.transport.is_closing():
                return
            if now - self.phase_since <= self.limits.header_timeout_s:
                return
            if self.request_begun:
                self.refuse(408, f"the request's headers did not arrive within "
                            f"{self.limits.header_timeout_s:g} s")  # fmt: skip
            else:
                self.transport.close()  # idle: nobody is waiting for an answer

        def refuse(self, status: int, message: str, extra_headers: bytes = b"") -> None:
            """Answer `{"error": message}` with `status` outside any request cycle, then close."""
            body = orjson.dumps({"error": message})
            reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n%s\r\n%s" % (status, reason, len(body), extra_headers, body)
            )
            self.transport.close()

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

    return GuardedHttpToolsProtocol


class _Sweeper:
    """Checks every connection's header deadline a few times a second while any is open."""

    def __init__(
        self, connections: set[Any], loop: asyncio.AbstractEventLoop, limits: ConnectionLimits
    ) -> None:
        self.connections = connections
        self.loop = loop
        self.interval_s = limits.sweep_interval_s
        self.loop.call_later(self.interval_s, self.sweep)

    @classmethod
    def ensure(
        cls, connections: set[Any], loop: asyncio.AbstractEventLoop, limits: ConnectionLimits
    ) -> None:
        if id(connections) not in _SWEEPERS:
            _SWEEPERS[id(connections)] = cls(connections, loop, limits)

    def sweep(self) -> None:
        if not self.connections:
            del _SWEEPERS[id(self.connections)]  # the next connection starts a new sweep
            return
        now = self.loop.time()
        for connection in list(self.connections):
            check = getattr(connection, "check_deadline", None)
            if check is not None:
                check(now)
        self.loop.call_later(self.interval_s, self.sweep)


class _Acceptor:
    """Accepts every pending connection on the worker's listening socket when it is readable."""

    BURST = 512  # at most this many per callback, so one burst cannot hold the loop for long

    def __init__(
        self,
        listener: socket.socket,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.original = listener
        # A duplicate: uvicorn closes the original when it stops, while our reader may still
        # be registered with the loop.
        self.listener = listener.dup()
        self.listener.setblocking(False)
        self.loop = loop
        self.factory = factory
        loop.add_reader(self.listener.fileno(), self.accept)

    @classmethod
    def ensure(cls, first: Any) -> None:
        listener = first.limits.listener
        if listener in _ACCEPTORS or listener.fileno() == -1:
            return
        # The same arguments uvicorn built `first` with, so accepted connections are alike.
        protocol: Callable[..., asyncio.Protocol] = type(first)
        factory = functools.partial(
            protocol, config=first.config, server_state=first.server_state,
            app_state=first.app_state, limits=first.limits,
        )  # fmt: skip
        try:
            _ACCEPTORS[listener] = cls(listener, first.loop, factory)
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("accepting through uvicorn's own reader only: %s", error)

    @classmethod
    def stop_for(cls, listener: socket.socket | None) -> None:
        acceptor = _ACCEPTORS.get(listener) if listener is not None else None
        if acceptor is not None:
            acceptor.stop()

    def stop(self) -> None:
        if self.listener.fileno() != -1:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()

    def accept(self) -> None:
        if self.original.fileno() == -1:
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


_SWEEPERS: dict[int, _Sweeper] = {}
_ACCEPTORS: weakref.WeakKeyDictionary[socket.socket, _Acceptor] = weakref.WeakKeyDictionary()
