"""The guard on repository control (load, unload, rollouts), in front of every route.

Control is any request under `/v2/repository/` other than a read (GET, HEAD, OPTIONS, and the
index, which V2 clients POST). A route joins the guard by where it is declared, with nothing on
the route itself: `POST /v2/repository/models/{name}/rollout…` is guarded exactly like load and
unload. In order, a control request is refused:

1. 403 if a web page on another site could have made a browser send it: a `Content-Type` other
   than `application/json` (an HTML form's three encodings, or fetch's no-preflight ones), or an
   `Origin` other than this server's own (scheme, host and port of the request's `Host`). A
   request with no `Content-Type` (no body, as curl and client libraries send) and no `Origin`
   is not a browser's cross-site request.
2. 403 when the server listens beyond loopback with no `DLWP_API_KEY`: control is off, and the
   answer says how to turn it on. Listening on loopback with no key, 403 unless the `Host` names
   a loopback address: a page on another site can reach a loopback server under its own name
   (DNS rebinding), and then its Origin matches the Host. Read routes are never refused.
3. 401 when `DLWP_API_KEY` is set and `Authorization: Bearer <key>` does not carry it. The
   token is compared as bytes, in constant time: any bytes a client sends get 401, never 500.

Behind a proxy that terminates TLS, the server sees the browser's `https` origin only if the
proxy is trusted to say so (uvicorn's `FORWARDED_ALLOW_IPS` and `X-Forwarded-Proto`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from service.rest.middleware import send_error
from service.settings import Settings

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/v2/repository/"
READ_PATHS = frozenset({"/v2/repository/index"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_control(method: str, path: str) -> bool:
    """Whether a request changes what is served (and so goes through the guard)."""
    return path.startswith(CONTROL_PREFIX) and method not in READ_METHODS and path not in READ_PATHS


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server on this machine (127.0.0.0/8, ::1,
    localhost); an empty host, 0.0.0.0 or :: listen on every interface."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ControlGuard:
    """Pure ASGI middleware: answers refused control requests itself, passes the rest on."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.key = settings.api_key.encode() if settings.api_key else None
        # Without a key, a loopback server's only safeguard is that it is reached as itself.
        self.loopback_only = self.key is None and is_loopback(settings.host)
        self.off: str | None = None
        if self.key is None and not is_loopback(settings.host):
            self.off = (
                f"repository control is off: this server listens on {settings.host!r}, beyond "
                "loopback, with no API key. To turn it on, start the server with DLWP_API_KEY "
                "set to a secret and send 'Authorization: Bearer <the secret>' with each call"
            )
            log.warning("%s", self.off)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_control(scope["method"], scope["path"]):
            refusal = self._refusal(scope)
            if refusal is not None:
                status, message = refusal
                headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
                await send_error(send, status, message, headers)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = dict(scope["headers"])  # names arrive lower-cased
        content_type = headers.get(b"content-type")
        if content_type is not None:
            kind = content_type.split(b";", 1)[0].strip().lower()
            if kind != b"application/json":
                shown = kind.decode("latin-1")
                return 403, (
                    f"repository control takes Content-Type application/json, not {shown!r} "
                    "(which a web page on another site could send); with curl: -H "
                    "'Content-Type: application/json', or no body at all"
                )
        origin = headers.get(b"origin")
        if origin is not None and not _same_origin(scope, origin, headers.get(b"host")):
            shown = origin.decode("latin-1")
            return 403, (
                f"repository control is refused to a request from another site (Origin "
                f"{shown!r} is not this server): use the server's own page, or a client that "
                "sends no Origin"
            )
        if self.off is not None:
            return 403, self.off
        if self.loopback_only and not _names_loopback(headers.get(b"host")):
            shown = (headers.get(b"host") or b"").decode("latin-1")
            return 403, (
                f"repository control on a loopback-only server is refused under the name "
                f"{shown!r} (a web page could reach this server under its own name): call it "
                "as 127.0.0.1 or localhost, or set DLWP_API_KEY"
            )
        if self.key is not None and not _bearer_matches(headers.get(b"authorization"), self.key):
            return 401, "this route needs the API key: send 'Authorization: Bearer <key>'"
        return None


def _same_origin(scope: Scope, origin: bytes, host: bytes | None) -> bool:
    scheme = str(scope.get("scheme", "http"))
    if host is None:  # HTTP/1.0 sends no Host: the address the request arrived on
        server = scope.get("server") or ("", None)
        host = f"{server[0]}:{server[1]}".encode() if server[1] else str(server[0]).encode()
    ours = _origin_of(f"{scheme}://{host.decode('latin-1')}")
    return ours is not None and ours == _origin_of(origin.decode("latin-1"))


def _names_loopback(host: bytes | None) -> bool:
    """Whether a Host header names this machine: localhost (or *.localhost), 127.x, [::1]."""
    if host is None:  # HTTP/1.0: no name to be fooled by
        return True
    try:
        name = urlsplit(f"//{host.decode('latin-1')}").hostname or ""
    except ValueError:
        return False
    return is_loopback(name) or name.endswith(".localhost")


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if malformed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None  # "null" (a sandboxed page or a file) is nobody's origin
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def _bearer_matches(authorization: bytes | None, key: bytes) -> bool:
    scheme, _, token = (authorization or b"").strip().partition(b" ")
    # Always compare, so a wrong scheme costs the same time as a wrong token.
    matches = hmac.compare_digest(token.strip(), key)
    return scheme.lower() == b"bearer" and matches
