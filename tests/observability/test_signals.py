"""What the models see shows in /metrics; every response and access-log line has a request id."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from service.observability.logs import JsonFormatter
from service.observability.requestid import bound
from service.observability.signals import observe_all

from ..conftest import make_client

HOUSE = {"CRIM": 0.00632, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
         "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9,
         "LSTAT": 4.98}  # fmt: skip
MADE_UP = "blorf zzyqx quemple frambulate snorgtastic wubbly"
KNOWN = "the movie was good and the acting was great"


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The sum of the samples in /metrics named `name` with these labels (0 when none exist)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_made_up_words_raise_the_out_of_vocabulary_ratio(client):
    count = metric(client, "dlwp_input_oov_ratio_count", model="imdb")
    total = metric(client, "dlwp_input_oov_ratio_sum", model="imdb")

    response = client.post("/v1/sentiment", json={"texts": [MADE_UP, KNOWN, MADE_UP]})

    assert response.status_code == 200
    assert metric(client, "dlwp_input_oov_ratio_count", model="imdb") == count + 3
    assert metric(client, "dlwp_input_oov_ratio_sum", model="imdb") == pytest.approx(total + 2.0)
    all_made_up = metric(client, "dlwp_input_oov_ratio_bucket", model="imdb", le="0.8")
    everything = metric(client, "dlwp_input_oov_ratio_bucket", model="imdb", le="1.0")
    assert everything - all_made_up >= 2, "the made-up reviews land in the top bucket"


def test_texts_sent_as_v2_tensors_are_measured_too(client):
    count = metric(client, "dlwp_input_oov_ratio_count", model="reuters")
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [MADE_UP]}]}

    response = client.post("/v2/models/reuters/infer", json=body)

    assert response.status_code == 200
    assert metric(client, "dlwp_input_oov_ratio_count", model="reuters") == count + 1


def test_a_prediction_counts_its_label_and_its_confidence(client):
    pixels = np.zeros((28, 28), dtype=int)
    pixels[4:24, 13:16] = 255  # a vertical stroke: some digit, with some confidence
    before = {label: metric(client, "dlwp_predictions_total", model="mnist", label=str(label))
              for label in range(10)}  # fmt: skip
    confidence = metric(client, "dlwp_prediction_confidence_sum", model="mnist")

    answer = client.post("/v1/digits", json={"pixels": pixels.tolist()}).json()["predictions"][0]

    after = {label: metric(client, "dlwp_predictions_total", model="mnist", label=str(label))
             for label in range(10)}  # fmt: skip
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {answer["digit"]: 1}
    assert metric(client, "dlwp_prediction_confidence_sum", model="mnist") == pytest.approx(
        confidence + max(answer["probabilities"]), abs=1e-5
    )


def test_houses_outside_the_training_data_are_counted_by_feature(client):
    def counts() -> dict[str, float]:
        return {
            sample.labels["feature"]: sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.name == "dlwp_input_out_of_range_total"
            and sample.labels["version"] == "1"  # the version the client's server serves
        }

    before = counts()
    odd = {**HOUSE, "RM": 12.0, "TAX": 2000.0}  # 12 rooms (training max 8.7), tax 2000 (711)

    response = client.post("/v1/housing", json={"instances": [odd, HOUSE, odd]})

    assert response.status_code == 200
    after = counts()
    changed = {f: after[f] - before.get(f, 0) for f in after if after[f] != before.get(f, 0)}
    assert changed == {"RM": 2, "TAX": 2}


def test_a_house_at_the_training_extremes_is_not_out_of_range(client):
    # CRIM 0.00632, ZN 100, RM 8.725, TAX 711: the training set's own minima and maxima.
    extreme = {**HOUSE, "CRIM": 0.00632, "ZN": 100.0, "RM": 8.725, "TAX": 711.0}
    outside = metric(client, "dlwp_input_out_of_range_total", model="housing")
    bands = metric(client, "dlwp_predictions_total", model="housing")

    client.post("/v1/housing", json={"features": extreme})

    assert metric(client, "dlwp_input_out_of_range_total", model="housing") == outside
    assert metric(client, "dlwp_predictions_total", model="housing") == bands + 1, "one band"


def test_a_blank_image_stands_out_in_the_ink_ratio_and_an_inverted_one_does_not(client):
    blank_before = metric(client, "dlwp_input_ink_ratio_bucket", model="mnist", le="0.0")
    inked_before = metric(client, "dlwp_input_ink_ratio_bucket", model="mnist", le="0.6")
    all_before = metric(client, "dlwp_input_ink_ratio_count", model="mnist")
    stroke = np.zeros((28, 28), dtype=int)
    stroke[4:24, 13:16] = 255
    images = [np.zeros((28, 28), dtype=int).tolist(), (255 - stroke).tolist()]

    client.post("/v1/digits", json={"images": images})

    assert (
        metric(client, "dlwp_input_ink_ratio_bucket", model="mnist", le="0.0") == blank_before + 1
    )
    # Dark ink on white is turned into MNIST's light on dark before the model sees it.
    assert metric(client, "dlwp_input_ink_ratio_count", model="mnist") == all_before + 2
    assert (
        metric(client, "dlwp_input_ink_ratio_bucket", model="mnist", le="0.6") == inked_before + 2
    )


def test_many_values_observed_at_once_equal_one_at_a_time():
    registry = CollectorRegistry()
    buckets = (0.0, 0.1, 0.5, 1.0)
    one = Histogram("one_ratio", "", buckets=buckets, registry=registry)
    many = Histogram("many_ratio", "", buckets=buckets, registry=registry)
    values = np.array([0.0, 0.05, 0.1, 0.1000001, 0.5, 0.7, 1.0, 3.0, 0.1, 0.0])

    for value in values:
        one.observe(float(value))
    observe_all(many, values)

    def samples(name: str) -> dict[tuple[str, str], float]:
        family = next(f for f in registry.collect() if f.name == name)
        return {(s.name.removeprefix(name), s.labels.get("le", "")): s.value
                for s in family.samples if "created" not in s.name}  # fmt: skip

    assert samples("many_ratio") == pytest.approx(samples("one_ratio"))


# ---------------------------------------------------------------------------------- request ids


def test_a_client_request_id_comes_back(client):
    response = client.post(
        "/v1/housing", json={"features": HOUSE}, headers={"X-Request-ID": "abc-1"}
    )

    assert response.headers["x-request-id"] == "abc-1"


@pytest.mark.parametrize("sent", [None, "has spaces in it", "x" * 129])
def test_without_a_usable_request_id_each_response_gets_a_new_one(client, sent):
    headers = {"X-Request-ID": sent} if sent else {}

    first = client.get("/v2/models/housing", headers=headers).headers["x-request-id"]
    second = client.get("/v2/models/housing", headers=headers).headers["x-request-id"]

    assert re.fullmatch("[0-9a-f]{32}", first) and first != second


def test_error_responses_carry_the_request_id_too(client):
    bad = client.post("/v1/housing", json={"features": {}}, headers={"X-Request-ID": "bad-1"})
    lost = client.get("/no/such/route", headers={"X-Request-ID": "lost-1"})

    assert bad.status_code in (400, 422) and bad.headers["x-request-id"] == "bad-1"
    assert lost.status_code == 404 and lost.headers["x-request-id"] == "lost-1"


def test_log_lines_written_during_a_request_hold_its_id():
    record = logging.LogRecord("service.x", logging.ERROR, __file__, 1, "model failed", (), None)

    with bound("req-7"):
        inside = JsonFormatter().format(record)
    outside = JsonFormatter().format(record)

    assert '"request_id":"req-7"' in inside and "request_id" not in outside


@pytest.fixture(scope="module")
def quiet_client() -> Iterator[TestClient]:
    """Signals off, access log on."""
    with make_client(signals=False, access_log=True) as test_client:
        yield test_client


def test_with_signals_off_predictions_move_no_signal(quiet_client):
    count = metric(quiet_client, "dlwp_input_oov_ratio_count", model="imdb")
    confidence = metric(quiet_client, "dlwp_prediction_confidence_count", model="imdb")

    response = quiet_client.post("/v1/sentiment", json={"text": MADE_UP})

    assert response.status_code == 200
    assert metric(quiet_client, "dlwp_input_oov_ratio_count", model="imdb") == count
    assert metric(quiet_client, "dlwp_prediction_confidence_count", model="imdb") == confidence


def test_the_access_log_has_one_json_line_per_request_with_its_id(quiet_client, capfd):
    import orjson

    quiet_client.post("/v1/housing", json={"features": HOUSE}, headers={"X-Request-ID": "a-1"})

    lines: list[dict[str, object]] = []
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:  # lines are written in batches, ≤ 0.5 s late
        time.sleep(0.05)
        err = capfd.readouterr().err
        lines += [orjson.loads(x) for x in err.splitlines() if '"request_id":"a-1"' in x]
    [line] = lines
    assert line["request_id"] == "a-1" and line["status"] == 200
    assert (line["method"], line["path"], line["model"]) == ("POST", "/v1/housing", "housing")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0


def test_a_signal_that_cannot_be_computed_never_fails_the_prediction(tmp_path):
    import json
    import shutil

    from ..conftest import COMMITTED_MODELS

    folder = tmp_path / "housing" / "1"
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocessing"]["training_range"] = {"min": [0.0, 1.0], "max": [1.0]}  # broken
    (folder / "manifest.json").write_text(json.dumps(manifest))

    with make_client(models_dir=tmp_path) as broken:
        response = broken.post("/v1/housing", json={"features": HOUSE})

    assert response.status_code == 200 and response.json()["predictions"][0]["price"] > 0
