"""A closed-loop HTTP/1.1 load generator in plain asyncio, for machines without wrk (the H200).

`python -m loadtests.gpu_load SPEC.json` keeps `connections` keep-alive connections busy, each
sending its next request as soon as the last answer arrives, from `start_at` (a wall-clock time
shared by all the generator processes of one run) for `warmup_s + duration_s`, and writes the
latencies (ms) of the answers completed inside the measured window to `latencies_path` (.npy),
with counts, to stdout as JSON. Raw sockets and no HTTP library: one process does ~10k requests/s,
so a few of them on spare cores load a multi-worker server. `run_load` starts and merges them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def request_bytes(host: str, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code (the body is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this load generator")
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    window: tuple[float, float],
    latencies: list[float],
    counts: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while True:
            sent = time.time()
            if sent >= window[1]:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            status = await _read_response(reader)
            done = time.time()
            if window[0] <= done <= window[1]:
                latencies.append((done - sent) * 1000)
                counts["ok" if status == 200 else "errors"] += 1
    finally:
        writer.close()


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    bodies = [bytes.fromhex(b) for b in spec["bodies_hex"]]
    requests = [request_bytes(host, spec["path"], b, spec["content_type"]) for b in bodies]
    start = spec["start_at"]
    window = (start + spec["warmup_s"], start + spec["warmup_s"] + spec["duration_s"])
    await asyncio.sleep(max(0.0, start - time.time()))
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    tasks = [
        _connection(host, port, requests, spec["offset"] + n, window, latencies, counts)
        for n in range(spec["connections"])
    ]
    failures = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if r is not None]
    np.save(spec["latencies_path"], np.asarray(latencies, dtype=np.float32))
    return {
        **counts,
        "connection_failures": len(failures),
        "first_failure": repr(failures[0]) if failures else None,
    }


def run_load(
    url: str,
    path: str,
    bodies: list[bytes],
    content_type: str,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    processes: int,
    cores: list[int] | None = None,
) -> dict[str, Any]:
    """Load `url + path` from `processes` generator processes; merged req/s and percentiles."""
    host, port = url.removeprefix("http://").split(":")
    processes = max(1, min(processes, concurrency))
    start_at = time.time() + 1.0  # every process connects and starts within this second
    with tempfile.TemporaryDirectory(prefix="dlwp-load-") as folder:
        children = []
        for n in range(processes):
            share = concurrency // processes + (1 if n < concurrency % processes else 0)
            spec = {
                "host": host,
                "port": int(port),
                "path": path,
                "content_type": content_type,
                "bodies_hex": [b.hex() for b in bodies],
                "connections": share,
                "offset": n * 7919,
                "start_at": start_at,
                "warmup_s": warmup_s,
                "duration_s": duration_s,
                "latencies_path": str(Path(folder) / f"latencies-{n}.npy"),
            }
            spec_path = Path(folder) / f"spec-{n}.json"
            spec_path.write_text(json.dumps(spec))
            core = [cores[n % len(cores)]] if cores else None
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "loadtests.gpu_load", str(spec_path)],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if core else None,
                )
            )
        limit = 1.0 + warmup_s + duration_s + 30
        reports = [json.loads(child.communicate(timeout=limit)[0]) for child in children]
        latencies = np.concatenate(
            [np.load(Path(folder) / f"latencies-{n}.npy") for n in range(processes)]
        )
    ok = sum(r["ok"] for r in reports)
    failures = [r["first_failure"] for r in reports if r["first_failure"]]
    return {
        "concurrency": concurrency,
        "generator_processes": processes,
        "duration_s": duration_s,
        "requests": ok,
        "errors": sum(r["errors"] for r in reports),
        "connection_failures": sum(r["connection_failures"] for r in reports),
        "first_failure": failures[0] if failures else None,
        "req_s": round(ok / duration_s, 1),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
    }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        from uvloop import run
    except ImportError:
        from asyncio import run
    print(json.dumps(run(_generate(spec))))


if __name__ == "__main__":
    main()
