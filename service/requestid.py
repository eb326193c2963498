"""Request ids: every response carries `X-Request-ID`, and every log line about a request holds it.

The id is the client's `X-Request-ID` when it sent a usable one (1–128 visible ASCII characters,
so nothing can forge log lines or grow them without bound), else a new random one. It lives in a
context variable for the duration of the request, where the JSON log formatter (service/logs.py)
finds it. Any transport can do the same: `accept_or_new(incoming)` then `with bound(request_id):`
around the call, and send the id back (HTTP: a response header; gRPC: trailing metadata).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
_USABLE = re.compile(r"[!-~]{1,128}")

REQUEST_ID: ContextVar[str | None] = ContextVar("dlwp_request_id", default=None)

access_log = logging.getLogger("dlwp.access")


def accept_or_new(incoming: str | bytes | None) -> str:
    """The client's id when usable, else a new one (32 hex digits)."""
    if isinstance(incoming, bytes):
        incoming = incoming.decode("latin-1")
    if incoming and _USABLE.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()


@contextlib.contextmanager
def bound(request_id: str) -> Iterator[str]:
    """Make `request_id` the current request's id (for logs) until the block ends."""
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)


class RequestIdMiddleware:
    """Takes or makes each HTTP request's id, returns it as a header, and logs access if asked."""

    def __init__(self, app: ASGIApp, log_access: bool = False) -> None:
        self.app = app
        self.log_access = log_access
        if log_access:
            # Asked for explicitly: written whatever the server's log level.
            access_log.setLevel(logging.INFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == _HEADER_BYTES), None)
        request_id = accept_or_new(incoming)
        header = (_HEADER_BYTES, request_id.encode())
        started = time.perf_counter()
        status = 499  # stays so only if no response was sent: the client went away

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with bound(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.log_access:
                    self._log(scope, status, time.perf_counter() - started)

    @staticmethod
    def _log(scope: Scope, status: int, seconds: float) -> None:
        access_log.info(
            "%s %s %d",
            scope["method"],
            scope["path"],
            status,
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "model": scope.get("state", {}).get("model", ""),
            },
        )
