"""A real `dlwp serve` process: every route family, a standard V2 client, overload, metrics."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ServerProcess

HOUSE_ROW = [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]
REVIEW = "A wonderful, moving film. The acting was superb and I loved every minute of it."


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_each_route_family_answers_over_real_http(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        task = http.post("/v1/housing", json={"features": dict(zip(
            ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO",
             "B", "LSTAT"), HOUSE_ROW, strict=True))})  # fmt: skip
        v2 = http.post(
            "/v2/models/housing/infer",
            json={
                "inputs": [
                    {"name": "features", "datatype": "FP32", "shape": [1, 13], "data": HOUSE_ROW}
                ]
            },
        )
        tfs = http.post("/v1/models/housing:predict", json={"instances": [HOUSE_ROW]})
        tfs_versioned = http.post("/v1/models/imdb/versions/1:predict",
                                  json={"inputs": {"text": [REVIEW]}})  # fmt: skip
        metadata = http.get("/v2/models/housing")
        status = http.get("/v1/models/housing")

    price = task.json()["predictions"][0]["price"]
    assert v2.json()["outputs"][0]["data"][0] == pytest.approx(price, rel=1e-4)
    assert tfs.json()["predictions"][0][0] == pytest.approx(price, rel=1e-4)
    assert tfs_versioned.json()["outputs"][0][0] > 0.5
    assert metadata.json()["inputs"][0] == {"name": "features", "datatype": "FP32",
                                            "shape": [-1, 13]}  # fmt: skip
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_tritonclient_infers_on_all_four_models(server):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.get_model_metadata("imdb")["inputs"][0]["datatype"] == "BYTES"

    def infer(model, name, array, datatype, binary):  # type: ignore[no-untyped-def]
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        output = client.get_model_metadata(model)["outputs"][0]["name"]
        result = client.infer(
            model, [tensor], outputs=[triton.InferRequestedOutput(output, binary_data=binary)]
        )
        return result.as_numpy(output)

    digit = np.zeros((1, 784), dtype=np.float32)
    digit[0, 28 * 6 + 13 : 28 * 6 + 15] = 255  # ink, so the output is not degenerate
    for binary in (True, False):
        probabilities = infer("mnist", "pixels", digit, "FP32", binary)
        assert probabilities.shape == (1, 10)
        assert probabilities.sum() == pytest.approx(1, abs=1e-4)
        sentiment = infer("imdb", "text", np.array([REVIEW.encode()], dtype=np.object_),
                          "BYTES", binary)  # fmt: skip
        assert sentiment[0, 0] > 0.5
        topics = infer("reuters", "text", np.array([b"Shr 45 cts vs 38 cts net"], np.object_),
                       "BYTES", binary)  # fmt: skip
        assert topics.argmax() == 3  # earn
        price = infer("housing", "features", np.array([HOUSE_ROW], np.float32), "FP32", binary)
        assert 15 < price[0, 0] < 40


def test_64_concurrent_requests_are_batched(server):
    digit = {"instances": [[0.0] * 784]}

    def send(_: int) -> int:
        return httpx.post(
            f"{server.url}/v1/models/mnist:predict", json=digit, timeout=10
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(send, range(256)))

    assert codes == [200] * 256
    text = httpx.get(f"{server.url}/metrics").text
    counts = _samples(text, "dlwp_batch_size_count")
    sums = _samples(text, "dlwp_batch_size_sum")
    key = (("model", "mnist"),)
    assert sums[key] / counts[key] > 1, "mean batch size above one"
    requests = _samples(text, "dlwp_requests_total")
    assert requests[(("code", "200"), ("model", "mnist"),
                     ("route", "/v1/models/{name}:predict"))] >= 256  # fmt: skip


def test_two_workers_counts_add_up():
    server = ServerProcess(workers=2).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(40):
                # New connections, so the kernel spreads them over both workers.
                httpx.post(f"{server.url}/v1/sentiment", json={"text": REVIEW}, timeout=10)
            time.sleep(0.2)  # a request is counted just after its response is sent
            texts = [http.get("/metrics").text for _ in range(6)]
        for text in texts:
            counts = _samples(text, "dlwp_requests_total")
            total = sum(v for k, v in counts.items() if ("model", "imdb") in k)
            assert total == 40, "every scrape sees both workers' requests"
    finally:
        server.stop()


def test_batched_answers_equal_unbatched_answers_row_for_row(server):
    rows = np.random.default_rng(7).integers(0, 256, size=(24, 784)).astype(float).tolist()
    url = f"{server.url}/v1/models/mnist:predict"

    def one(row: list[float]) -> list[float]:
        response = httpx.post(url, json={"instances": [row]}, timeout=10)
        return list(response.json()["predictions"][0])

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        concurrent_rows = list(pool.map(one, rows))
    together = httpx.post(url, json={"instances": rows}, timeout=10).json()["predictions"]

    np.testing.assert_allclose(concurrent_rows, together, rtol=1e-5, atol=1e-6)


def test_a_malformed_request_among_good_ones_fails_alone(server):
    good = {"instances": [[0.0] * 784]}
    bad = [
        {"instances": [[0.0] * 783]},
        {"instances": [["x"] * 784]},
        {"instances": [[-1.0] * 784]},
    ]
    bodies = [good] * 30 + bad + [good] * 30

    def send(body: dict) -> httpx.Response:  # type: ignore[type-arg]
        return httpx.post(f"{server.url}/v1/models/mnist:predict", json=body, timeout=10)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(send, bodies))

    codes = [r.status_code for r in responses]
    assert codes == [200] * 30 + [422] * 3 + [200] * 30
    assert all(len(r.json()["predictions"][0]) == 10 for r in responses if r.status_code == 200)
