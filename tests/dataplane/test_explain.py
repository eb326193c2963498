"""Explanations: occlusion weights that are exact, ordered, capped, and change no prediction."""

from __future__ import annotations

import json

import pytest

from service.model.preprocessing import tokenize

from ..conftest import COMMITTED_MODELS

REVIEW = (
    "This film was a wonderful surprise. The acting is superb and the story moving, although "
    "the ending felt rushed and a little boring. Still, one of the best films I have seen."
)
WIRE = (
    "Shr 45 cts vs 38 cts. Net 12.4 mln dlrs vs 10.1 mln. Revs 210 mln vs 190 mln. "
    "Company said it expects continued growth in earnings."
)
# CRIM … LSTAT of a house from the test set (the one the page is prefilled with).
HOUSE = dict(
    zip(
        ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B",
         "LSTAT"),
        (0.12329, 0.0, 10.01, 0.0, 0.547, 5.913, 92.9, 2.3534, 6.0, 432.0, 17.8, 394.95, 16.21),
        strict=True,
    )
)  # fmt: skip
# Scores are rounded to 6 places, and one row's output may differ in the last float32 bits
# between batch sizes.
TOLERANCE = 1e-5


def _vocabulary(name: str) -> dict[str, int]:
    vocabulary: dict[str, int] = json.loads(
        (COMMITTED_MODELS / name / "1" / "vocabulary.json").read_text()
    )
    return vocabulary


def _without(text: str, word: str) -> str:
    return " ".join(token for token in tokenize(text) if token != word)


def _explain(client, path: str, **body) -> dict:
    response = client.post(path, json={**body, "explain": True})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_removing_a_word_moves_the_review_score_by_its_weight(client):
    explained = _explain(client, "/v1/sentiment", text=REVIEW)

    for entry in explained["explanation"][:3]:
        response = client.post("/v1/sentiment", json={"text": _without(REVIEW, entry["word"])})
        moved = explained["score"] - response.json()["predictions"][0]["score"]
        assert moved == pytest.approx(entry["weight"], abs=TOLERANCE), entry


def test_removing_a_word_moves_the_top_topic_by_its_weight(client):
    explained = _explain(client, "/v1/topics", text=WIRE, top_k=1)
    top = explained["topics"][0]

    entry = explained["explanation"][0]
    response = client.post("/v1/topics", json={"text": _without(WIRE, entry["word"]), "top_k": 46})
    after = next(
        t for t in response.json()["predictions"][0]["topics"] if t["index"] == top["index"]
    )
    assert top["probability"] - after["probability"] == pytest.approx(
        entry["weight"], abs=TOLERANCE
    )


def test_every_distinct_known_word_is_explained_largest_weight_first(client):
    explained = _explain(client, "/v1/sentiment", text=REVIEW)

    words = [entry["word"] for entry in explained["explanation"]]
    vocabulary = _vocabulary("imdb")
    assert sorted(words) == sorted({w for w in tokenize(REVIEW) if w in vocabulary})
    sizes = [abs(entry["weight"]) for entry in explained["explanation"]]
    assert sizes == sorted(sizes, reverse=True)
    assert {"superb", "wonderful", "best"} & set(words[:5]), "praise should weigh most"
    assert all(e["weight"] > 0 for e in explained["explanation"] if e["word"] == "superb")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/sentiment", {"texts": [REVIEW, "a dull, boring mess"]}),
        ("/v1/topics", {"text": WIRE, "top_k": 3}),
        ("/v1/housing", {"features": HOUSE}),
    ],
)
def test_asking_for_an_explanation_changes_no_prediction(client, path, body):
    plain = client.post(path, json=body).json()
    explained = client.post(path, json={**body, "explain": True}).json()

    assert explained["model"] == plain["model"] and explained["version"] == plain["version"]
    for with_it, without in zip(explained["predictions"], plain["predictions"], strict=True):
        assert "explanation" in with_it and "explanation" not in without
        with_it.pop("explanation")
        assert with_it.keys() == without.keys()
        for key, value in without.items():
            if key == "topics":
                assert [t["label"] for t in with_it[key]] == [t["label"] for t in value]
            elif isinstance(value, float):
                assert with_it[key] == pytest.approx(value, abs=TOLERANCE)
            else:
                assert with_it[key] == value


