"""TF Serving REST API: `:predict` with `instances` (row format) or `inputs` (columnar)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import artifacts
from service.codecs import Codec
from service.deps import Repository, parse_version, plane_of
from service.errors import BadRequestError, InvalidInputError, ModelNotFoundError
from service.hotpath import hot
from service.http import json_response, read_json

router = APIRouter(prefix="/v1/models", tags=["tf serving rest"])

_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"example": {"instances": ["a wonderful, moving film"]}}},
    }
}


@router.get("/{name}", summary="Model version status, as TF Serving reports it")
async def status(name: str, repository: Repository) -> Response:
    return _status(repository, name, None)


@router.post(
    "/{target}",
    summary="Predict: POST /v1/models/{name}:predict",
    openapi_extra=_PREDICT_DOC,
)
@hot
async def predict(request: Request) -> Response:
    return await _predict(request.path_params["target"], None, request)


@router.get("/{name}/versions/{version}", summary="Status of one version")
async def version_status(name: str, version: int, repository: Repository) -> Response:
    return _status(repository, name, version)


@router.post(
    "/{name}/versions/{target}",
    summary="Predict on one version: POST /v1/models/{name}/versions/{v}:predict",
    openapi_extra=_PREDICT_DOC,
)
@hot
async def predict_version(request: Request) -> Response:
    version_text, verb = _split_verb(request.path_params["target"])
    version = parse_version(version_text)
    return await _predict(f"{request.path_params['name']}:{verb}", version, request)


def _split_verb(target: str) -> tuple[str, str]:
    head, colon, verb = target.rpartition(":")
    if not colon:
        raise ModelNotFoundError(f"unknown method on {target!r}: use {target}:predict")
    return head, verb


async def _predict(target: str, version: int | None, request: Request) -> Response:
    name, verb = _split_verb(target)
    if verb != "predict":
        raise ModelNotFoundError(f"unknown method {verb!r}: only :predict is served")
    body = await read_json(request)
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise BadRequestError("expected a JSON object with either 'instances' or 'inputs'")
    row_format = "instances" in body
    data = body["instances" if row_format else "inputs"]

    def encode(codec: Codec) -> Any:
        return codec.rows_from_tensor(_unwrap(data, codec.input_spec.name, row_format))

    _, outputs = await plane_of(request).predict(request, name, version, encode)
    key = "predictions" if row_format else "outputs"
    return json_response({key: np.asarray(outputs, dtype=np.float32)})


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
    return json_response(
        {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE"
                    if states.get(str(v), {}).get("state") == "READY"
                    else "END",
                    "status": {
                        "error_code": "OK" if "reason" not in states.get(str(v), {}) else "UNKNOWN",
                        "error_message": states.get(str(v), {}).get("reason", ""),
                    },
                }
                for v in shown
            ]
        }
    )
