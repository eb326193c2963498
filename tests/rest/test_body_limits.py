"""A body over DLWP_MAX_BODY_BYTES gets 413 and the JSON error on every route, whether it comes
with a Content-Length or chunked (no length, as streaming clients send)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.servers import ServerProcess

from ..conftest import COMMITTED_MODELS, make_client

LIMIT = 4096
BOUNDARY = "dlwp-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
JSON = "application/json"
# Every route that takes a body, with the content type its clients send.
ROUTES = [
    ("/v1/sentiment", JSON),
    ("/v1/topics", JSON),
    ("/v1/digits", JSON),
    ("/v1/digits", "image/png"),
    ("/v1/digits", MULTIPART),
    ("/v1/housing", JSON),
    ("/v2/models/imdb/infer", JSON),
    ("/v2/models/mnist/versions/1/infer", JSON),
    ("/v1/models/housing:predict", JSON),
    ("/v1/models/imdb:explain", JSON),
    ("/v2/repository/models/imdb/load", JSON),
]
IDS = [f"{path}-{kind.split(';')[0]}" for path, kind in ROUTES]


def _body(content_type: str, size: int) -> bytes:
    """`size` bytes shaped like what the route takes (the shape does not matter past the limit)."""
    if content_type == MULTIPART:
        head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.png"'
                "\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        return head + b"\x89PNG" + b"\0" * (size - len(head) - len(tail) - 4) + tail
    if content_type == "image/png":
        return b"\x89PNG" + b"\0" * (size - 4)
    prefix = b'{"text": "'
    return prefix + b"a" * (size - len(prefix) - 2) + b'"}'


def _chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    assert f"at most {LIMIT}" in response.json()["error"]


@pytest.fixture(scope="module")
def small() -> Iterator[TestClient]:
    with make_client(max_body_bytes=LIMIT) as client:
        yield client


@pytest.fixture(scope="module")
def small_server() -> Iterator[ServerProcess]:
    env = {"DLWP_MODELS_DIR": str(COMMITTED_MODELS), "DLWP_MAX_BODY_BYTES": str(LIMIT)}
    process = ServerProcess(env, name="body-limit").wait_ready()
    yield process
    process.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "content_type"), ROUTES, ids=IDS)
def test_a_body_over_the_limit_gets_413_on_a_live_server(small_server, path, content_type,
                                                         chunked):  # fmt: skip
    body = _body(content_type, LIMIT + 2000)

    response = httpx.post(small_server.url + path, headers={"Content-Type": content_type},
                          content=_chunks(body) if chunked else body, timeout=20)  # fmt: skip

    _assert_413(response)


@pytest.mark.parametrize(("path", "content_type"), ROUTES, ids=IDS)
def test_a_chunked_body_over_the_limit_gets_413_in_process(small, path, content_type):
    body = _body(content_type, LIMIT + 2000)

    response = small.post(path, headers={"Content-Type": content_type}, content=_chunks(body))

    _assert_413(response)


def test_a_chunked_body_within_the_limit_is_answered(small_server):
    body = b'{"texts": ["A wonderful, moving film.", "Dull and far too long."]}'

    response = httpx.post(small_server.url + "/v1/sentiment", headers={"Content-Type": JSON},
                          content=_chunks(body, 16), timeout=20)  # fmt: skip

    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == ["positive", "negative"]


def test_a_chunked_multipart_image_within_the_limit_is_answered(small):
    picture = io.BytesIO()
    Image.new("L", (28, 28), 0).save(picture, format="PNG")
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.png"'
            "\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip
    body = head + picture.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()

    response = small.post("/v1/digits", headers={"Content-Type": MULTIPART},
                          content=_chunks(body, 64))  # fmt: skip

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]["probabilities"]) == 10
