"""The overload section of `make bench`: is the server still serving at capacity past it?

For each route, wrk drives the server closed-loop at a normal concurrency and at one far past
capacity, interleaved in one run. wrk's clients ignore Retry-After and resend at once, the worst
case of an impatient client pool. Recorded per point: served (200) requests/s, refusals (503)/s,
other answers, socket errors, p99 over all answers; at the overload level also the slowest
`/v2/health/ready` and `/metrics` answer seen meanwhile (new connections, as probes make). The
figure that matters is the ratio: served/s past capacity ÷ served/s at normal load.

    python loadtests/bench_overload.py            # its own server; 3 interleaved 3-s rounds
    python loadtests/bench_overload.py --quick    # 1 round of 2 s
(`make bench` runs it on the batched server after the main section.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests import harness  # noqa: E402


@dataclass
class Route:
    name: str
    path: str
    body: str
    normal: int  # concurrency at capacity
    overload: int  # concurrency far past it


def routes() -> list[Route]:
    """Bodies with several rows (the issue's case): 8 IMDB reviews, 32 Reuters wires, 1 digit."""
    from loadtests import payloads

    return [
        Route("sentiment ×8", "/v1/sentiment",
              json.dumps({"texts": payloads.reviews()[:8]}), 16, 256),
        Route("topics ×32", "/v1/topics", json.dumps({"texts": payloads.wires()[:32]}), 16, 256),
        Route("mnist", "/v1/models/mnist:predict",
              json.dumps(payloads.mnist_instances_body(0)), 64, 1024),
    ]  # fmt: skip


@dataclass
class OverloadPoint:
    route: str
    concurrency: int
    served_per_s: float
    refused_per_s: float
    other: int  # answers neither 200 nor 503, plus 503s without Retry-After, plus socket errors
    p99_ms: float
    health_max_ms: float | None  # slowest health/metrics answer during the run (overload only)
    health_after_onset_ms: float | None  # the same, for probes sent after the run's first second


LUA_COUNTERS = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) served = 0; refused = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then served = served + 1
  elseif status == 503 and (headers["retry-after"] or headers["Retry-After"]) then
    refused = refused + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local s, r, o = 0, 0, 0
  for _, t in ipairs(threads) do s = s + t:get("served"); r = r + t:get("refused");
    o = o + t:get("other") end
  io.write(string.format("ANSWERS served=%d refused=%d other=%d seconds=%f\\n", s, r, o,
    summary.duration / 1e6))
end
"""


def wrk_script(route: Route, folder: Path) -> Path:
    path = folder / f"overload-{route.path.strip('/').replace('/', '-').replace(':', '-')}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(route.body)}\n" + LUA_COUNTERS
    )
    return path


class HealthProbe(threading.Thread):
    """Asks /v2/health/ready and /metrics on new connections, ten times a second, timing each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parsed = urllib.parse.urlsplit(url)
        self.address = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.slowest_s = 0.0
        self.slowest_after_onset_s = 0.0  # probes sent after the first second
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        host, port = self.address
        begun = time.perf_counter()
        while not self._done.is_set():
            for path in ("/v2/health/ready", "/metrics"):
                started = time.perf_counter()
                # http.client, not httpx.get: a new httpx client loads the CA bundle each time,
                # which would time the prober, not the server.
                connection = http.client.HTTPConnection(host, port, timeout=5)
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except OSError:
                    ok = False
                finally:
                    connection.close()
                took = time.perf_counter() - started
                self.slowest_s = max(self.slowest_s, took)
                if started - begun > 1:
                    self.slowest_after_onset_s = max(self.slowest_after_onset_s, took)
                self.failures += not ok
            self._done.wait(0.1)

    def stop(self) -> None:
        self._done.set()
        self.join()


