"""KServe's own Python gRPC client (`kserve.InferenceGRPCClient`), unchanged, against a live
server. The SDK runs in a child process (see `tests.support.kserve_sdk`): it and tritonclient
cannot share one."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from ..support.kserve_sdk import SDK_MISSING, call_sdk

pytestmark = pytest.mark.skipif(
    SDK_MISSING, reason="kserve (KServe's Python SDK) is a dev dependency"
)

HOUSE_ROWS = [
    [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98],
    [0.0273, 0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242, 17.8, 396.9, 9.14],
]


def test_the_grpc_client_sees_a_live_and_ready_server_and_model(server):
    live, ready, model = call_sdk(
        {"transport": "grpc", "address": server.grpc_target, "method": "is_server_live"},
        {"transport": "grpc", "address": server.grpc_target, "method": "is_server_ready"},
        {"transport": "grpc", "address": server.grpc_target, "method": "is_model_ready",
         "args": ["housing"]},
    )  # fmt: skip

    assert (live, ready, model) == (True, True, True)


def test_the_grpc_client_predicts_house_prices_as_rest_does(server):
    request = {
        "model_name": "housing",
        "id": "g-1",
        "inputs": [{"name": "features", "datatype": "FP32", "data": HOUSE_ROWS}],
    }

    [response] = call_sdk(
        {"transport": "grpc", "address": server.grpc_target, "method": "infer",
         "request": request}
    )  # fmt: skip

    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 13],
                        "data": HOUSE_ROWS}]}  # fmt: skip
    rest = httpx.post(f"{server.url}/v2/models/housing/infer", json=body).json()["outputs"][0]
    assert response["model_name"] == "housing" and response["id"] == "g-1"
    np.testing.assert_allclose(
        np.asarray(response["outputs"][0]["data"]),
        np.asarray(rest["data"]).reshape(rest["shape"]),
        rtol=1e-5,
    )
