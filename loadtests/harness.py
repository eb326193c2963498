"""The measuring kit every benchmark shares: the scenarios (one real body per use), a server
under test, wrk runs and their parsing, and a point (req/s, p50, p99, errors, mean batch).

`bench.py` and the sections it runs (`bench_grpc`, `bench_overload`, `bench_signals`, ...) all
import from here and never from each other's entry points, so the benchmarks form no import
cycle. The server itself is started by `tests.support.servers.ServerProcess`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "loadtests" / "reports"
sys.path.insert(0, str(REPO))

from tests.support.servers import ServerProcess, pinned  # noqa: E402


@dataclass
class Scenario:
    name: str
    model: str
    path: str
    body: str


def scenarios() -> dict[str, Scenario]:
    """One body per use, taken from the real test sets (loadtests/payloads.py)."""
    from loadtests import payloads

    return {
        "mnist": Scenario("mnist", "mnist", "/v1/models/mnist:predict",
                          json.dumps(payloads.mnist_instances_body(0))),
        "digits": Scenario("digits", "mnist", "/v1/digits",
                           json.dumps(payloads.digits_json_body(0))),
        "housing": Scenario("housing", "housing", "/v1/housing",
                            json.dumps(payloads.housing_body(0))),
        "sentiment": Scenario("sentiment", "imdb", "/v1/sentiment",
                              json.dumps(payloads.sentiment_body(0))),
        "topics": Scenario("topics", "reuters", "/v1/topics", json.dumps(payloads.topics_body(0))),
    }  # fmt: skip


@dataclass
class Point:
    server: str
    scenario: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    mean_batch_size: float | None


class Server(ServerProcess):
    """A server under test, pinned to core 0, quiet, ready to measure."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, echo: bool = False) -> None:
        super().__init__({"DLWP_LOG_LEVEL": "warning", **env}, name=name, log_dir=log_dir,
                         core=0, echo=echo)  # fmt: skip
        self.wait_ready()

    def batch_totals(self, model: str) -> tuple[float, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        if not text.strip():  # the echo ceiling has no metrics
            return 0.0, 0.0
        total = count = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("model") != model:
                    continue
                if sample.name == "dlwp_batch_size_sum":
                    total = sample.value
                elif sample.name == "dlwp_batch_size_count":
                    count = sample.value
        return total, count


def wrk_script(scenario: Scenario, folder: Path) -> Path:
    path = folder / f"{scenario.name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(scenario.body)}\n"
    )
    return path


def run_wrk(url: str, script: Path, concurrency: int, seconds: int) -> dict[str, float]:
    return parse_wrk(wrk_output(url, script, concurrency, seconds))


def wrk_output(url: str, script: Path, concurrency: int, seconds: int) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench does this)")
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s",
               "-s", str(script), url]  # fmt: skip
    return subprocess.run(pinned(command, 1), capture_output=True, text=True, check=True).stdout


def parse_wrk(output: str) -> dict[str, float]:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {
        "requests_per_s": float(rate.group(1)) if rate else 0.0,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "errors": errors,
    }


def measure(server: Server, scenario: Scenario, concurrency: int, seconds: int,
            script: Path) -> Point:  # fmt: skip
    run_wrk(server.url + scenario.path, script, concurrency, 1)  # warm the connections
    before = server.batch_totals(scenario.model)
    result = run_wrk(server.url + scenario.path, script, concurrency, seconds)
    after = server.batch_totals(scenario.model)
    calls = after[1] - before[1]
    mean_batch = (after[0] - before[0]) / calls if calls else None
    return Point(server.name, scenario.name, concurrency, round(result["requests_per_s"], 1),
                 round(result["p50_ms"], 2), round(result["p99_ms"], 2), int(result["errors"]),
                 round(mean_batch, 2) if mean_batch else None)  # fmt: skip


def median_point(runs: list[Point]) -> Point:
    """One point from interleaved runs: the median of each figure, errors added up."""

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    batches = [r.mean_batch_size for r in runs if r.mean_batch_size is not None]
    return Point(
        runs[0].server, runs[0].scenario, runs[0].concurrency,
        median([r.requests_per_s for r in runs]), median([r.p50_ms for r in runs]),
        median([r.p99_ms for r in runs]), sum(r.errors for r in runs),
        round(median(batches), 2) if batches else None,
    )  # fmt: skip
