"""Model repository extension (V2): list versions with their state, load and unload models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import BadRequestError
from service.protocols import schemas
from service.protocols.versions import parse_version
from service.repository.desired_state import Pin
from service.rest.deps import Repository, Rollouts
from service.rest.http import json_response, parse_json, read_json

# Every route here but the index is repository control: `service.rest.control` guards it by
# its path (cross-site requests, control off beyond loopback without a key, the API key).
router = APIRouter(prefix="/v2/repository", tags=["model repository"])
_ERRORS = schemas.error_responses(400, 401, 403, 404, 409, 413, 503)
_NAME = "$response.body#/0/name"
_LOAD_BODY = {
    "required": False,
    "description": 'Optional: `{"parameters": {"version": 2}}` pins version 2 on every worker, '
    '`"latest"` follows the newest again; without it the model\'s pin (if any) is kept.',
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "version": {
                                "anyOf": [
                                    {"type": "integer", "minimum": 0},
                                    {"type": "string", "pattern": "^([0-9]+|latest)$"},
                                ]
                            }
                        },
                    }
                },
            },
            "example": {"parameters": {"version": 1}},
        }
    },
}
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
    summary="Serve a model on every worker: its policy version, or pin one; returns once every "
    "worker serves it",
    operation_id="repository_load",
    openapi_extra={"requestBody": _LOAD_BODY},
    responses={
        200: {
            "model": schemas.RepositoryAnswer,
            "links": {"modelReady": schemas.link("model_ready", name="$request.path.name")},
        },
        **_ERRORS,
    },
)
async def load(name: str, request: Request, repository: Repository) -> Response:
    served = await repository.load(name, await _requested_version(request))
    return json_response({"name": name, "version": str(served.version), "state": "READY"})


@router.post(
    "/models/{name}/unload",
    summary="Stop serving a model on every worker",
    operation_id="repository_unload",
    responses={
        200: {
            "model": schemas.RepositoryAnswer,
            "links": {"load": schemas.link("repository_load", name="$request.path.name")},
        },
        **_ERRORS,
    },
)
async def unload(name: str, repository: Repository) -> Response:
    await repository.unload(name)
    return json_response({"name": name, "state": "UNAVAILABLE"})


_ROLLOUT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": schemas.RolloutStatus,
        "links": {"status": schemas.link("rollout_status", name="$request.path.name")},
    }
}
_ROLLOUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": schemas.inline(schemas.RolloutRequest),
                "example": {"version": 2, "mode": "shadow", "share": 1.0},
            }
        },
    }
}


@router.post(
    "/models/{name}/rollout",
    summary="Start a rollout: a candidate version beside the serving one (shadow or canary), "
    "decided by its gate; returns once every worker serves both",
    operation_id="rollout_start",
    openapi_extra=_ROLLOUT_BODY,
    responses={
        **_ROLLOUT_ANSWER,
        **schemas.error_responses(400, 401, 403, 404, 409, 413, 415, 503),
    },
)
async def rollout_start(name: str, request: Request, rollouts: Rollouts) -> Response:
    return json_response(await rollouts.start(name, await read_json(request)))


@router.get(
    "/models/{name}/rollout",
    summary="The model's rollout (running, or how the last one ended) with its live comparison",
    operation_id="rollout_status",
    responses={**_ROLLOUT_ANSWER, **schemas.error_responses(404, 503)},
)
async def rollout_status(name: str, rollouts: Rollouts) -> Response:
    return json_response(await rollouts.status(name))


@router.post(
    "/models/{name}/rollout/promote",
    summary="Promote the running rollout's candidate on every worker now",
    operation_id="rollout_promote",
    responses={**_ROLLOUT_ANSWER, **schemas.error_responses(401, 403, 404, 409, 413, 503)},
)
async def rollout_promote(name: str, rollouts: Rollouts) -> Response:
    return json_response(await rollouts.promote(name))


@router.post(
    "/models/{name}/rollout/abort",
    summary="Abort the running rollout: the serving version keeps serving everywhere",
    operation_id="rollout_abort",
    responses={**_ROLLOUT_ANSWER, **schemas.error_responses(401, 403, 404, 409, 413, 503)},
)
async def rollout_abort(name: str, rollouts: Rollouts) -> Response:
    return json_response(await rollouts.abort(name))


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
