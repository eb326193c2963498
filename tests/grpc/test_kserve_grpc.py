"""KServe's own Python gRPC client (`kserve.InferenceGRPCClient`), unchanged, against a live
server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

kserve = pytest.importorskip("kserve", reason="kserve (KServe's Python SDK) is a dev dependency")

T = TypeVar("T")
HOUSE_ROWS = [
    [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98],
    [0.0273, 0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242, 17.8, 396.9, 9.14],
]


def _with_client(target: str, call: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        async with kserve.InferenceGRPCClient(url=target, timeout=20) as client:
            return await call(client)

    return asyncio.run(run())


def test_the_grpc_client_sees_a_live_and_ready_server_and_model(server):
    live = _with_client(server.grpc_target, lambda c: c.is_server_live())
    ready = _with_client(server.grpc_target, lambda c: c.is_server_ready())
    model = _with_client(server.grpc_target, lambda c: c.is_model_ready("housing"))

    assert (live, ready, model) == (True, True, True)


def test_the_grpc_client_predicts_house_prices_as_rest_does(server):
    values = np.asarray(HOUSE_ROWS, dtype=np.float32)
    tensor = kserve.InferInput(name="features", shape=list(values.shape), datatype="FP32")
    tensor.set_data_from_numpy(values)
    request = kserve.InferRequest(model_name="housing", infer_inputs=[tensor], request_id="g-1")

    response = _with_client(server.grpc_target, lambda c: c.infer(request))

    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 13],
                        "data": HOUSE_ROWS}]}  # fmt: skip
    rest = httpx.post(f"{server.url}/v2/models/housing/infer", json=body).json()["outputs"][0]
    assert response.model_name == "housing" and response.id == "g-1"
    np.testing.assert_allclose(
        response.outputs[0].as_numpy(), np.asarray(rest["data"]).reshape(rest["shape"]), rtol=1e-5
    )
