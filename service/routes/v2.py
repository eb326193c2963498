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

from service import tensors
from service.codecs import Codec
from service.deps import Repository, path_version, plane_of
from service.errors import BadRequestError, InvalidInputError
from service.hotpath import hot
from service.http import error_response, json_response, parse_json
from service.repository import ServedVersion

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

HEADER_LENGTH = "inference-header-content-length"
SERVER_VERSION = "0.1.0"
SERVER_METADATA = {
    "name": "dlwp-serving",
    "version": SERVER_VERSION,
    "extensions": ["binary_tensor_data", "model_repository"],
}


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response(SERVER_METADATA)


@router.get("/health/live", summary="Is the process up? (never refused)")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", summary="Is every model loaded, warmed and serving?")
async def ready(repository: Repository) -> Response:
    reason = repository.unready_reason
    if reason is None:
        return json_response({"ready": True})
    return error_response(reason, 503, {"Retry-After": "2"})


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


@router.get("/models/{name}", summary="Model metadata: input and output tensors")
async def model_metadata(name: str, repository: Repository) -> Response:
    return json_response(metadata(repository.live(name)))


@router.get("/models/{name}/versions/{version}", summary="Metadata of one version")
async def version_metadata(name: str, version: int, repository: Repository) -> Response:
    return json_response(metadata(repository.live(name, version)))


@router.get("/models/{name}/ready", summary="Is the model ready?")
async def model_ready(name: str, repository: Repository) -> Response:
    served = repository.live(name)
    return json_response({"name": name, "version": str(served.version), "ready": True})


@router.get("/models/{name}/versions/{version}/ready", summary="Is this version ready?")
async def version_ready(name: str, version: int, repository: Repository) -> Response:
    repository.live(name, version)
    return json_response({"name": name, "version": str(version), "ready": True})


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "example": {
                    "inputs": [
                        {"name": "features", "datatype": "FP32", "shape": [1, 13],
                         "data": [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3,
                                  396.9, 4.98]}
                    ]
                }
            }
        },
    }
}  # fmt: skip


@router.post("/models/{name}/infer", summary="Inference on typed tensors", openapi_extra=_INFER_DOC)
@hot
async def infer(request: Request) -> Response:
    return await _infer(request.path_params["name"], None, request)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on one version",
    openapi_extra=_INFER_DOC,
)
@hot
async def infer_version(request: Request) -> Response:
    return await _infer(request.path_params["name"], path_version(request), request)


async def _infer(name: str, version: int | None, request: Request) -> Response:
    body = await request.body()
    header, binary = _split_binary(request, body)
    payload = parse_json(header)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise BadRequestError("expected a JSON object with an 'inputs' list of tensors")
    inputs = payload["inputs"]
    values = _decode_inputs(inputs, binary)
    datatypes = {spec["name"]: spec.get("datatype") for spec in inputs}
    wanted, binary_out = _requested_outputs(payload)

    def encode(codec: Codec) -> Any:
        return rows_from_inputs(codec, name, values, datatypes)

    served, outputs = await plane_of(request).predict(request, name, version, encode)
    output_name = check_outputs(served, wanted)
    if not wanted or output_name in wanted:
        binary_out = binary_out or wanted.get(output_name, False)
    spec, raw = tensors.encode_output(output_name, outputs, binary_out)
    response: dict[str, Any] = {
        "model_name": served.name,
        "model_version": str(served.version),
        "outputs": [spec],
    }
    if "id" in payload:
        response["id"] = payload["id"]
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
    if not length.isdigit() or int(length) > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {length!r} but the body has {len(body)} bytes"
        )
    return body[: int(length)], body[int(length) :]


def _decode_inputs(inputs: list[Any], binary: bytes) -> dict[str, Any]:
    values: dict[str, Any] = {}
    offset = 0
    for spec in inputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequestError("each input must be an object with name, datatype, shape, data")
        size = (spec.get("parameters") or {}).get("binary_data_size")
        chunk = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequestError(f"input {spec['name']!r}: binary_data_size {size!r} is wrong")
            chunk = binary[offset : offset + size]
            offset += size
        values[spec["name"]] = tensors.decode_input(spec, chunk)
    return values


def _requested_outputs(payload: dict[str, Any]) -> tuple[dict[str, bool], bool]:
    parameters = payload.get("parameters") or {}
    binary_default = bool(parameters.get("binary_data_output", False))
    wanted: dict[str, bool] = {}
    for output in payload.get("outputs") or []:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise BadRequestError("each requested output must be an object with a name")
        wanted[output["name"]] = bool(
            (output.get("parameters") or {}).get("binary_data", binary_default)
        )
    return wanted, binary_default
