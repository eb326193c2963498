"""Small pure-ASGI middleware: body size limit; per request its id, metrics and access log.

Overload itself is answered where it happens (a full batch queue → 503); these never refuse
health or metrics routes.
"""

from __future__ import annotations

import enum
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
    """413 for bodies over `max_bytes`, however they arrive, before any route runs.

    With a Content-Length, the header decides. Without one (chunked transfer, as streaming
    clients send), the body is read here, counted as it comes, and handed on in one piece once
    complete: the route never sees a body that is over the limit, so how it reads the body
    (JSON, a raw image, a multipart form) makes no difference. Buffering costs nothing extra:
    every route reads the whole body before it starts.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:  # counted as it comes, whatever a Content-Length beside it claims
            body = await self._read(receive)
            if body is _Unread.TOO_LARGE:
                await send_error(send, 413, self._message(self.max_bytes + 1))
            elif isinstance(body, bytes):
                await self.app(scope, _replay(body, receive), send)
            return  # _Unread.GONE: nobody is left to answer
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, 413, self._message(int(declared)))
            return
        # The HTTP server reads exactly Content-Length bytes (or none without one): nothing
        # more to count.
        await self.app(scope, receive, send)

    async def _read(self, receive: Receive) -> bytes | _Unread:
        """The whole body, or why not."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _Unread.GONE
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                if message.get("more_body", False):
                    # Read (and drop) a little more, up to the limit again, so a client that has
                    # already sent its whole body sees the answer, not a reset connection.
                    await _discard(receive, self.max_bytes)
                return _Unread.TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _message(self, size: int) -> str:
        return f"the body has {size} bytes or more; at most {self.max_bytes} are accepted"


class _Unread(enum.Enum):
    TOO_LARGE = "over the limit"
    GONE = "the client went away"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then whatever the client does next."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _discard(receive: Receive, most: int) -> None:
    dropped = 0
    while dropped <= most:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


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


async def send_error(send: Send, status: int, message: str, headers: Any = ()) -> None:
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
