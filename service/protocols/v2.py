"""The Open Inference Protocol (KServe V2), apart from how it travels.

Server and model metadata, the checks on inputs and requested outputs, and the JSON + binary
tensor encoding of a REST request's inputs into `{name: values}`. The REST routes
(`service.rest.routes.v2`) and the gRPC servicer (`service.grpc`) both call these, so both
fronts accept, refuse and describe the same things with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.errors import BadRequestError, InvalidInputError
from service.model.codecs import Codec, Encoded
from service.protocols import schemas, tensors
from service.repository.repository import ServedVersion

SERVER_VERSION = "0.1.0"
SERVER_METADATA = {
    "name": "dlwp-serving",
    "version": SERVER_VERSION,
    "extensions": ["binary_tensor_data", "model_repository"],
}
# The binary tensor extension: the body is this many bytes of JSON, then the raw tensors.
HEADER_LENGTH = "inference-header-content-length"


def model_metadata(served: ServedVersion) -> dict[str, Any]:
    """A served version's metadata: its tensors, and its task, labels and test metrics."""
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


def encode_inputs(
    codec: Codec, model: str, values: dict[str, Any], datatypes: dict[str, Any]
) -> Encoded:
    """Decoded input tensors (by name) → model rows: one input, the signature's name and kind."""
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
    return codec.encode_tensor(values[expected.name])


def check_outputs(served: ServedVersion, requested: Iterable[str]) -> str:
    """The served output's name; a requested output the model does not give is refused."""
    output_name = served.codec.output_spec.name
    for name in requested:
        if name != output_name:
            raise InvalidInputError(f"unknown output {name!r}; {served.name} gives {output_name!r}")
    return output_name


# ------------------------------------------------------------------ JSON + binary tensor bodies


def split_binary(header_length: str | None, body: bytes) -> tuple[bytes, bytes]:
    """A body as (JSON header, binary tensors), given `Inference-Header-Content-Length`."""
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {header_length!r} but the body has "
            f"{len(body)} bytes"
        )
    return body[: int(header_length)], body[int(header_length) :]


def decode_inputs(
    inputs: list[schemas.RequestInput], binary: bytes, booleans: bool
) -> dict[str, Any]:
    """A request's inputs → `{name: values}`, each from its JSON `data` or its binary slice.

    `booleans=False` says the JSON holds no true/false (see `tensors.decode_input`).
    """
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


def requested_outputs(payload: schemas.InferenceRequest) -> tuple[dict[str, bool], bool]:
    """(each requested output → whether it goes back binary, the binary default)."""
    binary_default = bool(payload.parameters and payload.parameters.binary_data_output)
    wanted: dict[str, bool] = {}
    for output in payload.outputs or []:
        binary = output.parameters.binary_data if output.parameters else None
        wanted[output.name] = binary_default if binary is None else binary
    return wanted, binary_default
