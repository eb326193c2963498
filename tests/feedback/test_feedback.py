"""Labels after the fact: POST /v1/feedback scores an earlier answer on each side, and the
labelled examples export in the format `dlwp train --data` reads."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from service.cli import main as dlwp

from ..conftest import COMMITTED_MODELS, ServerProcess, add_version, make_client

REVIEWS = {
    "great": "A wonderful, moving film. The acting was superb and I loved every minute of it.",
    "awful": "Awful. Wooden acting, a boring plot and terrible dialogue throughout.",
}
HOUSE = {"CRIM": 0.0063, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
         "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9,
         "LSTAT": 4.98}  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for name in ("imdb", "housing", "mnist"):
        shutil.copytree(COMMITTED_MODELS / name / "1", tmp_path / "models" / name / "1")
    return tmp_path / "models"


def ask(client, path: str, body: dict, request_id: str) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(path, json=body, headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


def label(client, **body: object):  # type: ignore[no-untyped-def]
    return client.post("/v1/feedback", json=body)


def test_feedback_counts_toward_each_versions_live_accuracy_in_a_rollout(repo):
    add_version(repo, "imdb")  # the same network: both sides answer alike
    with make_client(models_dir=repo) as client:
        client.post("/v2/repository/models/imdb/load", json={"parameters": {"version": 1}})
        client.post(
            "/v2/repository/models/imdb/rollout",
            json={"version": 2, "mode": "shadow", "gate": {"min_compared": 1000}},
        )
        for i in range(6):
            ask(client, "/v1/sentiment", {"text": REVIEWS["great"]}, f"great-{i}")
        time.sleep(0.5)  # the shadow answers come in after the answers
        labels = [label(client, request_id=f"great-{i}", label="positive" if i < 4 else
                        "negative") for i in range(6)]  # fmt: skip
        status = client.get("/v2/repository/models/imdb/rollout").json()
        metrics = client.get("/metrics").text

    assert [r.status_code for r in labels] == [200] * 6
    assert labels[0].json()["sides"]["serving"] == {"version": 1, "answer": "positive",
                                                    "correct": True}  # fmt: skip
    assert labels[0].json()["sides"]["candidate"]["version"] == 2
    assert status["labelled"] == 6
    assert status["sides"]["serving"]["live_accuracy"] == pytest.approx(4 / 6, abs=1e-3)
    assert status["sides"]["candidate"]["live_accuracy"] == pytest.approx(4 / 6, abs=1e-3)
    assert ('dlwp_feedback_total{model="imdb",outcome="correct",role="serving",version="1"} 4.0'
            in metrics)  # fmt: skip


def test_feedback_outside_a_rollout_and_its_bad_requests(repo):
    with make_client(models_dir=repo, feedback=True) as client:
        ask(client, "/v1/sentiment", {"text": REVIEWS["awful"]}, "review-1")
        ask(client, "/v1/housing", {"features": HOUSE}, "house-1")
        right = label(client, request_id="review-1", label="negative")
        twice = label(client, request_id="review-1", label="negative")
        house = label(client, request_id="house-1", price=24.0)
        unknown = label(client, request_id="never-answered", label="positive")
        wrong_kind = label(client, request_id="house-1", label="positive")
        not_a_label = label(client, request_id="review-1", label="great")
        not_json = client.post("/v1/feedback", content=b"x", headers={"content-type": "text/plain"})

    assert right.status_code == 200 and right.json()["sides"]["serving"]["correct"] is True
    assert twice.status_code == 409
    assert house.status_code == 200 and house.json()["sides"]["serving"]["error"] >= 0
    assert unknown.status_code == 404 and "unknown or expired" in unknown.json()["error"]
    assert wrong_kind.status_code == 422 and "price" in wrong_kind.json()["error"]
    assert not_a_label.status_code == 422 and "positive" in not_a_label.json()["error"]
    assert not_json.status_code == 415


def test_by_default_answers_are_kept_only_during_a_rollout(repo):
    with make_client(models_dir=repo) as client:
        ask(client, "/v1/sentiment", {"text": REVIEWS["awful"]}, "no-rollout-1")
        answer = label(client, request_id="no-rollout-1", label="negative")

    assert answer.status_code == 404
    assert "only answers given during a rollout" in answer.json()["error"]


def test_inputs_are_kept_only_when_asked(repo):
    with make_client(models_dir=repo, feedback=True) as client:
        ask(client, "/v1/sentiment", {"text": REVIEWS["great"]}, "private-1")
        label(client, request_id="private-1", label="positive")
    out = repo.parent / "reviews.jsonl"

    code = dlwp(["feedback", "export", "imdb", "--out", str(out),
                 "--state-dir", str(repo / ".dlwp-state")])  # fmt: skip

    assert code == 0 and out.read_text() == "", "no input kept, nothing to export"


def test_labelled_examples_export_in_the_training_data_formats(repo):
    with make_client(models_dir=repo, feedback_keep_inputs=True) as client:
        ask(client, "/v1/sentiment", {"texts": [REVIEWS["great"], REVIEWS["awful"]]}, "r")
        label(client, request_id="r", item=0, label="positive")
        label(client, request_id="r", item=1, label="negative")
        ask(client, "/v1/housing", {"features": HOUSE}, "h")
        label(client, request_id="h", price=24.0)
        ask(client, "/v1/digits", {"pixels": [[0] * 28] * 10 + [[0] * 10 + [255] * 8 + [0] * 10]
                                   * 8 + [[0] * 28] * 10}, "d")  # fmt: skip
        label(client, request_id="d", label=1)
    state = ["--state-dir", str(repo / ".dlwp-state")]
    out = repo.parent

    for model, path in (("imdb", "r.jsonl"), ("housing", "h.csv"), ("mnist", "digits")):
        assert dlwp(["feedback", "export", model, "--out", str(out / path), *state]) == 0

    reviews = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    assert reviews == [{"text": REVIEWS["great"], "label": "positive"},
                       {"text": REVIEWS["awful"], "label": "negative"}]  # fmt: skip
    houses = list(csv.DictReader((out / "h.csv").open()))
    assert len(houses) == 1 and float(houses[0]["MEDV"]) == 24.0
    assert float(houses[0]["RM"]) == pytest.approx(6.575, abs=1e-4)
    assert [p.parent.name for p in (out / "digits").glob("*/*.png")] == ["1"]
    formats = pytest.importorskip("training.userdata.formats", reason="dlwp train --data parsing")
    assert len(formats.read("imdb", out / "r.jsonl")) == 2
    assert len(formats.read("housing", out / "h.csv")) == 1
    assert len(formats.read("mnist", out / "digits")) == 1


def test_a_label_finds_its_answer_whichever_worker_gave_it(repo):
    server = ServerProcess({"DLWP_MODELS_DIR": str(repo), "DLWP_FEEDBACK": "true"}, workers=2,
                           name="feedback-workers").wait_ready(timeout_s=180)  # fmt: skip
    no_reuse = httpx.Limits(max_keepalive_connections=0)  # each request may meet either worker
    try:
        with httpx.Client(base_url=server.url, timeout=10, limits=no_reuse) as http:
            for i in range(20):
                ask(http, "/v1/sentiment", {"text": REVIEWS["great"]}, f"spread-{i}")
            labels = [label(http, request_id=f"spread-{i}", label="positive") for i in range(20)]
            again = [label(http, request_id=f"spread-{i}", label="positive") for i in range(4)]
    finally:
        server.stop()

    assert [r.status_code for r in labels] == [200] * 20, [r.text for r in labels]
    assert {r.json()["sides"]["serving"]["answer"] for r in labels} == {"positive"}
    assert [r.status_code for r in again] == [409] * 4, "labelled once, whichever worker is asked"


def test_the_window_keeps_the_newest_answers(repo):
    with make_client(models_dir=repo, feedback=True, feedback_max_answers=3) as client:
        for i in range(5):
            ask(client, "/v1/sentiment", {"text": REVIEWS["awful"]}, f"window-{i}")
        oldest = label(client, request_id="window-1", label="negative")
        newest = [label(client, request_id=f"window-{i}", label="negative") for i in (2, 3, 4)]

    assert oldest.status_code == 404
    assert "the newest 3 per worker at most" in oldest.json()["error"]
    assert [r.status_code for r in newest] == [200] * 3
