"""Open Inference Protocol (KServe V2) REST: health, metadata and typed-tensor inference.

Supports JSON tensors and the binary tensor extension (`Inference-Header-Content-Length`), so
`tritonclient.http` and KServe's REST client work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import BadRequestError, InvalidInputError
from service.model.codecs import Codec
from service.protocols import schemas, tensors
from service.repository.repository import ServedVersion
from service.rest.deps import Repository, path_version, plane_of
from service.rest.hotpath import hot
from service.rest.http import error_response, json_response, parse_json

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

HEADER_LENGTH = "inference-header-content-length"
SERVER_VERSION = "0.1.0"
SERVER_METADATA = {
    "name": "dlwp-serving",
    "version": SERVER_VERSION,
    "extensions": ["binary_tensor_data", "model_repository"],
}


@router.get("", summary="Server metadata", responses={200: {"model": schemas.ServerMetadata}})
async def server_metadata() -> Response:
    return json_response(SERVER_METADATA)


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


def metadata(served: ServedVersion) -> dict[str, Any]:
    signature = served.manifest.signature
    return {
        "name": served.name,
        "versions": [str(served.version)],
        "platform": "tensorflow_keras",
        "inputs": [spec.model_dump() for spec in signature.inputs],
        "outputs": [spec.model_dump() for spec in signature.outputs],
        "parameters": {
            "task": served.manifest.task,
            "labels": served.manifest.labels,
            "metrics": served.manifest.metrics,
            "created_at": served.manifest.created_at,
        },
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
async def model_metadata(name: schemas.ModelName, repository: Repository) -> Response:
    return json_response(metadata(repository.live(name)))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Metadata of one version",
    operation_id="version_metadata",
    responses={200: {"model": schemas.ModelMetadata}, **schemas.error_responses(400, 404, 503)},
)
async def version_metadata(
    name: schemas.ModelName, version: schemas.ModelVersion, repository: Repository
) -> Response:
    return json_response(metadata(repository.live(name, version)))


@router.get(
    "/models/{name}/ready",
    summary="Is the model ready?",
    operation_id="model_ready",
    responses={200: {"model": schemas.ModelReady}, **schemas.error_responses(404, 503)},
)
async def model_ready(name: schemas.ModelName, repository: Repository) -> Response:
    served = repository.live(name)
    return json_response({"name": name, "version": str(served.version), "ready": True})


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Is this version ready?",
    operation_id="version_ready",
    responses={200: {"model": schemas.ModelReady}, **schemas.error_responses(400, 404, 503)},
)
async def version_ready(
    name: schemas.ModelName, version: schemas.ModelVersion, repository: Repository
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
    header, binary = _split_binary(request, body)
    payload = schemas.parse(schemas.InferenceRequest, parse_json(header), BadRequestError)
    inputs = payload.inputs
    values = _decode_inputs(inputs, binary, b"true" in header or b"false" in header)
    datatypes = {spec.name: spec.datatype for spec in inputs}
    wanted, binary_out = _requested_outputs(payload)

    def encode(codec: Codec) -> Any:
        return rows_from_inputs(codec, name, values, datatypes)

    served, outputs = await plane_of(request).predict(request, name, version, encode)
    output_name = check_outputs(served, wanted)
    if not wanted or output_name in wanted:
        binary_out = wanted.get(output_name, binary_out)
    spec, raw = tensors.encode_output(output_name, outputs, binary_out)
    response: dict[str, Any] = {
        "model_name": served.name,
        "model_version": str(served.version),
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


def rows_from_inputs(
    codec: Codec, model: str, values: dict[str, Any], datatypes: dict[str, Any]
) -> Any:
    """Decoded input tensors (by name) → model rows: one input, the signature's name and kind.

    Shared by the REST and gRPC fronts, so both accept and refuse the same tensors.
    """
    expected = codec.input_spec
    if len(values) != 1 or expected.name not in values:
        raise InvalidInputError(
            f"{model} takes one input {expected.name!r} ({expected.datatype} "
            f"{expected.shape}), got {sorted(values) or 'none'}"
        )
    if (datatypes.get(expected.name) == "BYTES") != (expected.datatype == "BYTES"):
        raise InvalidInputError(
            f"input {expected.name!r} must be {expected.datatype}, "
            f"got {datatypes.get(expected.name)}"
        )
    return codec.rows_from_tensor(values[expected.name])


def check_outputs(served: ServedVersion, requested: Iterable[str]) -> str:
    """The served output's name; a requested output the model does not give is refused."""
    output_name = served.codec.output_spec.name
    for name in requested:
        if name != output_name:
            raise InvalidInputError(f"unknown output {name!r}; {served.name} gives {output_name!r}")
    return output_name


def _split_binary(request: Request, body: bytes) -> tuple[bytes, bytes]:
    length = request.headers.get(HEADER_LENGTH)
    if length is None:
        return body, b""
    if not (length.isascii() and length.isdigit()) or int(length) > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {length!r} but the body has {len(body)} bytes"
        )
    return body[: int(length)], body[int(length) :]


def _decode_inputs(
    inputs: list[schemas.RequestInput], binary: bytes, booleans: bool
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    offset = 0
    for spec in inputs:
        if spec.name in values:
            raise BadRequestError(f"input {spec.name!r} is given twice")
        size = spec.parameters.binary_data_size if spec.parameters else None
        chunk = None
        if size is not None:
            if offset + size > len(binary):
                raise BadRequestError(
                    f"input {spec.name!r}: binary_data_size {size} runs past the body's "
                    f"{len(binary)} bytes of binary data"
                )
            chunk = binary[offset : offset + size]
            offset += size
        values[spec.name] = tensors.decode_input(spec, chunk, booleans)
    if offset != len(binary):
        raise BadRequestError(
            f"the body has {len(binary)} bytes of binary data but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return values


def _requested_outputs(payload: schemas.InferenceRequest) -> tuple[dict[str, bool], bool]:
    binary_default = bool(payload.parameters and payload.parameters.binary_data_output)
    wanted: dict[str, bool] = {}
    for output in payload.outputs or []:
        binary = output.parameters.binary_data if output.parameters else None
        wanted[output.name] = binary_default if binary is None else binary
    return wanted, binary_default
