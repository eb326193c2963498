"""A single-worker server stopped with SIGTERM while requests are queued answers every one."""

from __future__ import annotations

import concurrent.futures
import shutil
import signal
import time

import httpx

from ..conftest import COMMITTED_MODELS, ServerProcess

REVIEW = "A wonderful, moving film. The acting was superb and I loved every minute of it."


def test_sigterm_with_requests_queued_answers_every_one_then_exits_cleanly(tmp_path):
    shutil.copytree(COMMITTED_MODELS / "imdb" / "1", tmp_path / "imdb" / "1")
    # A window long enough that every request and probe connects within it on a busy 2-core CI
    # machine; small batches, so the rows of many requests wait in the queue when the signal comes.
    server = ServerProcess({"DLWP_MODELS_DIR": str(tmp_path), "DLWP_DRAIN_SECONDS": "4",
                            "DLWP_MAX_BATCH_SIZE": "2", "DLWP_MAX_QUEUE_ROWS": "8192"},
                           name="drain").wait_ready()  # fmt: skip
    texts = {"texts": [f"{REVIEW} {i}" for i in range(256)]}
    try:
        clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(24)]
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            pending = [pool.submit(c.post, "/v1/sentiment", json=texts) for c in clients]
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
            live = httpx.get(f"{server.url}/v2/health/live", timeout=5)
            responses = [future.result() for future in pending]
        exit_code = server.process.wait(timeout=60)
    finally:
        server.stop()
    log = server.log_path.read_text()

    assert [r.status_code for r in responses] == [200] * 24
    assert all(len(r.json()["predictions"]) == 256 for r in responses), "answered in full"
    assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
    assert live.status_code == 200
    assert exit_code == 0
    assert "drain done" in log and "; 0 unanswered" in log
