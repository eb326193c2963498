"""The inference routes served straight from the ASGI scope, beside FastAPI.

FastAPI costs about 110 µs a request in routing, dependency solving and its middleware stack
(measured here: a constant-returning route does 4.1k req/s under FastAPI, 7.9k under bare
Starlette, one core). Inference routes are therefore declared once, on FastAPI routers (for
`/docs` and as the fallback), marked `@hot`, and dispatched here by FastAPI's own compiled
path patterns before FastAPI's machinery runs. Everything else goes to FastAPI unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.errors import DlwpError, UnavailableError, status_of
from service.rest.http import error_response

log = logging.getLogger(__name__)

Endpoint = TypeVar("Endpoint", bound=Callable[[Request], Awaitable[Response]])


def hot(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint `async def f(request) -> Response` to be served by `HotRoutes`."""
    endpoint._dlwp_hot = True  # type: ignore[attr-defined]
    return endpoint


class HotRoutes:
    """Dispatch the `@hot` routes of `routers` directly; pass everything else to `app`."""

    def __init__(self, app: FastAPI, routers: list[APIRouter]) -> None:
        self.app = app
        self.routes = [
            route
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and getattr(route.endpoint, "_dlwp_hot", False)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            for route in self.routes:
                match = route.path_regex.match(path)
                if match and method in (route.methods or ()):
                    scope["app"] = self.app
                    scope["route"] = route
                    scope["path_params"] = match.groupdict()
                    request = Request(scope, receive, send)
                    try:
                        response = await route.endpoint(request)
                    except ClientDisconnect:
                        return  # nobody is left to answer
                    except Exception as error:
                        response = response_for_error(request, error)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def response_for_error(request: Request, error: Exception) -> Response:
    """An exception as an `{"error": ...}` response with its `errors.STATUS` code (both paths)."""
    if not isinstance(error, DlwpError):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response("internal error; the server logged it", 500)
    status = status_of(error).http
    headers: dict[str, Any] | None = None
    if isinstance(error, UnavailableError):
        headers = {"Retry-After": str(error.retry_after_s)}
    elif status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, error.message)
    return error_response(error.message, status, headers)
