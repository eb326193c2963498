"""Protocol messages ↔ the Open Inference Protocol's neutral form (`service.protocols.v2`).

Inputs become the same `{name: values}` the REST route decodes, through the same
`tensors.decode_input`, so both fronts accept, convert and refuse tensors alike.
"""

from __future__ import annotations

from typing import Any

from service.dataplane.plane import Inference
from service.errors import BadRequestError, InvalidInputError
from service.grpc import protocol
from service.protocols import schemas, tensors, v2
from service.repository.repository import ServedVersion

# The typed-contents field that carries each datatype's elements. FP16 has none (raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def decode_inputs(request: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A ModelInferRequest's inputs → (values by name, datatypes by name), raw or typed."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "send one per input, in order, or use typed contents for all"
        )
    values: dict[str, Any] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        envelope = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        # The same envelope checks as REST V2 (datatype, shape), with the same messages.
        spec = schemas.parse(schemas.RequestInput, envelope, BadRequestError)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequestError(
                    f"input {tensor.name!r} has typed contents and raw_input_contents: use one"
                )
            values[tensor.name] = tensors.decode_input(spec, raw[index])
        else:
            # Typed contents are typed by protobuf: no JSON true/false to look for among numbers.
            typed = spec.model_copy(update={"data": _typed_data(tensor)})
            values[tensor.name] = tensors.decode_input(typed, None, booleans=False)
        datatypes[tensor.name] = tensor.datatype
    return values, datatypes


def _typed_data(tensor: Any) -> Any:
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        if tensor.datatype in tensors.NUMERIC_TYPES:
            raise BadRequestError(
                f"input {tensor.name!r}: {tensor.datatype} has no typed contents; "
                "send it in raw_input_contents"
            )
        return []  # decode_input names the unsupported datatype
    data = getattr(tensor.contents, field)
    if not data:
        used = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
        if used:
            raise InvalidInputError(
                f"input {tensor.name!r} is {tensor.datatype}: its values go in "
                f"contents.{field}, got {', '.join(used)}"
            )
    # Numbers go to numpy straight from the repeated field (decode_input's np.asarray);
    # BYTES elements become the flat list of bytes the JSON route also produces.
    return list(data) if field == "bytes_contents" else data


def infer_response(inference: Inference, output_name: str, raw: bool, request_id: str) -> Any:
    """The model's outputs as a ModelInferResponse: raw contents, or typed ones."""
    spec, data = tensors.encode_output(output_name, inference.outputs, raw)
    response = protocol.ModelInferResponse(
        model_name=inference.model, model_version=str(inference.version), id=request_id
    )
    tensor = response.outputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
    if raw:
        response.raw_output_contents.append(data)
    else:
        getattr(tensor.contents, CONTENTS_FIELD[spec["datatype"]]).extend(spec["data"].tolist())
    return response


def model_metadata(served: ServedVersion) -> Any:
    """A served version's metadata (as REST answers it), as a ModelMetadataResponse."""
    meta = v2.model_metadata(served)
    return protocol.ModelMetadataResponse(
        name=meta["name"],
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=[_tensor_metadata(spec) for spec in meta["inputs"]],
        outputs=[_tensor_metadata(spec) for spec in meta["outputs"]],
    )


def _tensor_metadata(spec: dict[str, Any]) -> Any:
    return protocol.ModelMetadataResponse.TensorMetadata(
        name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
    )


def server_metadata() -> Any:
    return protocol.ServerMetadataResponse(**v2.SERVER_METADATA)
