"""Two worker processes behave like one server: repository calls reach both, a stop drains both.

One two-worker server (a temp repository holding housing and imdb, version polling off) is
shared by the module, whose tests run in order: each builds on the versions the previous ones
published, and the last stops the server with SIGTERM. Every request opens a fresh connection,
so the kernel spreads them over both workers, and each worker's own status file says what it
serves.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.repository.desired_state import STATE_DIR_NAME

from ..conftest import COMMITTED_MODELS, ServerProcess, add_version

REVIEW = "A wonderful, moving film. The acting was superb and I loved every minute of it."
ASKS = 24  # fresh connections per check: both workers answer some of them


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    for name in ("housing", "imdb"):
        shutil.copytree(COMMITTED_MODELS / name / "1", models / name / "1")
    return models


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def two_workers(repo: Path, metrics_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {
            "DLWP_MODELS_DIR": str(repo),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "DLWP_DRAIN_SECONDS": "4",  # every request connects within it on a busy CI machine
            "DLWP_MAX_BATCH_SIZE": "8",
            "DLWP_MAX_QUEUE_ROWS": "8192",
        },
        workers=2,
        name="two-workers",
    ).wait_ready(timeout_s=180)
    # Ready answers once one worker is; each worker announces itself once its models are warm.
    deadline = time.monotonic() + 120
    while len(served_by_each_worker(repo)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    yield server
    server.stop()


def fresh_connections(server: ServerProcess) -> httpx.Client:
    """A client that opens a new connection for every request."""
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=server.url, timeout=10, limits=no_reuse)


def sentiment_answers(server: ServerProcess) -> set[tuple[int, object]]:
    """(status, version) of fresh-connection sentiment requests."""
    with fresh_connections(server) as http:
        responses = [http.post("/v1/sentiment", json={"text": REVIEW}) for _ in range(ASKS)]
    return {(r.status_code, r.json().get("version")) for r in responses}


def indexes(server: ServerProcess) -> list[list[dict[str, str]]]:
    with fresh_connections(server) as http:
        return [http.get("/v2/repository/index").json() for _ in range(8)]


def worker_pids(repo: Path) -> set[int]:
    """The worker processes that have announced themselves (each one's status file)."""
    statuses = (repo / STATE_DIR_NAME / "workers").glob("*.json")
    return {int(json.loads(path.read_text())["pid"]) for path in statuses}


def served_by_each_worker(repo: Path, name: str = "imdb") -> list[object]:
    statuses = (repo / STATE_DIR_NAME / "workers").glob("*.json")
    return [json.loads(path.read_text())["serving"].get(name) for path in statuses]


def call(server: ServerProcess, verb: str, body: object = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/repository/models/imdb/{verb}", json=body, timeout=90)


def test_unload_then_load_reach_every_worker(two_workers, repo):
    assert served_by_each_worker(repo) == [1, 1], "two workers, each serving imdb"

    unload = call(two_workers, "unload")
    after_unload = sentiment_answers(two_workers)
    index_unloaded = indexes(two_workers)
    load = call(two_workers, "load")
    after_load = sentiment_answers(two_workers)

    assert unload.status_code == 200
    assert after_unload == {(404, None)}, "no worker still answers for an unloaded model"
    assert all(index == index_unloaded[0] for index in index_unloaded)
    assert {"name": "imdb", "version": "1", "state": "UNAVAILABLE",
            "reason": "unloaded"} in index_unloaded[0]  # fmt: skip
    assert load.status_code == 200 and load.json()["version"] == "1"
    assert after_load == {(200, 1)}
    assert served_by_each_worker(repo) == [1, 1]


def test_a_new_version_reaches_every_worker(two_workers, repo):
    assert add_version(repo, "imdb") == 2
    assert sentiment_answers(two_workers) == {(200, 1)}, "polling is off: nothing moves by itself"

    load = call(two_workers, "load")

    assert load.status_code == 200 and load.json()["version"] == "2"
    assert sentiment_answers(two_workers) == {(200, 2)}
    assert served_by_each_worker(repo) == [2, 2]
    states = [[(row["version"], row["state"]) for row in index if row["name"] == "imdb"]
              for index in indexes(two_workers)]  # fmt: skip
    assert states == [[("1", "UNAVAILABLE"), ("2", "READY")]] * 8


def test_a_pin_set_through_the_api_reaches_every_worker(two_workers, repo):
    pin = call(two_workers, "load", {"parameters": {"version": 1}})
    pinned = sentiment_answers(two_workers)
    unpin = call(two_workers, "load", {"parameters": {"version": "latest"}})

    assert pin.status_code == 200 and pin.json()["version"] == "1"
    assert pinned == {(200, 1)}
    assert unpin.status_code == 200 and unpin.json()["version"] == "2"
    assert sentiment_answers(two_workers) == {(200, 2)}
    assert served_by_each_worker(repo) == [2, 2]


def test_a_killed_worker_is_replaced_follows_the_desired_state_and_leaves_the_metrics(
    two_workers, repo, metrics_dir
):
    before = worker_pids(repo)
    victim = min(before)
    assert list(metrics_dir.glob(f"gauge_live*_{victim}.db")), "its live gauges are summed"

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while not worker_pids(repo) - before and time.monotonic() < deadline:
        time.sleep(0.2)  # the replacement announces itself once its models are warm
    answers = sentiment_answers(two_workers)
    load = call(two_workers, "load")  # also forgets the dead worker's status

    assert len(worker_pids(repo) - before) == 1, "a new worker took the dead one's place"
    assert answers == {(200, 2)}, "the new worker serves what the others serve"
    assert load.status_code == 200 and served_by_each_worker(repo) == [2, 2]
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db")), "its gauges left the sums"


def test_concurrent_loads_from_both_workers_end_in_one_outcome(two_workers, repo):
    bodies = [{"parameters": {"version": v}} for v in (1, 2, 1, 2, 1, 2)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: call(two_workers, "load", body), bodies))

    assert [a.status_code for a in answers] == [200] * len(bodies)
    final = sentiment_answers(two_workers)
    assert len(final) == 1, f"every worker serves the same version, got {final}"
    (status, version), *_ = final
    assert status == 200 and served_by_each_worker(repo) == [version, version]
    desired = json.loads((repo / STATE_DIR_NAME / "desired.json").read_text())
    assert desired["models"]["imdb"]["version"] == version


def test_a_tampered_version_fails_to_load_everywhere_and_the_old_one_keeps_serving(
    two_workers, repo
):
    call(two_workers, "load", {"parameters": {"version": "latest"}})
    version = add_version(repo, "imdb")
    model = repo / "imdb" / str(version) / "model.keras"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed after export
    model.write_bytes(bytes(data))

    load = call(two_workers, "load")

    assert load.status_code == 400
    assert "sha256" in load.json()["error"] and "version 2 keeps serving" in load.json()["error"]
    assert sentiment_answers(two_workers) == {(200, 2)}
    rows = [next(r for r in index if r["name"] == "imdb" and r["version"] == str(version))
            for index in indexes(two_workers)]  # fmt: skip
    assert rows[0]["state"] == "FAILED" and "changed after export" in rows[0]["reason"]
    assert all(row == rows[0] for row in rows), "every worker lists the same failure"


def test_sigterm_drains_both_workers_and_answers_every_accepted_request(two_workers):
    texts = {"texts": [f"{REVIEW} {i}" for i in range(256)]}
    url = two_workers.url

    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        pending = [pool.submit(c.post, "/v1/sentiment", json=texts) for c in clients]
        time.sleep(0.3)  # connected and queued, not yet all answered
        two_workers.process.send_signal(signal.SIGTERM)
        ready, live = _probe_during_drain(url)
        responses = [future.result() for future in pending]
    exit_code = two_workers.process.wait(timeout=60)
    log = two_workers.log_path.read_text()

    assert [r.status_code for r in responses] == [200] * 16
    assert all(len(r.json()["predictions"]) == 256 for r in responses), "answered in full"
    assert 503 in ready and live == {200}
    assert exit_code == 0
    assert log.count("drain done") == 2, "each worker logs its drain"


def _probe_during_drain(url: str) -> tuple[set[int], set[int]]:
    """Readiness and liveness codes seen by fresh connections until the drain window ends."""
    ready: set[int] = set()
    live: set[int] = set()
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, timeout=5, limits=no_reuse) as http:
        deadline = time.monotonic() + 1.0  # well inside the 4 s window
        while not ready or time.monotonic() < deadline:
            ready.add(http.get("/v2/health/ready").status_code)
            live.add(http.get("/v2/health/live").status_code)
    return ready, live
