"""`make bench`: the server under load, measured side by side in one run.

The server runs as one worker process pinned to one core; wrk (C, one thread) drives it from
the other core with a Lua script that POSTs a fixed body. For each scenario and concurrency it
records req/s, p50, p99, errors and the mean batch size the server reports in `/metrics`.
Batching on and off run in the same invocation, so their ratio is fair.

    python loadtests/bench.py                 # full run: 3 interleaved 3-s runs per point
    python loadtests/bench.py --quick         # a few seconds per point (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests import bench_explain, bench_footprint, bench_grpc, bench_overload  # noqa: E402
from loadtests.harness import (  # noqa: E402
    REPORTS,
    Point,
    Server,
    measure,
    median_point,
    scenarios,
    wrk_script,
)
from tests.support.servers import pinned  # noqa: E402

# name → (environment, is the echo ceiling)
SERVERS: dict[str, tuple[dict[str, str], bool]] = {
    "batched": ({}, False),
    "unbatched": ({"DLWP_MAX_BATCH_SIZE": "1"}, False),
    "echo": ({}, True),
    # Not in the default run: the same artifacts under Keras' JAX backend (--servers …,jax).
    "jax": ({"KERAS_BACKEND": "jax", "DLWP_BACKEND": "jax"}, False),
}
DEFAULT_SERVERS = "batched,unbatched,echo"


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else ""


def markdown(points: list[Point], compute: list[dict[str, float]]) -> str:
    """The batched server's points with ratios to the unbatched server and the echo ceiling."""
    points = sorted(points, key=lambda p: list(SERVERS).index(p.server))
    by_key = {(p.server, p.scenario, p.concurrency): p for p in points}
    lines = [
        "| scenario | concurrency | req/s | p50 ms | p99 ms | errors | mean batch | "
        "req/s ÷ unbatched | req/s ÷ echo | p99 ÷ echo p99 | p50 ÷ unbatched p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if p.server != "batched":
            continue
        unbatched = by_key.get(("unbatched", p.scenario, p.concurrency))
        echo = by_key.get(("echo", p.scenario, p.concurrency))
        lines.append(
            f"| {p.scenario} | {p.concurrency} | {p.requests_per_s:.0f} | {p.p50_ms:.2f} | "
            f"{p.p99_ms:.2f} | {p.errors} | {p.mean_batch_size or ''} | "
            f"{_ratio(p.requests_per_s, unbatched.requests_per_s if unbatched else None)} | "
            f"{_ratio(p.requests_per_s, echo.requests_per_s if echo else None)} | "
            f"{_ratio(p.p99_ms, echo.p99_ms if echo else None)} | "
            f"{_ratio(p.p50_ms, unbatched.p50_ms if unbatched else None)} |"
        )
    lines += ["", "All servers, raw:", "",
              "| server | scenario | concurrency | req/s | p50 ms | p99 ms | errors | mean batch |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {p.server} | {p.scenario} | {p.concurrency} | {p.requests_per_s:.0f} | "
        f"{p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.errors} | {p.mean_batch_size or ''} |"
        for p in points
    ]
    if compute:
        lines += ["", "Compute ceiling (MNIST model call alone, in-process, one thread):", "",
                  "| batch | ms per call | rows/s |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {c['batch']:.0f} | {c['ms_per_call']:.3f} | {c['rows_per_s']:.0f} |"
                  for c in compute]  # fmt: skip
    return "\n".join(lines) + "\n"


COMPUTE_CODE = """
import json, sys, time, numpy as np
from service.model.runtime import configure_threads, compile_model
configure_threads(1)
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
predict = compile_model(sys.argv[1], 784, 256, "tensorflow")
calls = int(sys.argv[2])
rows = []
for batch in (1, 8, 32, 64, 128, 256):
    x = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
    started = time.perf_counter()
    for _ in range(calls):
        predict(x)
    seconds = (time.perf_counter() - started) / calls
    rows.append({"batch": batch, "ms_per_call": seconds * 1000, "rows_per_s": batch / seconds})
print(json.dumps(rows))
"""


def compute_ceiling(quick: bool) -> list[dict[str, float]]:
    """The MNIST model call alone at batch 1…256: what the model could do without HTTP."""
    model = str(REPO / "models" / "mnist" / "1" / "model.keras")
    command = [sys.executable, "-c", COMPUTE_CODE, model, "20" if quick else "200"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run(pinned(command, 0), capture_output=True, text=True, check=True,
                            cwd=REPO, env=env).stdout  # fmt: skip
    result: list[dict[str, float]] = json.loads(output.strip().splitlines()[-1])
    return result


DOCS_PAGE = REPO / "docs" / "benchmarks.md"

READING = """\
The server runs as one process pinned to one core; the load generator (wrk, one thread) runs on
another. Each figure is the median of interleaved rounds: every server under comparison takes its
turn at each point, so a drift of the machine's speed hits them alike. Compare ratios within one
page, not absolute figures across machines. "÷ unbatched" is the batched server's rate over the
same server with batching off (`DLWP_MAX_BATCH_SIZE=1`); "÷ echo" is its rate over the echo
ceiling, uvicorn with a bare Starlette route that parses the same body with orjson into numpy and
answers a constant (`loadtests/echo_server.py`): the fastest a Python server could answer. On the
overload rows, "ratio" is the rate served far past capacity over the rate at capacity. "Rollout
cost" runs the same server with and without a shadow rollout (a copy of the serving MNIST version
computing every request beside it): "÷ none" is the ratio to the server with no rollout.

What limits the figures: once requests are batched, the model call is not the bottleneck (the
compute ceiling is far above any served rate); parsing JSON and HTTP on the server's one core
are, which is what "÷ echo" shows. `--workers` (a core each) or replicas scale past it.
"""


def machine() -> dict[str, str]:
    """What the figures were measured on: CPU model and cores, OS, Python and library versions."""
    import platform
    from importlib import metadata

    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere platform.processor() says what it can
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())  # fmt: skip
    versions = []
    for package in ("tensorflow", "keras", "numpy", "uvicorn", "fastapi", "grpcio", "jax"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    wrk = shutil.which("wrk")
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout if wrk else ""
    return {"CPU": f"{cpu}, {os.cpu_count()} cores", "OS": platform.platform(),
            "Python": platform.python_version(), "libraries": ", ".join(versions),
            "wrk": wrk_version.split(" Copyright")[0].strip() or "not installed"}  # fmt: skip


def docs_page(sections: dict[str, str], command: str, *, date: str | None = None,
              host: dict[str, str] | None = None) -> str:  # fmt: skip
    """docs/benchmarks.md: the tables of one run under their headings, with date, machine and
    command. `make bench` writes it; nothing else should edit the page by hand."""
    import datetime

    when = date or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmarks", "",
             "<!-- Generated by `make bench` (loadtests/bench.py, docs_page): do not edit. -->", "",
             "This page is written by `make bench`; run it to measure your own machine.", "",
             f"- **Date**: {when}", f"- **Command**: `{command}`"]  # fmt: skip
    lines += [f"- **{key}**: {value}" for key, value in (host or machine()).items()]
    lines += ["", "## How to read these tables", "", READING.strip()]
    for heading, body in sections.items():
        if body.strip():
            lines += ["", f"## {heading}", "", body.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per point")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 3, quick 2)")
    parser.add_argument("--concurrency", help="comma-separated levels (default 1,8,32,64,128; "
                        "quick 1,64)")  # fmt: skip
    parser.add_argument("--scenarios", help="comma-separated (default all; quick mnist,housing)")
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"of {', '.join(SERVERS)}")
    parser.add_argument("--rounds", type=int, help="interleaved runs per point, median kept "
                        "(default 3, quick 1)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--overload", action=argparse.BooleanOptionalAction,
                        help="the overload section (loadtests/bench_overload.py) on the batched "
                        "server (default: on, off with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 3)
    levels = [int(c) for c in (args.concurrency or ("1,64" if args.quick else "1,8,32,64,128"))
              .split(",")]  # fmt: skip
    known = scenarios()
    chosen = [known[name] for name in (args.scenarios or ("mnist,housing" if args.quick
              else ",".join(known))).split(",")]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dlwp-bench-"))

    grpc_points: list[Any] = []
    overload: list[bench_overload.OverloadPoint] = []
    # All servers run at once (idle ones cost nothing) and take turns at each point, so slow
    # drifts of this shared machine hit them alike and the ratios stay fair.
    points: list[Point] = []
    servers = []
    try:
        for server_name in args.servers.split(","):
            env, echo = SERVERS[server_name]
            servers.append(Server(server_name, env, scratch, echo=echo))
        for scenario in chosen:
            script = wrk_script(scenario, scratch)
            for concurrency in levels:
                runs: dict[str, list[Point]] = {server.name: [] for server in servers}
                for round_ in range(rounds):
                    # Rotate who goes first, so no server always meets the same drift.
                    for server in (
                        servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
                    ):
                        runs[server.name].append(measure(server, scenario, concurrency, seconds,
                                                         script))  # fmt: skip
                for server in servers:
                    point = median_point(runs[server.name])
                    print(json.dumps(asdict(point)), flush=True)
                    points.append(point)
        batched = next((s for s in servers if s.name == "batched"), None)
        if batched is not None:  # gRPC beside REST V2 (loadtests/bench_grpc.py)
            grpc_points = bench_grpc.measure_all(batched, [s.model for s in chosen], seconds,
                                                 rounds, args.quick, scratch)  # fmt: skip
        if batched is not None and (args.overload if args.overload is not None else not args.quick):
            overload = bench_overload.run(batched, scratch, seconds, rounds)
    finally:
        for server in servers:
            server.stop()

    compute = compute_ceiling(args.quick)
    explain_cost = bench_explain.explain_cost(args.quick)
    footprint = bench_footprint.footprint(args.quick)
    report: dict[str, Any] = {
        "seconds_per_run": seconds,
        "rounds": rounds,
        "points": [asdict(p) for p in points],
        "compute_ceiling": compute,
        "explain_cost": explain_cost,
        "grpc_points": [asdict(p) for p in grpc_points],
        "footprint": footprint,
        **bench_overload.report(overload),
    }
    table = markdown(points, compute) + "\n" + bench_footprint.markdown(footprint)
    table += bench_explain.markdown(explain_cost)
    table += bench_grpc.markdown(grpc_points) if grpc_points else ""
    table += "\n" + bench_overload.markdown(overload) if overload else ""
    if not args.quick:  # what monitoring costs: signals on/off, access log (bench_signals.py)
        from loadtests import bench_signals

        monitoring = bench_signals.compare(scratch, seconds, rounds)
        report["monitoring"] = [asdict(p) for p in monitoring]
        table += bench_signals.markdown(monitoring)
        from loadtests import bench_rollout  # what a shadow rollout costs, overload included

        # Longer and more rounds than the other sections: its figure is a p99 ratio, and the
        # p99 of a 3-s run moves with a single stall.
        rollout = bench_rollout.compare(scratch, max(seconds, 5), max(rounds, 5))
        report["rollout"] = asdict(rollout)
        table += bench_rollout.markdown(rollout)
        sections = {"Endpoints": markdown(points, compute),
                    "Footprint": bench_footprint.markdown(footprint),
                    "Explanations": bench_explain.markdown(explain_cost),
                    "gRPC": bench_grpc.markdown(grpc_points) if grpc_points else "",
                    "Overload": bench_overload.markdown(overload) if overload else "",
                    "Monitoring cost": bench_signals.markdown(monitoring),
                    "Rollout cost": bench_rollout.markdown(rollout)}  # fmt: skip
        command = " ".join(["python loadtests/bench.py", *(sys.argv[1:] if argv is None else argv)])
        DOCS_PAGE.write_text(docs_page(sections, command.strip()))
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
