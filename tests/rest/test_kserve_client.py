"""KServe's own Python client (the `kserve` SDK), unchanged, against a live server: its V1 and
V2 REST clients, with JSON and binary tensors. The SDK runs in a child process (see
`tests.support.kserve_sdk`): it and tritonclient cannot share one."""

from __future__ import annotations

from typing import Any

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
REVIEWS = ["A wonderful, moving film. Superb acting.", "Dull, predictable and far too long."]


def _reference(url: str, model: str, name: str, datatype: str, rows: list[Any]) -> np.ndarray:
    """The server's own answer to a plain V2 JSON request, to compare the SDK's against."""
    shape = [len(rows)] if datatype == "BYTES" else [len(rows), len(rows[0])]
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": rows}]}
    output = httpx.post(f"{url}/v2/models/{model}/infer", json=body).json()["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def test_the_v1_client_sees_a_live_server_and_a_ready_model(server):
    live, ready = call_sdk(
        {"transport": "v1", "address": server.url, "method": "is_server_live"},
        {"transport": "v1", "address": server.url, "method": "is_model_ready",
         "args": ["housing"]},
    )  # fmt: skip

    assert live is True
    assert ready is True


def test_the_v1_client_predicts_house_prices(server):
    [answer] = call_sdk(
        {"transport": "v1", "address": server.url, "method": "infer",
         "args": [{"instances": HOUSE_ROWS}], "kwargs": {"model_name": "housing"}}
    )  # fmt: skip

    expected = _reference(server.url, "housing", "features", "FP32", HOUSE_ROWS)
    prices = np.asarray(answer["predictions"], dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(prices, expected, rtol=1e-5)


def test_the_v2_client_sees_a_live_and_ready_server_and_model(server):
    live, ready, model = call_sdk(
        {"transport": "v2", "address": server.url, "method": "is_server_live"},
        {"transport": "v2", "address": server.url, "method": "is_server_ready"},
        {"transport": "v2", "address": server.url, "method": "is_model_ready",
         "args": ["mnist"]},
    )  # fmt: skip

    assert (live, ready, model) == (True, True, True)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    ("model", "name", "datatype", "rows"),
    [("housing", "features", "FP32", HOUSE_ROWS), ("imdb", "text", "BYTES", REVIEWS)],
    ids=["housing", "imdb"],
)
def test_the_v2_client_infers_with_json_and_binary_tensors(server, model, name, datatype, rows,
                                                          binary):  # fmt: skip
    request = {
        "model_name": model,
        "id": "r-1",
        "inputs": [{"name": name, "datatype": datatype, "data": rows, "binary": binary}],
    }

    [response] = call_sdk(
        {"transport": "v2", "address": server.url, "method": "infer", "request": request,
         "kwargs": {"model_name": model}}
    )  # fmt: skip

    assert response["model_name"] == model and response["id"] == "r-1"
    expected = _reference(server.url, model, name, datatype, rows)
    np.testing.assert_allclose(np.asarray(response["outputs"][0]["data"]), expected, rtol=1e-5)


def test_a_model_name_in_the_body_must_match_the_path(server):
    body = {"model_name": "mnist",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13],
                        "data": HOUSE_ROWS[0]}]}  # fmt: skip

    response = httpx.post(f"{server.url}/v2/models/housing/infer", json=body)

    assert response.status_code == 400
    assert "'mnist'" in response.json()["error"] and "'housing'" in response.json()["error"]
