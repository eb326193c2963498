"""The load tests themselves work: locust scenarios run clean, the benchmark writes its table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest

from loadtests import bench_grpc, payloads

from ..conftest import REPO, needs_datasets

pytestmark = needs_datasets


def test_payload_builders_make_valid_requests(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        answers = [
            http.post("/v1/sentiment", json=payloads.sentiment_body(3)),
            http.post("/v1/topics", json=payloads.topics_body(3)),
            http.post("/v1/digits", json=payloads.digits_json_body(3)),
            http.post(
                "/v1/digits",
                content=payloads.digits_png_body(3),
                headers={"content-type": "image/png"},
            ),
            http.post("/v1/housing", json=payloads.housing_body(3)),
            http.post("/v1/models/mnist:predict", json=payloads.mnist_instances_body(3)),
        ]

    assert [a.status_code for a in answers] == [200] * 6
    assert answers[2].json()["predictions"][0]["digit"] == int(payloads.digits()[1][3])


def test_a_short_headless_locust_run_has_no_failures(server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"),
         "--headless", "--host", server.url, "--users", "6", "--spawn-rate", "6",
         "--run-time", "4s", "--csv", str(tmp_path / "run"), "--exit-code-on-error", "1",
         "--only-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
    stats = (tmp_path / "run_stats.csv").read_text().splitlines()
    aggregated = next(line for line in stats if ",Aggregated," in line).split(",")
    assert int(aggregated[2]) > 20, "requests were made"
    assert int(aggregated[3]) == 0, "no failures"


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_bench_runs_end_to_end_in_quick_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "loadtests" / "bench.py"), "--quick", "--seconds", "1",
         "--scenarios", "mnist", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    servers = {point["server"] for point in report["points"]}
    assert servers == {"batched", "unbatched", "echo"}
    assert all(point["requests_per_s"] > 0 and point["errors"] == 0 for point in report["points"])
    assert len(report["compute_ceiling"]) == 6
    assert all(f["rss_mib"] > 100 and f["cold_start_s"] > 0 for f in report["footprint"].values())
    assert "req/s ÷ echo" in (tmp_path / "bench.md").read_text()
    grpc_rows = report["grpc_points"]  # gRPC beside REST V2, with the generators' ceilings
    assert [p["path"] for p in grpc_rows] == list(bench_grpc.PATHS)
    assert all(point["requests_per_s"] > 0 and point["errors"] == 0 for point in grpc_rows)
