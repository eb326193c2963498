"""What a shadow rollout costs: the same server with no rollout, and with a shadow rollout of a
copy of the serving version at share 1.0, measured interleaved at c=64 on MNIST (as
bench_signals.py measures the monitoring). The candidate computes requests off the answer's path,
so CPU per request should at most double and the answered p99 grow little; `dropped` is the
share of shadow rows dropped because the server was busy. Then both servers go through the
overload section's MNIST route (bench_overload.py): served/s far past capacity over served/s at
capacity should hold with the rollout running, its shadow work dropped first.

    python loadtests/bench_rollout.py [--seconds 3] [--rounds 3] [--no-overload]
(`make bench` runs it as its "Rollout cost" section.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests import bench_overload  # noqa: E402
from loadtests.bench_signals import _cpu_and_requests  # noqa: E402
from loadtests.harness import Point, Server, measure, median_point, scenarios, wrk_script  # noqa: E402

SCENARIO = "mnist"
CONCURRENCY = 64
# The gate must not end the rollout in the middle of a measurement: decided by request only.
ROLLOUT = {"version": 2, "mode": "shadow", "share": 1.0, "gate": {"auto": 0}}


@dataclass
class RolloutPoint(Point):
    cpu_us_per_request: float = 0.0
    shadow_dropped_share: float = 0.0  # of the rows the candidate was asked to shadow


@dataclass
class RolloutOverload:
    server: str
    normal: bench_overload.OverloadPoint
    overload: bench_overload.OverloadPoint
    shadow_dropped_share: float  # during the overload runs


@dataclass
class RolloutCost:
    points: list[RolloutPoint]
    overload: list[RolloutOverload]
    seconds: int
    rounds: int


def repository(scratch: Path) -> Path:
    """A repository holding MNIST version 1 and a copy of it as version 2."""
    from training import export

    models = scratch / "rollout-models"
    shutil.copytree(REPO / "models" / SCENARIO / "1", models / SCENARIO / "1")
    export.publish_copy(models, SCENARIO, models / SCENARIO / "1")
    return models


def compare(scratch: Path, seconds: int, rounds: int, overload: bool = True) -> RolloutCost:
    """Both servers in turn each round, the first rotating; medians kept. Then, with `overload`,
    each through the overload section's MNIST route."""
    models = repository(scratch)
    servers: list[Server] = []
    try:
        for name in ("no-rollout", "shadow-1.0"):
            state = tempfile.mkdtemp(prefix=f"dlwp-{name}-", dir=scratch)
            server = Server(name, {"DLWP_MODELS_DIR": str(models), "DLWP_STATE_DIR": state},
                            scratch)  # fmt: skip
            servers.append(server)
            repository_url = f"{server.url}/v2/repository/models/{SCENARIO}"
            pin = httpx.post(f"{repository_url}/load", json={"parameters": {"version": 1}},
                             timeout=120)  # fmt: skip
            pin.raise_for_status()
            if name != "no-rollout":
                started = httpx.post(f"{repository_url}/rollout", json=ROLLOUT, timeout=120)
                started.raise_for_status()
        scenario = scenarios()[SCENARIO]
        script = wrk_script(scenario, scratch)
        runs: dict[str, list[Point]] = {s.name: [] for s in servers}
        cpu: dict[str, list[float]] = {s.name: [] for s in servers}
        for round_ in range(rounds):
            start = round_ % len(servers)
            for server in servers[start:] + servers[:start]:
                before = _cpu_and_requests(server)
                runs[server.name].append(measure(server, scenario, CONCURRENCY, seconds, script))
                after = _cpu_and_requests(server)
                cpu[server.name].append((after[0] - before[0]) / (after[1] - before[1]) * 1e6)
        points = []
        for server in servers:
            point = RolloutPoint(
                **asdict(median_point(runs[server.name])),
                cpu_us_per_request=round(statistics.median(cpu[server.name]), 1),
                shadow_dropped_share=_dropped_share(server),
            )
            print(json.dumps(asdict(point)), flush=True)
            points.append(point)
        overloaded = []
        route = next(r for r in bench_overload.routes() if r.name == SCENARIO)
        for server in servers if overload else []:
            before = _shadow_counts(server)
            normal, past = bench_overload.run(server, scratch, seconds, rounds, [route])
            dropped = _dropped_share(server, before)
            overloaded.append(RolloutOverload(server.name, normal, past, dropped))
        return RolloutCost(points, overloaded, seconds, rounds)
    finally:
        for server in servers:
            server.stop()


def _shadow_counts(server: Server) -> tuple[int, int]:
    """(rows compared, shadow rows dropped) so far; (0, 0) with no rollout."""
    answer = httpx.get(f"{server.url}/v2/repository/models/{SCENARIO}/rollout", timeout=10)
    if answer.status_code != 200:
        return 0, 0
    status = answer.json()
    return int(status["compared"]), int(status["shadow_dropped"])


def _dropped_share(server: Server, since: tuple[int, int] = (0, 0)) -> float:
    """The share of shadow rows dropped since the counts `since` were read."""
    now = _shadow_counts(server)
    compared, dropped = now[0] - since[0], now[1] - since[1]
    return round(dropped / (compared + dropped), 4) if compared + dropped else 0.0


def markdown(cost: RolloutCost) -> str:
    points = cost.points
    base = next((p for p in points if p.server == "no-rollout"), None)
    lines = [
        "",
        f"Shadow rollout cost ({SCENARIO}, c={CONCURRENCY}, {cost.rounds} interleaved rounds of "
        f"{cost.seconds} s; ratios to the server with no rollout):",
        "",
        "| server | req/s | p50 ms | p99 ms | errors | CPU µs/request | shadow rows dropped | "
        "req/s ÷ none | p99 ÷ none | CPU/request ÷ none |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        rate = f"{p.requests_per_s / base.requests_per_s:.3f}" if base else ""
        p99 = f"{p.p99_ms / base.p99_ms:.2f}" if base and base.p99_ms else ""
        cpu = f"{p.cpu_us_per_request / base.cpu_us_per_request:.2f}" if base else ""
        lines.append(
            f"| {p.server} | {p.requests_per_s:.0f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | "
            f"{p.errors} | {p.cpu_us_per_request:.0f} | {p.shadow_dropped_share:.1%} | {rate} | "
            f"{p99} | {cpu} |"
        )
    if cost.overload:
        lines += [
            "",
            f"Overload with and without the rollout ({SCENARIO}, the overload section's route; "
            "ratio: served/s past capacity ÷ served/s at capacity):",
            "",
            "| server | c | served/s | c past capacity | served/s | ratio | refused/s | p99 ms | "
            "other answers + socket errors | shadow rows dropped past capacity |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for o in cost.overload:
            ratio = o.overload.served_per_s / o.normal.served_per_s if o.normal.served_per_s else 0
            lines.append(
                f"| {o.server} | {o.normal.concurrency} | {o.normal.served_per_s:.0f} | "
                f"{o.overload.concurrency} | {o.overload.served_per_s:.0f} | {ratio:.2f} | "
                f"{o.overload.refused_per_s:.0f} | {o.overload.p99_ms:.0f} | "
                f"{o.normal.other + o.overload.other} | "
                f"{o.shadow_dropped_share:.1%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overload", action=argparse.BooleanOptionalAction, default=True,
                        help="also the overload section's MNIST route on both servers")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlwp-bench-rollout-") as scratch:
        print(markdown(compare(Path(scratch), args.seconds, args.rounds, args.overload)))


if __name__ == "__main__":
    main()
