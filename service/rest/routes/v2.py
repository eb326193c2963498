"""Open Inference Protocol (KServe V2) REST: health, metadata and typed-tensor inference.

Supports JSON tensors and the binary tensor extension (`Inference-Header-Content-Length`), so
`tritonclient.http` and KServe's REST client work unchanged. What the protocol means (metadata,
input and output checks, tensor decoding) is `service.protocols.v2`, shared with gRPC; this
module reads and writes HTTP.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import BadRequestError
from service.model.codecs import Codec, Encoded
from service.protocols import schemas, tensors, v2
from service.rest.deps import ModelName, ModelVersion, Repository, path_version, plane_of, resolve
from service.rest.hotpath import hot
from service.rest.http import error_response, json_response, parse_json

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])


@router.get("", summary="Server metadata", responses={200: {"model": schemas.ServerMetadata}})
async def server_metadata() -> Response:
    return json_response(v2.SERVER_METADATA)


@router.get(
    "/health/live",
    summary="Is the process up? (never refused)",
    responses={200: {"model": schemas.Live}},
)
async def live() -> Response:
    return json_response({"live": True})


@router.get(
    "/health/ready",
    summary="Is every model loaded, warmed and serving?",
    responses={200: {"model": schemas.Ready}, **schemas.error_responses(503)},
)
async def ready(repository: Repository) -> Response:
    reason = repository.unready_reason
    if reason is None:
        return json_response({"ready": True})
    return error_response(reason, 503, {"Retry-After": "2"})


_NAME, _VERSION = "$response.body#/name", "$response.body#/versions/0"
_MODEL_LINKS = {
    "versionMetadata": schemas.link("version_metadata", name=_NAME, version=_VERSION),
    "modelReady": schemas.link("model_ready", name=_NAME),
    "versionReady": schemas.link("version_ready", name=_NAME, version=_VERSION),
    "infer": schemas.link("infer", name=_NAME),
    "inferVersion": schemas.link("infer_version", name=_NAME, version=_VERSION),
    "predict": schemas.link("tfs_predict", name=_NAME),
    "predictVersion": schemas.link("tfs_predict_version", name=_NAME, version=_VERSION),
}


@router.get(
    "/models/{name}",
    summary="Model metadata: input and output tensors",
    operation_id="model_metadata",
    responses={
        200: {"model": schemas.ModelMetadata, "links": _MODEL_LINKS},
        **schemas.error_responses(404, 503),
    },
)
async def model_metadata(name: ModelName, repository: Repository) -> Response:
    return json_response(v2.model_metadata(repository.live(name)))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Metadata of one version",
    operation_id="version_metadata",
    responses={200: {"model": schemas.ModelMetadata}, **schemas.error_responses(400, 404, 503)},
)
async def version_metadata(
    name: ModelName, version: ModelVersion, repository: Repository
) -> Response:
    return json_response(v2.model_metadata(repository.live(name, version)))


@router.get(
    "/models/{name}/ready",
    summary="Is the model ready?",
    operation_id="model_ready",
    responses={200: {"model": schemas.ModelReady}, **schemas.error_responses(404, 503)},
)
async def model_ready(name: ModelName, repository: Repository) -> Response:
    served = repository.live(name)
    return json_response({"name": name, "version": str(served.version), "ready": True})


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Is this version ready?",
    operation_id="version_ready",
    responses={200: {"model": schemas.ModelReady}, **schemas.error_responses(400, 404, 503)},
)
async def version_ready(
    name: ModelName, version: ModelVersion, repository: Repository
) -> Response:
    repository.live(name, version)
    return json_response({"name": name, "version": str(version), "ready": True})


_INFER_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "Binary tensor extension: the body is this many bytes of JSON "
            "followed by the raw tensors that inputs name with parameters.binary_data_size.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": schemas.inline(schemas.InferenceRequest)}},
    },
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": schemas.InferenceResponse,
        "description": "The outputs; with binary outputs requested, the JSON header (its "
        "length in Inference-Header-Content-Length) followed by the raw tensors.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    **schemas.error_responses(400, 404, 413, 422, 503, 504),
}


@router.post(
    "/models/{name}/infer",
    summary="Inference on typed tensors",
    operation_id="infer",
    openapi_extra=_INFER_DOC
    | {"parameters": schemas.path_parameters("name") + _INFER_DOC["parameters"]},
    responses=_INFER_RESPONSES,
)
@hot
async def infer(request: Request) -> Response:
    return await _infer(request.path_params["name"], None, request)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on one version",
    operation_id="infer_version",
    openapi_extra=_INFER_DOC
    | {"parameters": schemas.path_parameters("name", "version") + _INFER_DOC["parameters"]},
    responses=_INFER_RESPONSES,
)
@hot
async def infer_version(request: Request) -> Response:
    return await _infer(request.path_params["name"], path_version(request), request)


async def _infer(name: str, version: int | None, request: Request) -> Response:
    body = await request.body()
    header, binary = v2.split_binary(request.headers.get(v2.HEADER_LENGTH), body)
    payload = schemas.parse(schemas.InferenceRequest, parse_json(header), BadRequestError)
    payload.check_model(name)
    inputs = payload.inputs
    values = v2.decode_inputs(inputs, binary, b"true" in header or b"false" in header)
    datatypes = {spec.name: spec.datatype for spec in inputs}
    wanted, binary_out = v2.requested_outputs(payload)

    def encode(codec: Codec) -> Encoded:
        return v2.encode_inputs(codec, name, values, datatypes)

    served = resolve(request, name, version)
    inference = await plane_of(request).run(served, encode)
    output_name = v2.check_outputs(inference.served, wanted)
    if not wanted or output_name in wanted:
        binary_out = wanted.get(output_name, binary_out)
    spec, raw = tensors.encode_output(output_name, inference.outputs, binary_out)
    response: dict[str, Any] = {
        "model_name": inference.model,
        "model_version": str(inference.version),
        "outputs": [spec],
    }
    if payload.id is not None:
        response["id"] = payload.id
    if not raw:
        return json_response(response)
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(
        head + raw,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
