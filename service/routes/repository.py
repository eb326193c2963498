"""Model repository extension (V2): list versions with their state, load and unload models."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service import schemas
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
_ERRORS = schemas.error_responses(400, 401, 404, 503)
_NAME = "$response.body#/0/name"
_INDEX: dict[int | str, dict[str, Any]] = {
    200: {
        "model": list[schemas.IndexEntry],
        "links": {
            "modelMetadata": schemas.link("model_metadata", name=_NAME),
            "versionMetadata": schemas.link(
                "version_metadata", name=_NAME, version="$response.body#/0/version"
            ),
            "modelStatus": schemas.link("tfs_status", name=_NAME),
            "load": schemas.link("repository_load", name=_NAME),
            "unload": schemas.link("repository_unload", name=_NAME),
        },
    }
}


@router.post(
    "/index",
    summary="Every model and version with its state",
    operation_id="repository_index_post",
    responses=_INDEX,
)
async def index(repository: Repository) -> Response:
    return json_response(repository.index())


@router.get(
    "/index",
    summary="Every model and version with its state",
    operation_id="repository_index",
    responses=_INDEX,
)
async def index_get(repository: Repository) -> Response:
    return json_response(repository.index())


@router.post(
    "/models/{name}/load",
    summary="Load (or reload) a model's policy version; returns once it is serving",
    operation_id="repository_load",
    responses={
        200: {
            "model": schemas.RepositoryAnswer,
            "links": {"modelReady": schemas.link("model_ready", name="$request.path.name")},
        },
        **_ERRORS,
    },
)
async def load(name: str, repository: Repository, _: Admin) -> Response:
    served = await repository.load(name)
    return json_response({"name": name, "version": str(served.version), "state": "READY"})


@router.post(
    "/models/{name}/unload",
    summary="Stop serving a model",
    operation_id="repository_unload",
    responses={
        200: {
            "model": schemas.RepositoryAnswer,
            "links": {"load": schemas.link("repository_load", name="$request.path.name")},
        },
        **_ERRORS,
    },
)
async def unload(name: str, repository: Repository, _: Admin) -> Response:
    await repository.unload(name)
    return json_response({"name": name, "state": "UNAVAILABLE"})
