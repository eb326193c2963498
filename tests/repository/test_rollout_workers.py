"""A rollout on a two-worker server: both workers route by it, it survives a worker being killed,
and its gate decides once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import httpx

from service.repository.desired_state import STATE_DIR_NAME

from ..conftest import COMMITTED_MODELS, ServerProcess, add_version

HOUSE = [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]


def workers(repo: Path, dead: int = 0) -> list[dict[str, object]]:
    """The workers' status files, but for the `dead` one's (it stays until someone notices)."""
    found = [json.loads(p.read_text()) for p in (repo / STATE_DIR_NAME / "workers").glob("*.json")]
    return [w for w in found if w["pid"] != dead]


def wait_until(condition, timeout_s: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def ask(server: ServerProcess, times: int) -> None:
    no_reuse = httpx.Limits(max_keepalive_connections=0)  # spread over both workers
    with httpx.Client(base_url=server.url, timeout=10, limits=no_reuse) as http:
        answers = [http.post("/v1/models/housing:predict", json={"instances": [HOUSE]})
                   for _ in range(times)]  # fmt: skip
    assert {a.status_code for a in answers} == {200}, "no request fails during the rollout"


def test_a_rollout_survives_a_killed_worker_and_is_decided_once(tmp_path):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    add_version(tmp_path, "housing")
    server = ServerProcess({"DLWP_MODELS_DIR": str(tmp_path)}, workers=2,
                           name="rollout-workers").wait_ready(timeout_s=180)  # fmt: skip
    url = f"{server.url}/v2/repository/models/housing"
    try:
        wait_until(lambda: len(workers(tmp_path)) == 2)
        httpx.post(f"{url}/load", json={"parameters": {"version": 1}}, timeout=60)
        started = httpx.post(f"{url}/rollout", timeout=60, json={
            "version": 2, "mode": "shadow", "gate": {"min_compared": 150}})  # fmt: skip
        assert started.status_code == 200, started.text
        assert [w["candidates"] for w in workers(tmp_path)] == [{"housing": 2}] * 2

        ask(server, 60)
        time.sleep(1)  # each worker publishes its counts every 0.25 s
        before = httpx.get(f"{url}/rollout").json()
        victim = int(workers(tmp_path)[0]["pid"])  # type: ignore[call-overload]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(workers(tmp_path, victim)) == 2)  # the supervisor starts another
        resumed = [w["candidates"] for w in workers(tmp_path, victim)]
        during = httpx.get(f"{url}/rollout").json()

        deadline = time.monotonic() + 60
        final = during
        while final["state"] == "running" and time.monotonic() < deadline:
            ask(server, 20)
            final = httpx.get(f"{url}/rollout").json()
        # The gate's decision is written once; each worker applies it at its next look at the
        # desired state, so the other worker follows a moment later.
        if final["state"] == "promoted":
            wait_until(lambda: [w["serving"] for w in workers(tmp_path, victim)]
                       == [{"housing": 2}] * 2, timeout_s=30)  # fmt: skip
        metrics = httpx.get(f"{server.url}/metrics").text
        serving = [w["serving"] for w in workers(tmp_path, victim)]
    finally:
        server.stop()

    assert before["state"] == "running" and before["compared"] > 0
    assert resumed == [{"housing": 2}] * 2, "the restarted worker loads the candidate again"
    assert during["state"] == "running"
    assert before["sides"]["serving"]["requests"] == 60
    assert during["sides"]["serving"]["requests"] == 60, "the killed worker's counts still count"
    assert final["state"] == "promoted", final
    assert serving == [{"housing": 2}] * 2
    decided = [line for line in metrics.splitlines()
               if line.startswith("dlwp_rollout_decisions_total{")]  # fmt: skip
    assert decided == ['dlwp_rollout_decisions_total{by="gate",decision="promoted",'
                       'model="housing"} 1.0'], "decided once, by one worker"  # fmt: skip
