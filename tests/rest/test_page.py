"""The page, its models list, the training curves and the offline API reference, over HTTP."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from service.model.preprocessing import image_bytes_to_rows

# What a browser sends when it opens a page.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_the_page_has_the_four_forms_and_a_strict_content_security_policy(client):
    response = client.get("/", headers=BROWSER)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for task in ("sentiment", "topics", "digits", "housing"):
        assert f'data-task="{task}"' in response.text
    assert "data-models" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text), "no other host"


def test_the_page_assets_are_served_and_nothing_else_is(client):
    assert client.get("/page/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/page/page.css").status_code == 200
    for name in ("index.html", "..%2Fapp.py", "..%2F..%2Fpyproject.toml", "nope.js"):
        response = client.get(f"/page/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]


def test_served_models_are_listed_with_test_metric_against_the_book(client):
    models = client.get("/page/models").json()["models"]

    assert [m["name"] for m in models] == ["housing", "imdb", "mnist", "reuters"]
    imdb = next(m for m in models if m["name"] == "imdb")
    assert imdb["book"] == {"test_accuracy": 0.885}
    assert 0.85 < imdb["metrics"]["test_accuracy"] < 0.9
    for model in models:
        curves = client.get(model["history"])
        assert curves.status_code == 200 and curves.headers["content-type"] == "image/png"
        assert curves.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/imdb/versions/2/history.png",  # not a served version
        "/v1/models/nope/versions/1/history.png",
        "/v1/models/..%2F..%2Fservice/versions/1/history.png",
        "/v1/models/%2e%2e/versions/1/history.png",
        "/v1/models/imdb/versions/..%2F1/history.png",
    ],
)
def test_training_curves_are_only_those_of_served_versions(client, path):
    response = client.get(path)

    assert response.status_code in (400, 404)
    assert response.json()["error"]


def test_the_api_reference_loads_its_assets_from_this_server(client):
    page = client.get("/docs")

    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "//" not in re.sub(r"<!doctype html>", "", page.text, flags=re.I)
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/docs/assets/..%2F__init__.py").status_code == 404


def _png(grey: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_digits_can_return_the_image_the_model_saw(client):
    # A dark "7" on white paper, 90×90: the server inverts, crops, scales and centres it.
    grey = np.full((90, 90), 255, dtype=np.uint8)
    grey[15:22, 15:75] = 0
    grey[22:80, 60:68] = 0
    data = _png(grey)

    plain = client.post("/v1/digits", content=data, headers={"Content-Type": "image/png"})
    shown = client.post(
        "/v1/digits?include_image=true", content=data, headers={"Content-Type": "image/png"}
    )

    assert "image" not in plain.json()["predictions"][0]
    answer = shown.json()["predictions"][0]
    expected = np.rint(image_bytes_to_rows(data) * 255).reshape(28, 28)
    assert np.array_equal(np.asarray(answer["image"]), expected)
    assert answer["digit"] == plain.json()["predictions"][0]["digit"]


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_a_client_that_does_not_ask_for_html_gets_kserves_liveness_answer(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "alive"}
    assert response.headers["vary"] == "Accept"
