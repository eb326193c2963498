"""The four task endpoints give sensible answers in the documented shapes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from training.datasets import load_dataset

from ..conftest import needs_datasets

POSITIVE = "A wonderful, moving film. The acting was superb and I loved every minute of it."
NEGATIVE = "Dreadful. A boring, stupid mess with awful acting; the worst film I have seen."
EARNINGS = (
    "Shr 45 cts vs 38 cts. Net 12.4 mln dlrs vs 10.1 mln. Revs 210 mln vs 190 mln. "
    "The company said fourth quarter profit rose on higher sales."
)
HOUSE = {"CRIM": 0.0063, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
         "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9,
         "LSTAT": 4.98}  # fmt: skip


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    from ..conftest import DATA_DIR

    if DATA_DIR is None:
        pytest.skip("needs the MNIST test set")
    dataset = load_dataset("mnist", DATA_DIR)
    return dataset.x_test[:32], dataset.y_test[:32]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_obviously_positive_review_is_positive(client):
    response = client.post("/v1/sentiment", json={"text": POSITIVE})

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "imdb" and body["version"] >= 1
    assert body["predictions"][0]["label"] == "positive"
    assert body["predictions"][0]["score"] > 0.5


def test_several_reviews_are_answered_in_order(client):
    response = client.post("/v1/sentiment", json={"texts": [NEGATIVE, POSITIVE, NEGATIVE]})

    labels = [p["label"] for p in response.json()["predictions"]]
    assert labels == ["negative", "positive", "negative"]


def test_an_earnings_wire_is_about_earn(client):
    response = client.post("/v1/topics", json={"text": EARNINGS, "top_k": 2})

    topics = response.json()["predictions"][0]["topics"]
    assert len(topics) == 2
    assert topics[0]["label"] == "earn" and topics[0]["index"] == 3
    assert topics[0]["probability"] >= topics[1]["probability"]


@needs_datasets
def test_mnist_test_digits_as_json_get_their_labels(client, mnist_test):
    images, labels = mnist_test

    response = client.post("/v1/digits", json={"images": images.tolist()})

    digits = [p["digit"] for p in response.json()["predictions"]]
    assert np.mean(np.array(digits) == labels) >= 0.95
    assert len(response.json()["predictions"][0]["probabilities"]) == 10


@needs_datasets
def test_a_digit_png_upload_is_read_like_mnist(client, mnist_test):
    images, labels = mnist_test

    raw = client.post("/v1/digits", content=_png(images[0]), headers={"content-type": "image/png"})
    form = client.post("/v1/digits", files={"file": ("seven.png", _png(images[0]), "image/png")})

    assert raw.json()["predictions"][0]["digit"] == labels[0]
    assert form.json()["predictions"][0]["digit"] == labels[0]


@needs_datasets
def test_a_large_dark_on_light_photo_of_a_digit_is_recognised(client, mnist_test):
    images, labels = mnist_test
    big = np.asarray(Image.fromarray(images[0]).resize((280, 280), Image.Resampling.BILINEAR))
    page = 255 - big  # black ink on white paper
    buffer = io.BytesIO()
    Image.fromarray(page).convert("RGB").save(buffer, format="JPEG", quality=90)

    response = client.post("/v1/digits", content=buffer.getvalue(),
                           headers={"content-type": "image/jpeg"})  # fmt: skip

    assert response.json()["predictions"][0]["digit"] == labels[0]


def test_housing_features_give_a_price_in_thousands(client):
    response = client.post("/v1/housing", json={"instances": [HOUSE, {**HOUSE, "RM": 8.5}]})

    prices = [p["price"] for p in response.json()["predictions"]]
    assert 15 < prices[0] < 40
    assert prices[1] > prices[0], "more rooms, higher price"


def test_openapi_documents_every_task_with_an_example(client):
    spec = client.get("/openapi.json").json()

    for path in ("/v1/sentiment", "/v1/topics", "/v1/digits", "/v1/housing"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["examples"], path
    assert client.get("/docs").status_code == 200
