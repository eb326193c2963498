"""KServe's Python SDK (`kserve`), run in a child process.

The SDK and tritonclient both register protobuf messages named `inference.*` in protobuf's
default descriptor pool, so whichever is imported second in one process fails with "duplicate
symbol". The tests therefore never import `kserve`: `call_sdk` hands a batch of calls, as JSON,
to this module run as a script, which makes them with the SDK, unchanged, and prints the
results as JSON.

A call is `{"transport": "v1" | "v2" | "grpc", "address": ..., "method": ..., "args": [...],
"kwargs": {...}, "request": {...}}`. `address` is the server URL for REST (passed as the
method's first argument, as the SDK's REST client takes it) and the `host:port` target for gRPC
(given to the client). `request`, where present, becomes an `InferRequest` appended to `args`:
`{"model_name", "id", "inputs": [{"name", "datatype", "data", "binary"?}]}`, where `data` is a
nested list (strings for BYTES) whose shape is the tensor's. An `InferResponse` comes back as
`{"model_name", "id", "outputs": [{"name", "datatype", "shape", "data"}]}` with `data` the
output's `as_numpy()` as a nested list; anything else comes back as the SDK returned it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from typing import Any

SDK_TIMEOUT_S = 120
SDK_MISSING = importlib.util.find_spec("kserve") is None


def call_sdk(*calls: dict[str, Any]) -> list[Any]:
    """Make `calls` with the SDK in one child process; their results, in order."""
    done = subprocess.run(
        [sys.executable, __file__],
        input=json.dumps(list(calls)),
        check=True,
        capture_output=True,
        text=True,
        timeout=SDK_TIMEOUT_S,
    )
    results: list[Any] = json.loads(done.stdout.splitlines()[-1])
    return results


def _infer_request(kserve: Any, spec: dict[str, Any]) -> Any:
    import numpy as np

    tensors = []
    for tensor_spec in spec["inputs"]:
        if tensor_spec["datatype"] == "BYTES":
            values = np.array([value.encode() for value in tensor_spec["data"]], dtype=object)
        else:
            values = np.array(tensor_spec["data"], dtype=np.float32)
        tensor = kserve.InferInput(
            name=tensor_spec["name"], shape=list(values.shape), datatype=tensor_spec["datatype"]
        )
        binary = {"binary_data": tensor_spec["binary"]} if "binary" in tensor_spec else {}
        tensor.set_data_from_numpy(values, **binary)
        tensors.append(tensor)
    return kserve.InferRequest(
        model_name=spec["model_name"], infer_inputs=tensors, request_id=spec["id"]
    )


def _plain(kserve: Any, result: Any) -> Any:
    if isinstance(result, kserve.InferResponse):
        return {
            "model_name": result.model_name,
            "id": result.id,
            "outputs": [
                {"name": output.name, "datatype": output.datatype, "shape": list(output.shape),
                 "data": output.as_numpy().tolist()}
                for output in result.outputs
            ],
        }  # fmt: skip
    return result


async def _call(kserve: Any, call: dict[str, Any]) -> Any:
    args = list(call.get("args", []))
    if "request" in call:
        args.append(_infer_request(kserve, call["request"]))
    kwargs = call.get("kwargs", {})
    if call["transport"] == "grpc":
        async with kserve.InferenceGRPCClient(url=call["address"], timeout=20) as client:
            return _plain(kserve, await getattr(client, call["method"])(*args, **kwargs))
    config = kserve.RESTConfig(protocol=call["transport"])
    async with kserve.InferenceRESTClient(config) as client:
        method = getattr(client, call["method"])
        return _plain(kserve, await method(call["address"], *args, **kwargs))


async def _run(calls: list[dict[str, Any]]) -> list[Any]:
    import kserve  # only here, in the child: see the module docstring

    return [await _call(kserve, call) for call in calls]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_run(json.load(sys.stdin)))))
