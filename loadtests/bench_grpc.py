"""`make bench`'s gRPC rows: MNIST and housing over gRPC beside REST V2, and who limits each.

wrk (C) can drive REST but not gRPC, so the gRPC load comes from a Python generator: one
process on the load core, `grpc.aio` over one channel, pre-serialized raw requests, `c` calls in
flight. A one-core Python client may saturate before the server, so the same generator also
drives a trivial servicer (parses the request into numpy, answers a constant: gRPC's echo
ceiling), and REST V2 is driven both by wrk and by a Python generator of similar cost (raw
HTTP/1.1 keep-alive over asyncio streams). Per row, "limited by" says which side the figure
measures.

    python loadtests/bench_grpc.py --trivial-server PORT        # the trivial servicer
    python loadtests/bench_grpc.py --load grpc|http TARGET BODY C SECONDS   # one generator run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests import harness  # noqa: E402
from tests.support.servers import free_port, pinned  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
LEVELS = (1, 64)
WARM_S = 0.5  # each generator run first warms its connections and the batcher, unmeasured
# A generator within this share of its own ceiling is taken to be what limits the figure.
SATURATED = 0.8


@dataclass
class GrpcPoint:
    model: str
    concurrency: int
    path: str  # what drove what: "REST V2 · wrk", "REST V2 · python", "gRPC · python", …
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    mean_batch_size: float | None
    limited_by: str = ""


# ------------------------------------------------------------------------------ payloads


def _rows(model: str) -> np.ndarray:
    """One row of the real test set, the one `make bench`'s REST scenarios send."""
    from loadtests import payloads

    if model == "mnist":
        return payloads.digits(1)[0].reshape(1, 784).astype(np.float32)
    house = payloads.houses()[0]
    return np.asarray([[house[name] for name in payloads.HOUSING_FEATURES]], dtype=np.float32)


INPUT_NAMES = {"mnist": "pixels", "housing": "features"}


