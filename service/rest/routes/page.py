"""The demo page at `/`, the served models it lists, and the API reference, all offline.

Every file comes from a fixed table (this package's `page/` folder, or the Swagger UI build
shipped by the `fastapi-offline` package): no name a client sends ever becomes a path. The
training curves are served only for a version that is live, from that version's own folder.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import ModelNotFoundError
from service.protocols import schemas
from service.protocols.versions import parse_version
from service.rest.deps import Repository, Rollouts
from service.rest.http import json_response

router = APIRouter(tags=["page"])

PAGE_DIR = Path(__file__).resolve().parent.parent / "page"
SWAGGER_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_PAGE_ASSETS = {name: PAGE_DIR / name for name in ("page.css", "page.js", "docs.js", "icon.svg")}
_DOCS_ASSETS = {name: SWAGGER_DIR / name for name in ("swagger-ui-bundle.js", "swagger-ui.css")}

# Scripts and styles only from this server, requests only to it, nothing framed or posted away.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI (React) sets style attributes on elements as it renders.
_DOCS_CSP = _CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
_SAFETY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@router.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    """The page for a browser (its Accept names text/html); for any other client, KServe's V1
    liveness answer `{"status": "alive"}`, which KServe's Python client (Accept: */*) reads."""
    if "text/html" not in request.headers.get("accept", ""):
        return json_response({"status": "alive"}, headers={"Vary": "Accept"})
    return _file(PAGE_DIR / "index.html", {"Content-Security-Policy": _CSP, "Vary": "Accept"})


@router.get("/docs", include_in_schema=False)
async def docs() -> Response:
    return _file(PAGE_DIR / "docs.html", {"Content-Security-Policy": _DOCS_CSP})


@router.get(
    "/page/models",
    summary="The served models: version, test metrics against the book's, training curves",
    responses={200: {"content": {"application/json": {"example": {"models": [{
        "name": "imdb", "version": 1, "task": "sentiment",
        "metrics": {"test_accuracy": 0.8836}, "book": {"test_accuracy": 0.885},
        "history": "/v1/models/imdb/versions/1/history.png"}]}}}}},
)  # fmt: skip
async def served_models(repository: Repository, rollouts: Rollouts) -> Response:
    models: list[dict[str, Any]] = []
    for served in repository.live_models():
        rollout = None
        if repository.desired.running_rollout(served.name) is not None:
            status = await rollouts.status(served.name)
            rollout = {key: status.get(key) for key in ("mode", "share", "candidate_version",
                                                        "compared", "agreement")}  # fmt: skip
        manifest = served.manifest
        has_curves = (served.folder / "history.png").is_file()
        models.append(
            {
                "name": served.name,
                "version": served.version,
                "task": manifest.task,
                "metrics": manifest.metrics,
                "book": manifest.recipe.get("book_result", {}),
                "history": f"/v1/models/{served.name}/versions/{served.version}/history.png"
                if has_curves
                else None,
                "rollout": rollout,  # a running rollout's candidate and agreement, if any
            }
        )
    return json_response({"models": models})


@router.get("/page/{asset}", include_in_schema=False)
async def page_asset(asset: str) -> Response:
    return _file(_known(_PAGE_ASSETS, asset))


@router.get("/docs/assets/{asset}", include_in_schema=False)
async def docs_asset(asset: str) -> Response:
    return _file(_known(_DOCS_ASSETS, asset), {"Cache-Control": "public, max-age=86400"})


@router.get(
    "/v1/models/{name}/versions/{version}/history.png",
    summary="Training curves of a served version (PNG)",
    responses={200: {"content": {"image/png": {}}}, **schemas.error_responses(400, 404)},
)
async def history(name: str, version: str, repository: Repository) -> Response:
    wanted = parse_version(version)
    for served in repository.live_models():
        if served.name == name and served.version == wanted:
            path = served.folder / "history.png"
            if path.is_file():
                return Response(path.read_bytes(), media_type="image/png", headers=_SAFETY)
            break
    raise ModelNotFoundError(f"no training curves for a served version {wanted} of {name!r}")


def _known(table: dict[str, Path], name: str) -> Path:
    path = table.get(name)
    if path is None:
        raise ModelNotFoundError(f"no such file {name!r}")
    return path


def _file(path: Path, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _read(path), media_type=_TYPES[path.suffix], headers={**_SAFETY, **(headers or {})}
    )


@functools.cache
def _read(path: Path) -> bytes:
    # A fixed, small set of files that ship with the package: read each once.
    return path.read_bytes()