def measure(server: harness.Server, route: Route, concurrency: int, seconds: int,
            script: Path, probe: bool) -> OverloadPoint:  # fmt: skip
    url = server.url + route.path
    harness.run_wrk(url, script, concurrency, 1)  # open the connections, fill the queue
    prober = HealthProbe(server.url) if probe else None
    if prober:
        prober.start()
    output = harness.wrk_output(url, script, concurrency, seconds)
    if prober:
        prober.stop()
    parsed = harness.parse_wrk(output)
    answers = re.search(r"ANSWERS served=(\d+) refused=(\d+) other=(\d+) seconds=([\d.]+)", output)
    if answers is None:
        raise RuntimeError(f"wrk printed no answer counts:\n{output}")
    served, refused, other = (int(answers.group(i)) for i in (1, 2, 3))
    elapsed = float(answers.group(4)) or float(seconds)
    socket_errors = int(parsed["errors"]) - _non_2xx(output)
    health_ms = onset_ms = None
    if prober:
        failed = float("inf") if prober.failures else 0.0
        health_ms = max(round(prober.slowest_s * 1000, 1), failed)
        onset_ms = max(round(prober.slowest_after_onset_s * 1000, 1), failed)
    return OverloadPoint(route.name, concurrency, round(served / elapsed, 1),
                         round(refused / elapsed, 1), other + socket_errors,
                         round(parsed["p99_ms"], 2), health_ms, onset_ms)  # fmt: skip


def _non_2xx(output: str) -> int:
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return int(match.group(1)) if match else 0


def run(server: harness.Server, folder: Path, seconds: int, rounds: int,
        chosen: list[Route] | None = None) -> list[OverloadPoint]:  # fmt: skip
    """Normal and overload levels interleaved per route, `rounds` times; medians kept."""
    points = []
    for route in chosen or routes():
        script = wrk_script(route, folder)
        runs: dict[int, list[OverloadPoint]] = {route.normal: [], route.overload: []}
        for round_ in range(rounds):
            levels = [route.normal, route.overload]
            for concurrency in levels if round_ % 2 == 0 else levels[::-1]:
                point = measure(server, route, concurrency, seconds, script,
                                probe=concurrency == route.overload)  # fmt: skip
                print(json.dumps(asdict(point)), flush=True)
                runs[concurrency].append(point)
        points += [_median(runs[route.normal]), _median(runs[route.overload])]
    return points


def _median(runs: list[OverloadPoint]) -> OverloadPoint:
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    healths = [r.health_max_ms for r in runs if r.health_max_ms is not None]
    later = [r.health_after_onset_ms for r in runs if r.health_after_onset_ms is not None]
    return OverloadPoint(
        runs[0].route, runs[0].concurrency, median([r.served_per_s for r in runs]),
        median([r.refused_per_s for r in runs]), sum(r.other for r in runs),
        max(r.p99_ms for r in runs), max(healths) if healths else None,
        max(later) if later else None,
    )  # fmt: skip


def markdown(points: list[OverloadPoint]) -> str:
    """One row per route: served/s at normal load and past capacity, and their ratio."""
    lines = [
        "Overload (wrk closed loop, clients resend at once; median of rounds, worst p99 and "
        "health):",
        "",
        "| route | c | served/s | c past capacity | served/s | ratio | refused/s | p99 ms | "
        "other answers + socket errors | slowest health/metrics ms | … after the first second |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for normal, over in zip(points[::2], points[1::2], strict=True):
        ratio = over.served_per_s / normal.served_per_s if normal.served_per_s else 0.0
        lines.append(
            f"| {normal.route} | {normal.concurrency} | {normal.served_per_s:.0f} | "
            f"{over.concurrency} | {over.served_per_s:.0f} | {ratio:.2f} | "
            f"{over.refused_per_s:.0f} | {over.p99_ms:.0f} | {normal.other + over.other} | "
            f"{over.health_max_ms} | {over.health_after_onset_ms} |"
        )
    return "\n".join(lines) + "\n"


def report(points: list[OverloadPoint]) -> dict[str, Any]:
    return {"overload": [asdict(p) for p in points]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per point")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 3, quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--routes", help="comma-separated prefixes of sentiment, topics, mnist")
    args = parser.parse_args(argv)
    chosen = [r for r in routes() if not args.routes or
              any(r.name.startswith(p) for p in args.routes.split(","))]  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="dlwp-overload-"))
    server = harness.Server("batched", {}, scratch)
    try:
        points = run(server, scratch, args.seconds or (2 if args.quick else 3),
                     args.rounds or (1 if args.quick else 3), chosen)  # fmt: skip
    finally:
        server.stop()
    print(markdown(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