def grpc_body(model: str) -> bytes:
    """A ModelInferRequest with raw contents (what tritonclient.grpc sends), serialized."""
    from service.grpc import protocol

    rows = _rows(model)
    request = protocol.ModelInferRequest(model_name=model)
    request.inputs.add(name=INPUT_NAMES[model], datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(rows.astype("<f4").tobytes())
    body: bytes = request.SerializeToString()
    return body


def rest_body(model: str) -> str:
    """The same tensor as a V2 REST JSON body."""
    rows = _rows(model)
    tensor = {"name": INPUT_NAMES[model], "datatype": "FP32", "shape": list(rows.shape),
              "data": rows.reshape(-1).tolist()}  # fmt: skip
    return json.dumps({"inputs": [tensor]})


# ---------------------------------------------------------------------------- generators


def _summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    ordered = sorted(latencies) or [float("nan")]

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"requests_per_s": len(latencies) / seconds, "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99), "errors": errors}  # fmt: skip


async def grpc_load(target: str, body: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    import grpc

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: no client-side (de)serializing
        end = time.perf_counter() + seconds

        async def user() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < end:
                try:
                    await call(body, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return _summary(latencies, errors, seconds)


async def http_load(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    request = (f"POST /{path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while (started := time.perf_counter()) < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))  # fmt: skip
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
        writer.close()

    await asyncio.gather(*(user() for _ in range(concurrency)))
    return _summary(latencies, errors, seconds)


def run_generator(kind: str, target: str, body: Path, concurrency: int,
                  seconds: float) -> dict[str, float]:  # fmt: skip
    """One generator run (after WARM_S of warm-up) in its own process on the load core."""
    command = [sys.executable, str(Path(__file__)), "--load", kind, target, str(body),
               str(concurrency), str(seconds)]  # fmt: skip
    output = subprocess.run(pinned(command, 1), capture_output=True, text=True, check=True,
                            cwd=REPO).stdout  # fmt: skip
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------- the trivial servicer


async def trivial_server(port: int) -> None:
    """gRPC's echo ceiling: parse the request and its tensor into numpy, answer a constant."""
    import grpc

    from service.grpc import protocol

    answer = protocol.ModelInferResponse(model_name="echo", model_version="1")
    answer.outputs.add(name="out", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(np.zeros(10, "<f4").tobytes())
    constant = answer.SerializeToString()

    async def infer(data: bytes, context: Any) -> bytes:
        request = protocol.ModelInferRequest.FromString(data)
        for raw in request.raw_input_contents:
            np.frombuffer(raw, dtype="<f4")
        return constant

    server = grpc.aio.server()
    handlers = {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


class TrivialServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        command = [sys.executable, str(Path(__file__)), "--trivial-server", str(self.port)]
        self.process = subprocess.Popen(pinned(command, 0), cwd=REPO)
        body = grpc_body("housing")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # ready once it answers a call
            try:
                if asyncio.run(grpc_load(self.target, body, 1, 0.05))["requests_per_s"] > 0:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the trivial gRPC servicer did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# ------------------------------------------------------------------------------- the rows


@dataclass
class _Loads:
    """Where each path sends one model's load."""

    rest_url: str
    wrk_script: Path
    rest_file: Path
    grpc_file: Path
    grpc_target: str
    trivial_target: str

    def drive(self, path: str, concurrency: int, seconds: int) -> dict[str, float]:
        if path == "REST V2 · wrk":
            harness.run_wrk(self.rest_url, self.wrk_script, concurrency, 1)  # warm the connections
            return harness.run_wrk(self.rest_url, self.wrk_script, concurrency, seconds)
        if path == "REST V2 · python":
            return run_generator("http", self.rest_url, self.rest_file, concurrency, seconds)
        target = self.trivial_target if "trivial" in path else self.grpc_target
        return run_generator("grpc", target, self.grpc_file, concurrency, seconds)


PATHS = ("REST V2 · wrk", "REST V2 · python", "gRPC · python", "gRPC · python → trivial servicer")


def measure_all(server: Any, models: list[str], seconds: int, rounds: int, quick: bool,
                folder: Path) -> list[GrpcPoint]:  # fmt: skip
    """Every row, interleaved round by round; `server` is bench.py's running batched server.

    `--quick` measures concurrency 64 only, to stay quick.
    """
    trivial = TrivialServer()
    points: list[GrpcPoint] = []
    try:
        for model in [m for m in ("mnist", "housing") if m in models]:
            grpc_file, rest_file = folder / f"{model}.grpc.bin", folder / f"{model}.v2.json"
            grpc_file.write_bytes(grpc_body(model))
            rest_file.write_text(rest_body(model))
            scenario = harness.Scenario(f"{model}-v2", model, f"/v2/models/{model}/infer",
                                      rest_file.read_text())  # fmt: skip
            loads = _Loads(server.url + scenario.path, harness.wrk_script(scenario, folder),
                           rest_file, grpc_file, server.grpc_target, trivial.target)  # fmt: skip
            for concurrency in LEVELS[-1:] if quick else LEVELS:
                runs: dict[str, list[GrpcPoint]] = {path: [] for path in PATHS}
                for round_ in range(rounds):
                    # Rotate who goes first, so no path always meets the same drift.
                    for path in PATHS[round_ % len(PATHS) :] + PATHS[: round_ % len(PATHS)]:
                        before = server.batch_totals(model)
                        result = loads.drive(path, concurrency, seconds)
                        after = server.batch_totals(model)
                        calls = after[1] - before[1]
                        batch = (after[0] - before[0]) / calls if calls else None
                        if "trivial" in path:
                            batch = None
                        runs[path].append(GrpcPoint(
                            model, concurrency, path, round(result["requests_per_s"], 1),
                            round(result["p50_ms"], 2), round(result["p99_ms"], 2),
                            int(result["errors"]), round(batch, 2) if batch else None))  # fmt: skip
                chosen = {path: _median(found) for path, found in runs.items()}
                _judge(chosen)
                for point in chosen.values():
                    print(json.dumps(asdict(point)), flush=True)
                    points.append(point)
    finally:
        trivial.stop()
    return points


def _median(runs: list[GrpcPoint]) -> GrpcPoint:
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    batches = [r.mean_batch_size for r in runs if r.mean_batch_size is not None]
    first = runs[0]
    return GrpcPoint(first.model, first.concurrency, first.path,
                     median([r.requests_per_s for r in runs]), median([r.p50_ms for r in runs]),
                     median([r.p99_ms for r in runs]), sum(r.errors for r in runs),
                     median(batches) if batches else None)  # fmt: skip


def _judge(points: dict[str, GrpcPoint]) -> None:
    """Say which side each figure measures, from the generators' ceilings beside it.

    At concurrency 1 nothing saturates: req/s is one over the round trip, so the row says how
    much of it each side adds. Under load, a generator within SATURATED of its own ceiling is
    what limits the figure.
    """
    wrk, python_rest = points["REST V2 · wrk"], points["REST V2 · python"]
    grpc_, ceiling = points["gRPC · python"], points["gRPC · python → trivial servicer"]
    ceiling.limited_by = "generator + Python gRPC (the ceiling)"
    wrk.limited_by = "server (C generator)"
    if wrk.concurrency == 1:
        python_rest.limited_by = (
            f"round trip: generator {python_rest.p50_ms - wrk.p50_ms:+.2f} ms p50 vs wrk"
        )
        grpc_.limited_by = (
            f"round trip: server {grpc_.p50_ms - ceiling.p50_ms:+.2f} ms p50 over the ceiling"
        )
        return
    python_rest.limited_by = (
        "generator" if python_rest.requests_per_s < SATURATED * wrk.requests_per_s else "server"
    )
    grpc_.limited_by = (
        f"generator (≥ {SATURATED:.0%} of its ceiling)"
        if grpc_.requests_per_s >= SATURATED * ceiling.requests_per_s
        else "server"
    )


def markdown(points: list[GrpcPoint]) -> str:
    lines = ["", "gRPC beside REST V2 (same rows; gRPC raw contents, REST JSON):", "",
             "| model | conc. | driven | req/s | p50 ms | p99 ms | errors | mean batch | "
             "limited by |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {p.model} | {p.concurrency} | {p.path} | {p.requests_per_s:.0f} | {p.p50_ms:.2f} | "
        f"{p.p99_ms:.2f} | {p.errors} | {p.mean_batch_size or ''} | {p.limited_by} |"
        for p in points
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial-server", type=int, metavar="PORT")
    parser.add_argument("--load", nargs=5, metavar=("KIND", "TARGET", "BODY", "C", "SECONDS"))
    args = parser.parse_args(argv)
    import uvloop

    if args.trivial_server:
        uvloop.run(trivial_server(args.trivial_server))
        return 0
    if args.load:
        kind, target, body, concurrency, seconds = args.load
        load = grpc_load if kind == "grpc" else http_load
        data = Path(body).read_bytes()
        uvloop.run(load(target, data, int(concurrency), WARM_S))
        result = uvloop.run(load(target, data, int(concurrency), float(seconds)))
        print(json.dumps(result))
        return 0
    parser.error("run through loadtests/bench.py (make bench)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
