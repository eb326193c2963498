"""TF Serving REST API: `:predict` with `instances` (row format) or `inputs` (columnar)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from service.errors import BadRequestError, InvalidInputError, ModelNotFoundError
from service.model import artifacts
from service.model.codecs import Codec, Encoded
from service.protocols import schemas
from service.rest.deps import ModelName, ModelVersion, Repository, path_version, plane_of, resolve
from service.rest.hotpath import hot
from service.rest.http import json_response, read_json


class _Segment(Convertor[str]):
    """A name or version in the status routes' paths, without ':' so that those routes never
    claim a `…:predict` path: a POST to an unknown method (`mnist:classify`) is a 404, not a 405
    from `GET /v1/models/{name}`."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tfs_segment", _Segment())
router = APIRouter(prefix="/v1/models", tags=["tf serving rest"])

_PREDICT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": schemas.inline(schemas.PredictRequest),
                "example": {"instances": ["a wonderful, moving film"]},
            }
        },
    },
}
_PREDICT_RESPONSES = {
    200: {"model": schemas.PredictResponse},
    **schemas.error_responses(400, 404, 413, 415, 422, 503, 504),
}
_STATUS_RESPONSES = {200: {"model": schemas.ModelStatus}, **schemas.error_responses(400, 404)}
_STATUS_LINKS = {
    "versionStatus": schemas.link(
        "tfs_version_status",
        name="$request.path.name",
        version="$response.body#/model_version_status/0/version",
    )
}


@router.get(
    "/{name:tfs_segment}",
    summary="Model version status, as TF Serving reports it",
    operation_id="tfs_status",
    responses=_STATUS_RESPONSES | {200: {"model": schemas.ModelStatus, "links": _STATUS_LINKS}},
)
async def status(name: ModelName, repository: Repository) -> Response:
    return _status(repository, name, None)


@router.post(
    "/{name}:predict",
    summary="Predict with the served version",
    operation_id="tfs_predict",
    openapi_extra=_PREDICT_DOC | {"parameters": schemas.path_parameters("name")},
    responses=_PREDICT_RESPONSES,
)
@hot
async def predict(request: Request) -> Response:
    return await _predict(request.path_params["name"], None, request)


@router.get(
    "/{name:tfs_segment}/versions/{version:tfs_segment}",
    summary="Status of one version",
    operation_id="tfs_version_status",
    responses=_STATUS_RESPONSES,
)
async def version_status(
    name: ModelName, version: ModelVersion, repository: Repository
) -> Response:
    return _status(repository, name, version)


@router.post(
    "/{name}/versions/{version}:predict",
    summary="Predict with one version",
    operation_id="tfs_predict_version",
    openapi_extra=_PREDICT_DOC | {"parameters": schemas.path_parameters("name", "version")},
    responses=_PREDICT_RESPONSES,
)
@hot
async def predict_version(request: Request) -> Response:
    return await _predict(request.path_params["name"], path_version(request), request)


async def _predict(name: str, version: int | None, request: Request) -> Response:
    body = schemas.parse(schemas.PredictRequest, await read_json(request), BadRequestError)
    row_format = body.instances is not None
    data = body.instances if row_format else body.inputs

    def encode(codec: Codec) -> Encoded:
        return codec.encode_tensor(_unwrap(data, codec.input_spec.name, row_format))

    served = resolve(request, name, version)
    inference = await plane_of(request).run(served, encode)
    key = "predictions" if row_format else "outputs"
    return json_response({key: np.asarray(inference.outputs, dtype=np.float32)})


def _unwrap(data: Any, input_name: str, row_format: bool) -> Any:
    """Accept the tensor itself, or TF Serving's named form ({name: tensor} / [{name: row}])."""
    if row_format:
        if not isinstance(data, list):
            raise InvalidInputError("'instances' must be a list, one entry per input row")
        if data and all(isinstance(item, dict) for item in data):
            try:
                return [item[input_name] for item in data]
            except KeyError:
                raise InvalidInputError(
                    f"each instance must name the input {input_name!r}"
                ) from None
        return data
    if isinstance(data, dict):
        if input_name not in data or len(data) != 1:
            raise InvalidInputError(f"'inputs' must hold exactly the input {input_name!r}")
        return data[input_name]
    return data


def _status(repository: Repository, name: str, version: int | None) -> Response:
    versions = artifacts.list_versions(repository.models_dir, name)
    if not versions:
        raise ModelNotFoundError(f"unknown model {name!r}")
    if version is not None and version not in versions:
        raise ModelNotFoundError(f"model {name!r} has no version {version}")
    states = {row["version"]: row for row in repository.index() if row["name"] == name}
    shown = [version] if version is not None else sorted(versions, reverse=True)
    statuses = [
        {
            "version": str(v),
            "state": "AVAILABLE" if states.get(str(v), {}).get("state") == "READY" else "END",
            "status": {
                "error_code": "OK" if "reason" not in states.get(str(v), {}) else "UNKNOWN",
                "error_message": states.get(str(v), {}).get("reason", ""),
            },
        }
        for v in shown
    ]
    # `name` and `ready` beside TF Serving's list: KServe's V1 protocol (its Python client's
    # is_model_ready) reads them.
    ready = any(row["state"] == "AVAILABLE" for row in statuses)
    return json_response({"name": name, "ready": ready, "model_version_status": statuses})
