"""Rollouts in one process: a candidate beside the serving version, compared live, decided by
its gate; bad requests change nothing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.repository.desired_state import STATE_DIR_NAME

from ..conftest import COMMITTED_MODELS, add_version, make_client

HOUSE = {"CRIM": 0.0063, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
         "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9,
         "LSTAT": 4.98}  # fmt: skip
REVIEWS = [
    "A wonderful, moving film. The acting was superb and I loved every minute of it.",
    "Dull, predictable and far too long. I nearly walked out; the worst film this year.",
    "An average story with some good moments and some bad ones.",
    "Brilliant direction, a great cast, a script full of life: see it twice.",
    "Awful. Wooden acting, a boring plot and terrible dialogue throughout.",
]
ROLLOUT = "/v2/repository/models/{}/rollout"
SMALL_GATE = {"min_compared": 40, "hard_min_requests": 1000}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """housing versions 1 and 2 (the same network), imdb version 1."""
    for name in ("housing", "imdb"):
        shutil.copytree(COMMITTED_MODELS / name / "1", tmp_path / name / "1")
    add_version(tmp_path, "housing")
    return tmp_path


def start(client: Any, name: str, **body: Any) -> Any:
    return client.post(ROLLOUT.format(name), json=body)


def status(client: Any, name: str) -> dict[str, Any]:
    response = client.get(ROLLOUT.format(name))
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_end(client: Any, name: str, send: Any, timeout_s: float = 30) -> dict[str, Any]:
    """Send requests until the gate decides; the final status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        send()
        current = status(client, name)
        if current["state"] != "running":
            return current
    raise AssertionError(f"the gate did not decide within {timeout_s} s: {status(client, name)}")


