"""Real Prometheus scrapes a real two-worker server: the signals move, rules and dashboard work.

Debian's `prometheus` and `promtool` (installed by .ci/run) run on a free loopback port with a
temporary config: scrape every second, evaluate deploy/prometheus/alerts.yml every second. The
server gets normal traffic from the test sets, then made-up-word reviews, out-of-range houses and
blank images; the test reads what Prometheus stored through its HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtests import payloads
from tests.support.servers import ServerProcess, free_port

from ..conftest import REPO, needs_datasets

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dlwp.json"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")

pytestmark = [
    needs_datasets,
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="Debian's prometheus package is not installed (apt-get install prometheus)",
    ),
]

MADE_UP = "blorf zzyqx quemple frambulate snorgtastic wubbly"
# Panels that stay empty while nothing goes wrong.
QUIET_PANELS = {"Refused with 503 (queue full)", "Model load failures (last hour)",
                # the rollout row: empty while no rollout runs and no label came back
                "Rollout agreement", "Rollout predictions and errors per side",
                "Rollout p99 latency per side", "Shadow rows dropped (busy)",
                "Live accuracy by version (feedback)", "Rollout decisions (last day)"}  # fmt: skip


class Prometheus:
    def __init__(self, target: str, folder: Path) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "dlwp", "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = folder / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}", "--log.level=warn",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_for(lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": str(at)} if at is not None else {})}
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return body["data"]["result"]  # type: ignore[no-any-return]

    def value(self, expr: str, at: float | None = None) -> float:
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"timed out; see {self.log_path}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@dataclass
class Phase:
    at: float  # when Prometheus had scraped all of the phase's traffic
    oov_sum: float
    oov_count: float
    out_of_range: dict[str, float]


@pytest.fixture(scope="module")
def two_workers() -> Iterator[ServerProcess]:
    """Two workers, as `dlwp serve --workers 2` runs them: every scrape must add both up."""
    process = ServerProcess(workers=2).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def prometheus(
    two_workers: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    instance = Prometheus(two_workers.url.removeprefix("http://"), tmp_path_factory.mktemp("prom"))
    yield instance
    instance.stop()


def _post(server: ServerProcess, path: str, body: dict[str, Any]) -> int:
    # A new connection each time, so the kernel spreads the requests over both workers.
    return httpx.post(server.url + path, json=body, timeout=10).status_code


def _phase(prometheus: Prometheus, imdb: int, housing: int, mnist: int) -> Phase:
    """Wait until Prometheus holds every prediction sent so far, then read the signals."""

    def predictions(model: str) -> float:
        return prometheus.value(f'sum(dlwp_predictions_total{{model="{model}"}})')

    prometheus.wait_for(lambda: (predictions("imdb"), predictions("housing"),
                                 predictions("mnist")) == (imdb, housing, mnist))  # fmt: skip
    at = time.time()
    return Phase(
        at,
        prometheus.value('dlwp_input_oov_ratio_sum{model="imdb"}', at),
        prometheus.value('dlwp_input_oov_ratio_count{model="imdb"}', at),
        {
            sample["metric"]["feature"]: float(sample["value"][1])
            for sample in prometheus.query("dlwp_input_out_of_range_total", at)
        },
    )


@pytest.fixture(scope="module")
def phases(two_workers: ServerProcess, prometheus: Prometheus) -> tuple[Phase, Phase]:
    """Normal traffic from the test sets, then drifted inputs; Prometheus's view after each."""
    reviews, houses = payloads.reviews(12), payloads.houses()[:12]
    for review in reviews:
        assert _post(two_workers, "/v1/sentiment", {"text": review}) == 200
    assert _post(two_workers, "/v1/sentiment", {"texts": reviews}) == 200
    for house in houses:
        assert _post(two_workers, "/v1/housing", {"features": house}) == 200
    for i in range(6):
        assert _post(two_workers, "/v1/topics", payloads.topics_body(i)) == 200
        assert _post(two_workers, "/v1/digits", payloads.digits_json_body(i)) == 200
    assert _post(two_workers, "/v1/housing", {"features": {"RM": "six"}}) in (400, 422)
    normal = _phase(prometheus, imdb=24, housing=12, mnist=6)

    for _ in range(12):
        assert _post(two_workers, "/v1/sentiment", {"text": MADE_UP}) == 200
    for house in houses[:8]:
        assert (
            _post(two_workers, "/v1/housing", {"features": {**house, "RM": 12.0, "TAX": 2000}})
            == 200
        )
    blank = [[0] * 784]
    for _ in range(4):
        assert _post(two_workers, "/v1/digits", {"images": blank}) == 200
    drifted = _phase(prometheus, imdb=36, housing=20, mnist=10)
    return normal, drifted


def test_every_prediction_reaches_prometheus_summed_over_both_workers(phases):
    normal, drifted = phases  # each phase waited for the exact totals sent

    assert normal.oov_count == 24 and drifted.oov_count == 36


def test_made_up_reviews_move_the_oov_ratio(phases):
    normal, drifted = phases

    assert 0.01 < normal.oov_sum / normal.oov_count < 0.15, "IMDB test reviews: about 0.06"
    drift = (drifted.oov_sum - normal.oov_sum) / (drifted.oov_count - normal.oov_count)
    assert drift == pytest.approx(1.0)


def test_out_of_range_houses_are_counted_by_feature(phases):
    normal, drifted = phases

    moved = {f: v - normal.out_of_range.get(f, 0) for f, v in drifted.out_of_range.items()}
    assert {f: v for f, v in moved.items() if v} == {"RM": 8, "TAX": 8}


@pytest.mark.parametrize(
    "alert", ["DlwpTextOutOfVocabulary", "DlwpHousingOutOfRange", "DlwpDigitsBlankOrInverted"]
)
def test_drift_alerts_hold_on_drifted_inputs_and_not_on_normal_ones(phases, prometheus, alert):
    normal, drifted = phases
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    expr = next(r["expr"] for r in rules if r.get("alert") == alert)

    assert prometheus.query(expr, normal.at) == []
    assert [r["metric"]["model"] for r in prometheus.query(expr, drifted.at)] != []


def test_the_alert_rules_pass_promtool_and_load_healthy(prometheus):
    check = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

    def rules() -> list[dict[str, Any]]:
        body = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    expected = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    prometheus.wait_for(lambda: len(rules()) == expected and all(
        r["health"] == "ok" for r in rules()))  # fmt: skip


def test_promtool_accepts_the_live_metrics(two_workers, phases):
    exposition = httpx.get(f"{two_workers.url}/metrics", timeout=10).content

    check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=exposition,
                           capture_output=True)  # fmt: skip

    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert b"dlwp_input_out_of_range_total" in exposition


def test_every_dashboard_query_evaluates_and_its_panels_show_data(prometheus, phases):
    dashboard = json.loads(DASHBOARD.read_text())
    labels = f"{prometheus.url}/api/v1/label/model/values"
    models = httpx.get(labels, params={"match[]": "dlwp_model_info"}, timeout=10).json()["data"]
    assert sorted(models) == ["housing", "imdb", "mnist", "reuters"], "the $model variable"

    empty = []
    for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
        results = [
            prometheus.query(  # raises on any query Prometheus cannot evaluate
                target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
            )
            for target in panel["targets"]
        ]
        if not any(results):
            empty.append(panel["title"])
    assert set(empty) <= QUIET_PANELS
