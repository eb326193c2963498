"""The outermost ASGI middleware of a worker: a body deadline, and the count a drain reports.

A request's body must arrive within `body_timeout_s` of its headers (the moment the app is
called): past it the client gets 408 with a JSON error and `Connection: close`; the server then
closes the connection, so the app sees the client leave and whatever it sends is dropped. A
request whose answer has already begun (e.g. 413 by Content-Length) is left to the connection's
header deadline. The deadlines are checked by one sweep a few times a second while any body is
being read, not by a timer per request: a request pays a set insert and removal.

It also counts requests in progress and answered, so that a stop can say what it finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Methods whose requests have no body worth a deadline.
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class _Reading:
    """A request whose body has not all arrived yet."""

    __slots__ = ("send", "since")

    def __init__(self, since: float, send: Send) -> None:
        self.since = since
        self.send = send


class RequestGuard:
    def __init__(self, app: ASGIApp, body_timeout_s: float) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.sweep_interval_s = min(1.0, max(0.05, body_timeout_s / 4))
        self.in_flight = 0
        self.answered = 0
        self.unanswered = 0  # ended without the app returning (cancelled, failed)
        self._reading: set[_Reading] = set()
        self._sweeping = False
        self._timeouts: set[asyncio.Task[None]] = set()  # 408s being sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            if scope["method"] in _NO_BODY:
                await self.app(scope, receive, send)
            else:
                await self._with_deadline(scope, receive, send)
        except BaseException:
            self.unanswered += 1
            raise
        else:
            self.answered += 1
        finally:
            self.in_flight -= 1

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        reading = _Reading(time.monotonic(), send)
        self._reading.add(reading)
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(self.sweep_interval_s, self._sweep)

        async def receive_body() -> Message:
            message = await receive()
            if not message.get("more_body", False):
                self._reading.discard(reading)  # complete (or the client left)
            return message

        try:
            await self.app(scope, receive_body, send)
        finally:
            self._reading.discard(reading)

    def _sweep(self) -> None:
        if not self._reading:
            self._sweeping = False  # the next request with a body starts a new sweep
            return
        overdue = time.monotonic() - self.body_timeout_s
        loop = asyncio.get_running_loop()
        for reading in [r for r in self._reading if r.since < overdue]:
            self._reading.discard(reading)
            task = loop.create_task(self._time_out(reading.send))
            self._timeouts.add(task)
            task.add_done_callback(self._timeouts.discard)
        loop.call_later(self.sweep_interval_s, self._sweep)

    async def _time_out(self, send: Send) -> None:
        body = orjson.dumps({"error": f"the request's body did not arrive within "
                                      f"{self.body_timeout_s:g} s of its headers"})  # fmt: skip
        # RuntimeError: the app's answer began meanwhile; OSError: the client left.
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.start", "status": 408, "headers": [
                (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                (b"connection", b"close")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
