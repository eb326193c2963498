"""Small pure-ASGI middleware: body size limit; per request its id, metrics and access log.

Overload itself is answered where it happens (a full batch queue → 503); these never refuse
health or metrics routes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import metrics
from service.observability.logs import REQUEST_ID, AccessLog
from service.observability.requestid import HEADER_BYTES as _REQUEST_ID_HEADER
from service.observability.requestid import accept_or_new

MODEL_KEY = "dlwp.model"
"""ASGI scope key: the served model a request is for, once the data plane has resolved it
(`service.rest.deps.resolve` sets it). The `model` label of the request's metrics and access-log
line; absent, the label is empty, so a name a client made up never adds a series."""

_UNMEASURED = {"/metrics", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"}


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`, by Content-Length up front or by counting the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, self._message(int(declared)))
                return
            # The HTTP server reads exactly Content-Length bytes: nothing more to count.
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self._message(received))
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge as error:
            await _send_error(send, 413, str(error))

    def _message(self, size: int) -> str:
        return f"the body has {size} bytes or more; at most {self.max_bytes} are accepted"


class _TooLarge(Exception):
    pass


class RequestMiddleware:
    """Per HTTP request: its id, its metrics and (if asked) its access-log line.

    The id is the client's `X-Request-ID` when usable, else a new one (requestid.py); it
    goes back as a header and sits in the log context while the request runs. Every request but
    health, metrics and docs is counted by model, route and status code, and timed. One wrapper
    for all three: each layer costs an ASGI frame and a `send` hop on the hot path.
    """

    def __init__(self, app: ASGIApp, log_access: bool = False) -> None:
        self.app = app
        # Asked for explicitly, so written whatever the server's log level.
        self.access_log = AccessLog() if log_access else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == _REQUEST_ID_HEADER), None)
        request_id = accept_or_new(incoming)
        id_header = (_REQUEST_ID_HEADER, request_id.encode())
        started = time.perf_counter()
        status = 499  # stays so only if no response was sent: the client went away

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        token = REQUEST_ID.set(request_id)  # what requestid.bound does, minus a generator
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            model = scope.get(MODEL_KEY, "")
            if scope["path"] not in _UNMEASURED:
                route_path = getattr(scope.get("route"), "path_format", "unmatched")
                metrics.observe_request(model, route_path, status, seconds)
            if self.access_log is not None:
                self.access_log.write(scope["method"], scope["path"], status, seconds, model)
            REQUEST_ID.reset(token)


async def _send_error(send: Send, status: int, message: str, headers: Any = ()) -> None:
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
