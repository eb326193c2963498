"""Model repository extension (V2): list versions with their state, load and unload models."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.deps import AppSettings, Repository
from service.errors import UnauthorizedError
from service.http import json_response


def require_api_key(request: Request, settings: AppSettings) -> None:
    """With DLWP_API_KEY set, changing what is served needs `Authorization: Bearer <key>`."""
    if settings.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), settings.api_key):
        raise UnauthorizedError("this route needs the API key: send 'Authorization: Bearer <key>'")


Admin = Annotated[None, Depends(require_api_key)]
router = APIRouter(prefix="/v2/repository", tags=["model repository"])


@router.post("/index", summary="Every model and version with its state")
async def index(repository: Repository) -> Response:
    return json_response(repository.index())


@router.get("/index", summary="Every model and version with its state")
async def index_get(repository: Repository) -> Response:
    return json_response(repository.index())


@router.post(
    "/models/{name}/load",
    summary="Load (or reload) a model's policy version; returns once it is serving",
)
async def load(name: str, repository: Repository, _: Admin) -> Response:
    served = await repository.load(name)
    return json_response({"name": name, "version": str(served.version), "state": "READY"})


@router.post("/models/{name}/unload", summary="Stop serving a model")
async def unload(name: str, repository: Repository, _: Admin) -> Response:
    await repository.unload(name)
    return json_response({"name": name, "state": "UNAVAILABLE"})
