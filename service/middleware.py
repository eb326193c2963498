"""Small pure-ASGI middleware: body size limit, request metrics and error logging.

Overload itself is answered where it happens (a full batch queue → 503); these never refuse
health or metrics routes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

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


class MetricsMiddleware:
    """Counts every request by model, route and status code, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # prometheus_client's labels() validates and locks on every call; the series are few
        # (models × routes × codes), so look each up once.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _observe(self, model: str, route: str, status: int, seconds: float) -> None:
        key = (model, route, status)
        series = self._series.get(key)
        if series is None:
            series = (
                metrics.REQUESTS.labels(model, route, str(status)),
                metrics.REQUEST_LATENCY.labels(model, route),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNMEASURED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 499  # stays so only if no response was sent: the client went away

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            route_path = getattr(route, "path_format", "unmatched")
            # Only a model that was found is a label: client-chosen names must not add series.
            model = scope.get("state", {}).get("model", "")
            self._observe(model, route_path, status, time.perf_counter() - started)


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
