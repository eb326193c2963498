"""`make bench`: the server under load, measured side by side in one run.

The server runs as one worker process pinned to one core; wrk (C, one thread) drives it from
the other core with a Lua script that POSTs a fixed body. For each scenario and concurrency it
records req/s, p50, p99, errors and the mean batch size the server reports in `/metrics`.
Batching on and off run in the same invocation, so their ratio is fair.

    python loadtests/bench.py                 # full run (~30 s per point)
    python loadtests/bench.py --quick         # a few seconds per point (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "loadtests" / "reports"
MNIST_BODY = json.dumps({"instances": [[float((i * 7) % 256) for i in range(784)]]})


@dataclass
class Scenario:
    name: str
    model: str
    path: str
    body: str


SCENARIOS = {
    "mnist": Scenario("mnist", "mnist", "/v1/models/mnist:predict", MNIST_BODY),
}


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], core: int) -> list[str]:
    """Pin to one core where taskset works, so server and load generator do not compete."""
    taskset = shutil.which("taskset")
    if taskset and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        probe = subprocess.run([taskset, "-c", str(core), "true"], capture_output=True)
        if probe.returncode == 0:
            return [taskset, "-c", str(core), *command]
    return command


class Server:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"server-{name}.log", "wb")  # noqa: SIM115
        full_env = {**os.environ, "DLWP_POLL_SECONDS": "0", "DLWP_LOG_LEVEL": "warning", **env}
        command = [sys.executable, "-m", "training.cli", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            pinned(command, 0), env=full_env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server {name} did not become ready; see {self.log.name}")

    def batch_totals(self, model: str) -> tuple[float, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def wrk_script(scenario: Scenario, folder: Path) -> Path:
    path = folder / f"{scenario.name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(scenario.body)}\n"
    )
    return path


def run_wrk(url: str, script: Path, concurrency: int, seconds: int) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench does this)")
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s",
               "-s", str(script), url]  # fmt: skip
    output = subprocess.run(pinned(command, 1), capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


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


SERVERS = {
    "batched": {},
    "unbatched": {"DLWP_MAX_BATCH_SIZE": "1"},
}


def markdown(points: list[Point]) -> str:
    lines = [
        "| scenario | server | concurrency | req/s | p50 ms | p99 ms | errors | mean batch | "
        "req/s ÷ unbatched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    unbatched = {(p.scenario, p.concurrency): p for p in points if p.server == "unbatched"}
    for p in points:
        base = unbatched.get((p.scenario, p.concurrency))
        ratio = (
            f"{p.requests_per_s / base.requests_per_s:.2f}" if base and base.requests_per_s else ""
        )
        lines.append(
            f"| {p.scenario} | {p.server} | {p.concurrency} | {p.requests_per_s:.0f} | "
            f"{p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.errors} | {p.mean_batch_size or ''} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per point")
    parser.add_argument("--seconds", type=int, help="seconds per point (default 20, quick 3)")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated levels")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    seconds = args.seconds or (3 if args.quick else 20)
    levels = [int(c) for c in args.concurrency.split(",")]
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dlwp-bench-"))

    points: list[Point] = []
    for server_name, env in SERVERS.items():
        server = Server(server_name, env, scratch)
        try:
            for scenario in scenarios:
                script = wrk_script(scenario, scratch)
                for concurrency in levels:
                    point = measure(server, scenario, concurrency, seconds, script)
                    print(json.dumps(asdict(point)), flush=True)
                    points.append(point)
        finally:
            server.stop()

    report: dict[str, Any] = {"seconds_per_point": seconds, "points": [asdict(p) for p in points]}
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(points)
    (args.out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
