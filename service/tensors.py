"""Typed tensors of the Open Inference Protocol (KServe V2): JSON data and binary extension."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service.errors import BadRequestError, InvalidInputError

NUMERIC_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


def element_count(shape: Any) -> int:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequestError(
            f"tensor shape must be a list of non-negative integers, got {shape!r}"
        )
    return math.prod(shape)


def decode_input(spec: dict[str, Any], binary: bytes | None) -> Any:
    """One V2 input → a numpy array of its shape (numbers) or a flat list of str/bytes (BYTES)."""
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    count = element_count(shape)
    if datatype == "BYTES":
        values = _bytes_elements(binary, count) if binary is not None else _json_bytes(spec, count)
        return values
    dtype = NUMERIC_TYPES.get(str(datatype))
    if dtype is None:
        raise BadRequestError(
            f"input {name!r}: unsupported datatype {datatype!r}; use one of "
            f"{', '.join(NUMERIC_TYPES)} or BYTES"
        )
    if binary is not None:
        expected = count * np.dtype(dtype).itemsize
        if len(binary) != expected:
            raise InvalidInputError(
                f"input {name!r}: {len(binary)} bytes of binary data, shape {shape} of {datatype} "
                f"needs {expected}"
            )
        array = np.frombuffer(binary, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        data = spec.get("data")
        if data is None:
            raise BadRequestError(f"input {name!r} has no 'data'")
        try:
            array = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInputError(
                f"input {name!r}: data must be {datatype} numbers in a rectangular array"
            ) from None
    if array.size != count:
        raise InvalidInputError(
            f"input {name!r}: shape {shape} needs {count} values, got {array.size}"
        )
    return array.reshape(shape)


def _json_bytes(spec: dict[str, Any], count: int) -> list[Any]:
    data = spec.get("data")
    if data is None:
        raise BadRequestError(f"input {spec.get('name')!r} has no 'data'")
    flat = list(_flatten(data))
    if len(flat) != count:
        raise InvalidInputError(
            f"input {spec.get('name')!r}: shape {spec.get('shape')} needs {count} values, "
            f"got {len(flat)}"
        )
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
