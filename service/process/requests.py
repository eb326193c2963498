"""The outermost ASGI middleware of a worker: a body deadline, and the count a drain reports.

A request's body must arrive within `body_timeout_s` of its headers (the moment the app is
called): past it the client gets 408 with a JSON error and `Connection: close`, the app sees
the client leave, and anything the app sends after that is dropped. One timer per request that
carries a body, cancelled when the body is complete; requests without a body cost a counter.

It also counts requests in progress and answered, so that a stop can say what it finished.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Methods whose requests have no body worth a deadline.
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class RequestGuard:
    def __init__(self, app: ASGIApp, body_timeout_s: float) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.in_flight = 0
        self.answered = 0
        self.unanswered = 0  # ended without a complete response (cancelled, failed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        done = False
        try:
            if scope["method"] in _NO_BODY:
                await self.app(scope, receive, send)
            else:
                await _BodyDeadline(self.body_timeout_s, receive, send).run(self.app, scope)
            done = True
        finally:
            self.in_flight -= 1
            if done:
                self.answered += 1
            else:
                self.unanswered += 1


class _BodyDeadline:
    """One request with a body: 408 if the body is not complete by the deadline."""

    def __init__(self, timeout_s: float, receive: Receive, send: Send) -> None:
        self.timeout_s = timeout_s
        self._receive = receive
        self._send = send
        self.started = False
        self.timed_out = False
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.timeout_s, self._expire, loop)
        try:
            await app(scope, self.receive, self.send)
        finally:
            self._timer.cancel()

    async def receive(self) -> Message:
        message = await self._receive()
        if not message.get("more_body", False) and self._timer is not None:
            self._timer.cancel()  # the body is complete (or the client left)
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return  # the 408 went out instead
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.started:
            return  # answered before its body was read (e.g. 413 by Content-Length)
        self.timed_out = True
        loop.create_task(self._send_timeout())

    async def _send_timeout(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # the client left meanwhile
            await self._send_408()

    async def _send_408(self) -> None:
        body = orjson.dumps({"error": f"the request's body did not arrive within "
                                      f"{self.timeout_s:g} s of its headers"})  # fmt: skip
        # `Connection: close` makes the server close the connection once this is sent; the
        # app's pending receive() then reports the client gone.
        await self._send({"type": "http.response.start", "status": 408, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
            (b"connection", b"close")]})  # fmt: skip
        await self._send({"type": "http.response.body", "body": body})
