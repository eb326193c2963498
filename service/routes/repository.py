"""Model repository extension (V2): list versions with their state, load and unload models."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.deps import AppSettings, Repository, parse_version
from service.desired_state import Pin
from service.errors import BadRequestError, UnauthorizedError
from service.http import json_response, parse_json


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
    summary="Serve a model on every worker: its policy version, or pin one; returns once every "
    "worker serves it",
)
async def load(name: str, request: Request, repository: Repository, _: Admin) -> Response:
    served = await repository.load(name, await _requested_version(request))
    return json_response({"name": name, "version": str(served.version), "state": "READY"})


@router.post("/models/{name}/unload", summary="Stop serving a model on every worker")
async def unload(name: str, repository: Repository, _: Admin) -> Response:
    await repository.unload(name)
    return json_response({"name": name, "state": "UNAVAILABLE"})


async def _requested_version(request: Request) -> Pin | None:
    """`{"parameters": {"version": 2}}` pins version 2, `"latest"` follows the newest; no body
    (or no version) keeps the model's pin, if any."""
    body = await request.body()
    if not body.strip():
        return None
    payload = parse_json(body)
    parameters = payload.get("parameters", {}) if isinstance(payload, dict) else None
    if not isinstance(parameters, dict):
        raise BadRequestError('expected a JSON object like {"parameters": {"version": 2}}')
    version = parameters.get("version")
    if version is None or version == "latest":
        return version  # type: ignore[no-any-return]
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise BadRequestError(f'parameters.version must be a version or "latest", got {version!r}')
    return parse_version(str(version))
