"""Typed tensors of the Open Inference Protocol (KServe V2): JSON data and binary extension."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service.errors import BadRequestError, InvalidInputError
from service.protocols.schemas import RequestInput

NUMERIC_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


def element_count(shape: list[int]) -> int:
    return math.prod(shape)


def decode_input(spec: RequestInput, binary: bytes | None, booleans: bool = True) -> Any:
    """One V2 input → a numpy array of its shape (numbers) or a flat list of str/bytes (BYTES).

    The envelope (`spec`) is already type-checked; this checks the contents against the
    datatype and the shape: 422 for a mismatch, never a silent cast. `booleans=False` says the
    request holds no JSON true/false, which spares a scan of numeric data for them.
    """
    name, datatype, shape = spec.name, spec.datatype, spec.shape
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_elements(binary, count) if binary is not None else _json_bytes(spec, count)
    dtype = np.dtype(NUMERIC_TYPES[datatype])
    if binary is not None:
        expected = count * dtype.itemsize
        if len(binary) != expected:
            raise InvalidInputError(
                f"input {name!r}: {len(binary)} bytes of binary data, shape {shape} of {datatype} "
                f"needs {expected}"
            )
        array = np.frombuffer(binary, dtype=dtype.newbyteorder("<"))
    else:
        array = _json_numbers(spec, _data(spec), dtype, booleans)
    if array.size != count:
        raise InvalidInputError(
            f"input {name!r}: shape {shape} needs {count} values, got {array.size}"
        )
    return array.reshape(shape)


def _data(spec: RequestInput) -> list[Any]:
    if spec.data is None:
        raise BadRequestError(
            f"input {spec.name!r} has no 'data' (nor parameters.binary_data_size)"
        )
    return spec.data


# The JSON values each datatype accepts, by numpy's kind of the array they parse into: numbers
# for numbers (integers only for integer types), booleans for BOOL. Strings, nulls, objects and
# ragged nesting parse into other kinds (or fail) and are refused rather than converted.
_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _json_numbers(
    spec: RequestInput, data: list[Any], dtype: np.dtype[Any], booleans: bool
) -> np.ndarray:
    try:
        parsed = np.asarray(data)
    except (TypeError, ValueError, OverflowError):
        raise _not_values(spec, dtype) from None
    kind = dtype.kind
    if parsed.dtype.kind not in _KINDS[kind]:
        raise _not_values(spec, dtype)
    # numpy reads true as 1 among numbers: only a scan can tell, and only when there may be one.
    if booleans and kind != "b" and _holds_boolean(data):
        raise _not_values(spec, dtype)
    if kind in "iu" and parsed.size:
        limits = np.iinfo(dtype)
        if parsed.min() < limits.min or parsed.max() > limits.max:
            raise _not_values(spec, dtype)
    try:
        with np.errstate(over="raise"):  # a value beyond FP16's or FP32's range
            return parsed.astype(dtype, copy=False)
    except FloatingPointError:
        raise _not_values(spec, dtype) from None


def _not_values(spec: RequestInput, dtype: np.dtype[Any]) -> InvalidInputError:
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        kind = f"integers in [{limits.min}, {limits.max}]"
    else:
        kind = "true/false" if dtype.kind == "b" else "finite numbers"
    return InvalidInputError(
        f"input {spec.name!r}: data must be {spec.datatype} values ({kind}) in an array of "
        f"the tensor's shape"
    )


def _holds_boolean(data: list[Any]) -> bool:
    for item in data:
        if item is True or item is False or (isinstance(item, list) and _holds_boolean(item)):
            return True
    return False


def _json_bytes(spec: RequestInput, count: int) -> list[Any]:
    flat = list(_flatten(_data(spec)))
    if len(flat) != count:
        raise InvalidInputError(
            f"input {spec.name!r}: shape {spec.shape} needs {count} values, got {len(flat)}"
        )
    # JSON gives strings; gRPC's typed bytes_contents gives bytes. Nothing else is a BYTES element.
    if not all(isinstance(value, (str, bytes)) for value in flat):
        raise InvalidInputError(f"input {spec.name!r}: BYTES data must be strings")
    return flat


def _flatten(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _bytes_elements(binary: bytes, count: int) -> list[bytes]:
    values, offset = [], 0
    while offset < len(binary):
        if offset + 4 > len(binary):
            raise InvalidInputError("BYTES binary data is truncated")
        (length,) = struct.unpack_from("<I", binary, offset)
        offset += 4
        values.append(binary[offset : offset + length])
        offset += length
    if offset != len(binary) or len(values) != count:
        raise InvalidInputError(
            f"BYTES binary data holds {len(values)} elements, shape needs {count}"
        )
    return values


def encode_output(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """One FP32 output as V2 JSON (data inline) or as a header plus raw little-endian bytes."""
    array = np.ascontiguousarray(array, dtype="<f4")
    spec: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
    if binary:
        raw = array.tobytes()
        spec["parameters"] = {"binary_data_size": len(raw)}
        return spec, raw
    spec["data"] = array.reshape(-1)
    return spec, b""
