"""Every client mistake is a 4xx with {"error": "..."}, and the server keeps serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.model.preprocessing import HOUSING_FEATURES

from ..conftest import make_client

HOUSE = dict.fromkeys(HOUSING_FEATURES, 1.0)
JSON = {"content-type": "application/json"}


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((5000, 5000), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()  # a few kB that would decode to 25 million pixels


CASES = [
    # (method, path, body bytes, headers, status, words in the message)
    ("POST", "/v1/sentiment", b'{"text": "unterminated', JSON, 400, "malformed JSON"),
    ("POST", "/v1/sentiment", b"", JSON, 400, "empty"),
    ("POST", "/v1/sentiment", b'["a list"]', JSON, 422, "expected a JSON object"),
    ("POST", "/v1/sentiment", b'{"text": ""}', JSON, 422, "text is empty"),
    ("POST", "/v1/sentiment", b'{"text": 5}', JSON, 422, "text"),
    ("POST", "/v1/sentiment", b'{"review": "good"}', JSON, 422, "accepted fields"),
    ("POST", "/v1/sentiment", b'{"text": "a", "texts": ["b"]}', JSON, 422, "exactly one"),
    ("POST", "/v1/sentiment", b'{"texts": []}', JSON, 422, "at least one"),
    ("POST", "/v1/sentiment", b'{"text": "caf\xe9"}', JSON, 400, "malformed JSON"),
    (
        "POST",
        "/v1/sentiment",
        b'{"text": "' + b"word " * 30_000 + b'"}',
        JSON,
        422,
        "at most 100000",
    ),
    (
        "POST",
        "/v1/sentiment",
        b"good film",
        {"content-type": "text/plain"},
        415,
        "application/json",
    ),
    ("POST", "/v1/topics", b'{"text": "oil prices", "top_k": 0}', JSON, 422, "top_k"),
    ("POST", "/v1/digits", b'{"pixels": [1, 2, 3]}', JSON, 422, "784 pixel values"),
    ("POST", "/v1/digits", b'{"pixels": [' + b"NaN," * 783 + b"1]}", JSON, 400, "malformed JSON"),
    ("POST", "/v1/digits", b'{"pixels": [' + b"1e999," * 783 + b"1]}", JSON, 400, "infinity"),
    ("POST", "/v1/digits", b'{"pixels": [' + b'"x",' * 783 + b"1]}", JSON, 422, "numbers"),
    ("POST", "/v1/digits", b"not an image", {"content-type": "image/png"}, 422, "PNG or JPEG"),
    ("POST", "/v1/digits", _bomb(), {"content-type": "image/png"}, 422, "pixels are accepted"),
    ("POST", "/v1/digits", b"<xml/>", {"content-type": "application/xml"}, 415, "image/png"),
    ("POST", "/v1/housing", b'{"features": {"CRIM": 1}}', JSON, 422, "missing ZN"),
    (
        "POST",
        "/v1/housing",
        b'{"features": ' + str(HOUSE | {"RM": "big"}).replace("'", '"').encode() + b"}",
        JSON,
        422,
        "RM must be a number",
    ),
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', JSON, 404, "unknown model"),
    ("POST", "/v2/models/mnist/versions/99/infer", b'{"inputs": []}', JSON, 404, "version 99"),
    (
        "POST",
        "/v2/models/mnist/infer",
        b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784], "data": [1, 2]}]}',
        JSON,
        422,
        "needs 784 values",
    ),
    (
        "POST",
        "/v2/models/mnist/infer",
        b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}',
        JSON,
        422,
        "takes one input 'pixels'",
    ),
    (
        "POST",
        "/v2/models/imdb/infer",
        b'{"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        JSON,
        422,
        "must be BYTES",
    ),
    (
        "POST",
        "/v2/models/mnist/infer",
        b'{"inputs": [{"name": "pixels", "datatype": "COMPLEX", "shape": [1], "data": [1]}]}',
        JSON,
        400,
        "datatype: Input should be 'BOOL'",
    ),
    ("POST", "/v2/models/mnist/infer", b'{"outputs": []}', JSON, 400, "inputs: Field required"),
    ("POST", "/v1/models/mnist:predict", b'{"instances": [[1, 2]]}', JSON, 422, "784"),
    ("POST", "/v1/models/mnist:predict", b'{"instances": [], "inputs": []}', JSON, 400, "either"),
    ("POST", "/v1/models/mnist:classify", b'{"instances": [[1]]}', JSON, 404, "no route"),
    ("POST", "/v1/models/ghost:predict", b'{"instances": [[1]]}', JSON, 404, "unknown model"),
    ("GET", "/v1/models/ghost", b"", {}, 404, "unknown model"),
    ("GET", "/v2/models/mnist/versions/abc", b"", {}, 400, "version"),
    ("GET", "/no/such/route", b"", {}, 404, "no route"),
    ("DELETE", "/v1/sentiment", b"", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "words"), CASES,
                         ids=[f"{c[4]}-{c[1]}-{i}" for i, c in enumerate(CASES)])  # fmt: skip
def test_client_mistakes_get_a_4xx_with_a_clear_error(client, method, path, body, headers, status,
                                                      words):  # fmt: skip
    response = client.request(method, path, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200


def test_body_over_the_size_limit_gets_413():
    with make_client(max_body_bytes=4096) as small:
        response = small.post("/v1/sentiment", content=b'{"text": "' + b"a" * 5000 + b'"}',
                              headers=JSON)  # fmt: skip

        assert response.status_code == 413
        assert "at most 4096" in response.json()["error"]


def test_too_many_items_in_one_request_gets_422():
    with make_client(max_items=4) as small:
        response = small.post("/v1/sentiment", json={"texts": ["good"] * 5})

        assert response.status_code == 422
        assert "at most 4" in response.json()["error"]


def _requests(model: str, route: str, code: int) -> float:
    from prometheus_client import REGISTRY

    labels = {"model": model, "route": route, "code": str(code)}
    return REGISTRY.get_sample_value("dlwp_requests_total", labels) or 0.0


def test_a_refused_request_is_counted_under_its_model_once_the_model_is_known(client):
    infer = "/v2/models/{name}/infer"
    wrong_input = {"inputs": [{"name": "pixels", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    before = _requests("imdb", infer, 422), _requests("", infer, 404)
    assert client.post("/v2/models/imdb/infer", json=wrong_input).status_code == 422
    assert client.post("/v2/models/no-such-model/infer", json=wrong_input).status_code == 404
    after = _requests("imdb", infer, 422), _requests("", infer, 404)
    # A name a client made up never becomes a label: it would add a series per typo.
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