def predictions_by_version(exposition: str, model: str) -> dict[str, float]:
    """`dlwp_predictions_total` of `model` summed over its labels, by version."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "dlwp_predictions_total" and sample.labels["model"] == model:
                version = sample.labels["version"]
                found[version] = found.get(version, 0) + sample.value
    return found


def desired(repo: Path) -> dict[str, Any]:
    return dict(json.loads((repo / STATE_DIR_NAME / "desired.json").read_text()))


def test_shadow_answers_only_from_the_serving_version_and_compares_both(repo):
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        before = predictions_by_version(client.get("/metrics").text, "housing")
        started = start(client, "housing", version=2, mode="shadow",
                        gate={"min_compared": 1000})  # fmt: skip
        versions = {client.post("/v1/housing", json={"features": HOUSE}).json()["version"]
                    for _ in range(30)}  # fmt: skip
        time.sleep(0.5)  # the shadow work runs after the answers
        figures = status(client, "housing")
        page = {m["name"]: m["rollout"] for m in client.get("/page/models").json()["models"]}
        predicted = predictions_by_version(client.get("/metrics").text, "housing")

    assert started.status_code == 200, started.text
    assert versions == {1}, "every answer comes from the serving version"
    assert figures["state"] == "running" and figures["mode"] == "shadow"
    assert figures["serving_version"] == 1 and figures["candidate_version"] == 2
    assert figures["sides"]["serving"]["requests"] == 30
    assert figures["compared"] + figures["shadow_dropped"] == 30
    assert figures["compared"] > 0 and figures["mean_price_difference"] == 0.0
    assert figures["agreement"] == 1.0
    serving, candidate = figures["sides"]["serving"], figures["sides"]["candidate"]
    assert sum(serving["predicted"].values()) == 30, "each side's prediction mix"
    assert sum(candidate["predicted"].values()) == figures["compared"]
    assert serving["top_prediction"][0] == candidate["top_prediction"][0], "the same network"
    assert page["housing"]["mode"] == "shadow" and page["housing"]["candidate_version"] == 2
    assert page["imdb"] is None, "the page's models section shows the running rollout"
    counted = {v: n - before.get(v, 0) for v, n in predicted.items()}  # one registry per process
    assert counted == {"1": 30, "2": figures["compared"]}, "each version's signals apart"


def test_canary_share_is_within_statistical_bounds_and_keys_are_sticky(repo):
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        start(client, "housing", version=2, mode="canary", share=0.3, gate={"min_compared": 1000})
        unkeyed = [client.post("/v1/housing", json={"features": HOUSE}).json()["version"]
                   for _ in range(400)]  # fmt: skip
        keyed = {
            key: {client.post("/v1/housing", json={"features": HOUSE},
                              headers={"X-Rollout-Key": key}).json()["version"]
                  for _ in range(5)}
            for key in (f"user-{i}" for i in range(40))
        }  # fmt: skip
        v2 = client.post("/v2/models/housing/infer", headers={"X-Rollout-Key": "user-0"}, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13],
                        "data": list(HOUSE.values())}]})  # fmt: skip

    # 400 draws at p = 0.3: mean 120, sd 9.2; 4 sd either side.
    assert 83 <= unkeyed.count(2) <= 157
    assert all(len(sides) == 1 for sides in keyed.values()), "a key always gets the same side"
    assert {next(iter(s)) for s in keyed.values()} == {1, 2}, "keys spread over both sides"
    assert v2.json()["model_version"] == str(next(iter(keyed["user-0"])))


def test_an_identical_candidate_is_promoted_by_the_gate_on_every_answer(repo):
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        start(client, "housing", version=2, mode="shadow", gate=SMALL_GATE)
        final = wait_for_end(
            client, "housing", lambda: client.post("/v1/housing", json={"features": HOUSE})
        )
        after = client.post("/v1/housing", json={"features": HOUSE}).json()["version"]
        metrics = client.get("/metrics").text

    assert final["state"] == "promoted", final
    assert "gate passed" in final["reason"] and final["compared"] >= 40
    assert after == 2, "the candidate serves"
    assert desired(repo)["models"]["housing"] == {"version": 2, "pin": 2}
    assert 'dlwp_rollout_decisions_total{by="gate",decision="promoted",model="housing"} 1.0' in (
        metrics
    )


def test_a_worse_candidate_is_rolled_back_by_the_gate(repo):
    version = add_version(repo, "imdb", corrupt="shuffled")
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/imdb/load", json={"parameters": {"version": 1}})
        start(client, "imdb", version=version, mode="canary", share=0.5, gate=SMALL_GATE)
        final = wait_for_end(
            client, "imdb", lambda: client.post("/v1/sentiment", json={"texts": REVIEWS})
        )
        after = {client.post("/v1/sentiment", json={"text": REVIEWS[0]}).json()["version"]
                 for _ in range(10)}  # fmt: skip
        index = client.get("/v2/repository/index").json()

    assert final["state"] == "rolled_back", final
    assert "agreement" in final["reason"] and final["agreement"] < 0.9
    assert after == {1}, "the serving version answers everything again"
    assert {"name": "imdb", "version": str(version), "state": "UNAVAILABLE"} in index


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"version": 9, "mode": "shadow"}, 404, "not in the repository"),
        ({"version": 1, "mode": "shadow"}, 400, "is the serving version"),
        ({"version": 2, "mode": "shadow", "share": 0}, 400, "share must be"),
        ({"version": 2, "mode": "shadow", "share": 1.5}, 400, "share must be"),
        ({"version": 2, "mode": "blue-green"}, 400, "mode must be"),
        ({"version": 2, "gate": {"min_compared": 5000}}, 400, "min_compared"),
        ({"version": 2, "gate": {"speed": 1}}, 400, "unknown gate threshold"),
        ({"mode": "shadow"}, 400, "version must be"),
    ],
)
def test_bad_rollout_requests_get_a_4xx_and_change_nothing(repo, body, code, message):
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        before = desired(repo)
        answer = start(client, "housing", **body)

        assert answer.status_code == code, answer.text
        assert message in answer.json()["error"]
        assert desired(repo) == before


def test_unknown_model_second_rollout_and_failed_candidate_are_refused(repo):
    broken = add_version(repo, "housing", corrupt="model")
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        unknown = start(client, "nosuch", version=1)
        failed = start(client, "housing", version=broken)
        no_rollout = client.get(ROLLOUT.format("housing"))
        first = start(client, "housing", version=2, gate={"min_compared": 1000})
        second = start(client, "housing", version=2)
        load = client.post("/v2/repository/models/housing/load")
        aborted = client.post(ROLLOUT.format("housing") + "/abort")
        again = client.post(ROLLOUT.format("housing") + "/abort")

    assert unknown.status_code == 404
    assert failed.status_code == 400 and "failed to load" in failed.json()["error"]
    assert no_rollout.status_code == 404, "a candidate that fails to load starts no rollout"
    assert first.status_code == 200 and first.json()["state"] == "running"
    assert second.status_code == 409 and "already running" in second.json()["error"]
    assert load.status_code == 409, "no load underneath a running rollout"
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
    assert again.status_code == 409


def test_a_rollout_of_a_version_not_loaded_loads_it_and_manual_promote_swaps_it_in(repo):
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/housing/load", json={"parameters": {"version": 1}})
        started = start(client, "housing", version=2, gate={"min_compared": 1000})
        ready = client.get("/v2/models/housing/versions/2/ready")
        promoted = client.post(ROLLOUT.format("housing") + "/promote")
        after = client.post("/v1/housing", json={"features": HOUSE}).json()["version"]

    assert started.status_code == 200 and ready.status_code == 200
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["state"] == "promoted" and promoted.json()["reason"]
    assert after == 2


def test_rollout_routes_are_guarded_like_load_and_unload(repo):
    with make_client(models_dir=repo, api_key="s3cret") as client:
        path = ROLLOUT.format("housing")
        no_key = client.post(path, json={"version": 2})
        form = client.post(
            path,
            content=b"version=2",
            headers={
                "Authorization": "Bearer s3cret",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        cross_site = client.post(
            path + "/abort",
            headers={"Authorization": "Bearer s3cret", "Origin": "https://evil.example"},
        )
        promote = client.post(path + "/promote")
        read = client.get(path)
        keyed = client.post(path, json={"version": 1, "gate": {"auto": 0}},
                            headers={"Authorization": "Bearer s3cret"})  # fmt: skip

    assert no_key.status_code == 401
    assert form.status_code == 403 and cross_site.status_code == 403
    assert promote.status_code == 401
    assert read.status_code == 404, "the status is a read: never refused by the guard"
    assert keyed.status_code == 200 and keyed.json()["state"] == "running"
