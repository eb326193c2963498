"""Repository control (load, unload, anything POSTed under /v2/repository/) is safe by default:
no web page on another site can drive it, it is off beyond loopback without an API key, and
any bytes sent as a token get 401, never 500. Read routes are never refused."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.servers import ServerProcess

from ..conftest import COMMITTED_MODELS, make_client

UNLOAD = "/v2/repository/models/imdb/unload"
LOAD = "/v2/repository/models/imdb/load"
# What an HTML form on another site posts: each of the three encodings a form can use.
FORMS = {
    "urlencoded": ("application/x-www-form-urlencoded", b"x=1"),
    "text-plain": ("text/plain", b"x=1\r\n"),
    "multipart": ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; '
                  b'name="x"\r\n\r\n1\r\n--b--\r\n'),
}  # fmt: skip
REVIEW = {"text": "A wonderful, moving film."}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(COMMITTED_MODELS / "imdb" / "1", folder / "imdb" / "1")
    return folder


@pytest.fixture(scope="module")
def local(models: Path) -> Iterator[TestClient]:
    """The default: listening on 127.0.0.1, no API key."""
    with make_client(models_dir=models) as client:
        yield client


def _imdb_served(client: TestClient | httpx.Client) -> bool:
    return client.get("/v2/models/imdb/ready").status_code == 200


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS))
@pytest.mark.parametrize("origin", [None, "http://evil.example"], ids=["no-origin", "origin"])
def test_a_cross_site_form_post_cannot_unload_a_model(local, form, origin):
    content_type, body = FORMS[form]
    headers = {"Content-Type": content_type} | ({"Origin": origin} if origin else {})

    response = local.post(UNLOAD, content=body, headers=headers)

    assert response.status_code == 403
    assert "application/json" in response.json()["error"]
    assert _imdb_served(local)


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "https://127.0.0.1", "http://127.0.0.1:8080", "null"],
    ids=["other-site", "other-scheme", "other-port", "null"],
)
def test_json_from_another_origin_cannot_unload_a_model(local, origin):
    response = local.post(UNLOAD, json={}, headers={"Origin": origin})

    assert response.status_code == 403
    assert "another site" in response.json()["error"]
    assert _imdb_served(local)


def test_curl_client_libraries_and_the_servers_own_pages_keep_control(local):
    curl = local.post(UNLOAD)  # no body, no Content-Type
    library = local.post(LOAD, content=b"{}")  # a body, no Content-Type (tritonclient)
    own_page = local.post(UNLOAD, json={}, headers={"Origin": "http://127.0.0.1"})
    own_page_again = local.post(LOAD, json={"parameters": {"version": 1}},
                                headers={"Origin": "http://127.0.0.1:80"})  # fmt: skip

    assert [r.status_code for r in (curl, library, own_page, own_page_again)] == [200] * 4
    assert _imdb_served(local)


def test_beyond_loopback_without_a_key_control_is_off_and_reads_work(models):
    with make_client(models_dir=models, host="0.0.0.0") as client:
        refused = client.post(UNLOAD)
        reads = [
            client.get("/v2/health/ready"),
            client.post("/v2/repository/index"),
            client.get("/v2/repository/index"),
            client.get("/v2/models/imdb"),
            client.post("/v1/sentiment", json=REVIEW),
            client.get("/metrics"),
        ]

        assert refused.status_code == 403
        assert "DLWP_API_KEY" in refused.json()["error"]
        assert "Authorization: Bearer" in refused.json()["error"]
        assert [r.status_code for r in reads] == [200] * len(reads)
        assert _imdb_served(client)


def test_beyond_loopback_with_a_key_control_needs_the_key(models):
    with make_client(models_dir=models, host="0.0.0.0", api_key="s3cret") as client:
        without = client.post(UNLOAD)
        wrong = client.post(UNLOAD, headers={"Authorization": "Bearer nope"})
        right = client.post(UNLOAD, headers={"Authorization": "Bearer s3cret"})
        back = client.post(LOAD, headers={"Authorization": "bearer s3cret"})

        assert without.status_code == 401 and without.headers["www-authenticate"] == "Bearer"
        assert wrong.status_code == 401
        assert (right.status_code, back.status_code) == (200, 200)


@pytest.mark.parametrize("token", [b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", "s3cr\u00e9t".encode()],
                         ids=["utf-8", "latin-1", "near-miss"])  # fmt: skip
def test_a_token_of_any_bytes_gets_401_never_500(models, token):
    with make_client(models_dir=models, api_key="s3cret") as client:
        response = client.post(UNLOAD, headers={"Authorization": b"Bearer " + token})

        assert response.status_code == 401
        assert _imdb_served(client)


def test_a_non_ascii_key_matches_its_utf8_bytes(models):
    with make_client(models_dir=models, api_key="sécret") as client:
        response = client.post(LOAD, headers={"Authorization": "Bearer sécret".encode()})

        assert response.status_code == 200


def test_every_post_under_the_repository_but_the_index_is_guarded(models):
    # A route declared later under /v2/repository/ (rollouts) is guarded by being there.
    with make_client(models_dir=models, host="0.0.0.0") as client:
        unknown = client.post("/v2/repository/models/imdb/rollout", json={})
        index = client.post("/v2/repository/index")

        assert unknown.status_code == 403
        assert index.status_code == 200


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.2", "[::1]:8000", "app.localhost"])
def test_a_loopback_server_takes_control_under_its_loopback_names(local, host):
    unload = local.post(UNLOAD, headers={"Host": host})
    load = local.post(LOAD, headers={"Host": host})

    assert (unload.status_code, load.status_code) == (200, 200)


def test_a_page_that_rebinds_its_name_to_loopback_cannot_unload_a_model(local):
    # evil.example's page, its name now resolving to 127.0.0.1: same origin as far as the
    # browser knows, so Origin and Host agree.
    headers = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}

    response = local.post(UNLOAD, json={}, headers=headers)

    assert response.status_code == 403
    assert "DLWP_API_KEY" in response.json()["error"]
    assert _imdb_served(local)


# ---------------------------------------------------------------------- against a live server


@pytest.fixture(scope="module")
def live(models: Path) -> Iterator[ServerProcess]:
    process = ServerProcess({"DLWP_MODELS_DIR": str(models)}, name="guard").wait_ready()
    yield process
    process.stop()


def test_the_issues_cross_site_form_does_not_unload_imdb_on_a_live_server(live):
    # Five times, as the report tried it: a form post from another site's page.
    with httpx.Client(base_url=live.url, timeout=10) as http:
        codes = [
            http.post(
                UNLOAD, data={"x": "1"}, headers={"Origin": "http://evil.example"}
            ).status_code
            for _ in range(5)
        ]

        assert codes == [403] * 5
        assert _imdb_served(http)


def test_a_non_ascii_token_gets_401_from_a_live_server(models):
    process = ServerProcess({"DLWP_MODELS_DIR": str(models), "DLWP_API_KEY": "s3cret"},
                            name="guard-key").wait_ready()  # fmt: skip
    try:
        host, port = process.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST " + UNLOAD.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
                         + b"\r\nAuthorization: Bearer \xc3\xa9\xff\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")  # fmt: skip
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    finally:
        process.stop()

    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"error"' in answer


def test_tritonclient_loads_and_unloads_unchanged(live):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    try:
        client.unload_model("imdb")
        unloaded = client.is_model_ready("imdb")
        client.load_model("imdb")
        loaded = client.is_model_ready("imdb")
    finally:
        client.close()

    assert (unloaded, loaded) == (False, True)