def test_setting_a_feature_to_its_training_mean_moves_the_price_by_its_weight(client):
    explained = _explain(client, "/v1/housing", features=HOUSE)
    manifest = json.loads((COMMITTED_MODELS / "housing" / "1" / "manifest.json").read_text())
    means = dict(
        zip(
            manifest["preprocessing"]["feature_names"],
            manifest["preprocessing"]["mean"],
            strict=True,
        )
    )

    assert [e["feature"] for e in explained["explanation"]] != []
    assert len(explained["explanation"]) == 13
    entry = explained["explanation"][0]
    response = client.post(
        "/v1/housing", json={"features": {**HOUSE, entry["feature"]: means[entry["feature"]]}}
    )
    moved = explained["price"] - response.json()["predictions"][0]["price"]
    assert moved == pytest.approx(entry["weight"], abs=1e-3)


def test_a_text_with_more_words_than_the_cap_is_refused_with_422(client):
    many = " ".join(list(_vocabulary("imdb"))[:600])  # 600 distinct known words > 512 rows

    response = client.post("/v1/sentiment", json={"text": many, "explain": True})

    assert response.status_code == 422
    assert "601 model rows" in response.json()["error"]
    assert "at most 512" in response.json()["error"]
    assert client.post("/v1/sentiment", json={"text": many}).status_code == 200


@pytest.mark.parametrize(
    ("name", "instance", "key"),
    [("imdb", REVIEW, "word"), ("reuters", WIRE, "word"), ("housing", HOUSE, "feature"),
     ("housing", list(HOUSE.values()), "feature")],
)  # fmt: skip
def test_kserve_explain_verb_explains_each_instance(client, name, instance, key):
    response = client.post(f"/v1/models/{name}:explain", json={"instances": [instance, instance]})

    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert len(explanations) == 2
    assert explanations[0]["explanation"][0].keys() == {key, "weight"}
    assert explanations[0] == explanations[1]
    versioned = client.post(f"/v1/models/{name}/versions/1:explain", json={"instances": [instance]})
    assert versioned.json()["explanations"][0] == explanations[0]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v1/models/mnist:explain", {"instances": [[0] * 784]}, 400, "imdb, reuters and housing"),
        ("/v1/models/nope:explain", {"instances": ["x"]}, 404, "unknown model"),
        ("/v1/models/imdb/versions/9:explain", {"instances": ["x"]}, 404, "version 9"),
        ("/v1/models/imdb:explain", {"inputs": ["x"]}, 400, "'instances'"),
        ("/v1/models/imdb:explain", {"instances": [3]}, 422, "must be a text"),
        ("/v1/models/imdb:explain", {"instances": ["qqqzzz"]}, 200, ""),
    ],
)
def test_kserve_explain_verb_answers_bad_requests_clearly(client, path, body, status, says):
    response = client.post(path, json=body)

    assert response.status_code == status, response.text
    assert says in response.text


def test_the_explain_verb_leaves_tf_serving_predict_alone(client):
    response = client.post("/v1/models/imdb:predict", json={"instances": [REVIEW]})

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1


def test_openapi_documents_explanations_with_examples(client):
    spec = client.get("/openapi.json").json()

    verb = spec["paths"]["/v1/models/{name}:explain"]["post"]
    assert verb["requestBody"]["content"]["application/json"]["examples"]
    assert "/v1/models/{name}/versions/{version}:explain" in spec["paths"]
    for path in ("/v1/sentiment", "/v1/topics", "/v1/housing"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "explain" in schema["properties"], path


def test_a_review_with_no_known_word_has_an_empty_explanation(client):
    explained = _explain(client, "/v1/sentiment", text="qqqzzz xxyyzz")

    assert explained["explanation"] == []
    assert explained["label"] in ("positive", "negative")
